"""What the probe and capture benchmarks share: their lab, iperf3, bursts of tagged pings."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from pathtrace.lab import topology
from pathtrace.system import netns

PREFIX = "ptbp-"


def lab() -> topology.Topology:
    """The reference lab under the benchmarks' prefix, up (take it down with PREFIX)."""
    from pathtrace.lab import build

    text = topology.reference_text().replace('prefix = "pt-"', f'prefix = "{PREFIX}"', 1)
    topo = topology.parse(text)
    build.up(topo, text)
    return topo


def iperf(topo: topology.Topology, server_node: str, dst: str, seconds: int = 2) -> float:
    """Bits per second of one iperf3 run container1 -> ``dst`` (served in ``server_node``)."""
    server = netns.popen(
        topo.namespace(server_node),
        ["iperf3", "-s", "-1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.2)  # iperf3 has no readiness signal; the client retries below
        for _ in range(20):
            result = netns.run(
                topo.namespace("container1"),
                ["iperf3", "-c", dst, "-t", str(seconds), "-J"],
                check=False,
            )
            if result.returncode == 0:
                data = json.loads(result.stdout)
                return float(data["end"]["sum_received"]["bits_per_second"])
            time.sleep(0.1)
        raise RuntimeError(f"iperf3 to {dst} failed: {result.stdout[-300:]}")
    finally:
        server.kill()
        server.wait()


_SENDER = """
import sys, time
from ipaddress import IPv4Address
from pathtrace.inject import send
ns, run, rate, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
dst = IPv4Address("192.168.100.3")
src = send.source_address(ns, dst)
probe = send.Probe("ping", dst)
count = int(rate * seconds)
packets = [send.build(probe, src, run, i) for i in range(count)]
with send.Sender(ns) as s:
    start = time.perf_counter()
    for i, p in enumerate(packets):
        due = start + i / rate
        while time.perf_counter() < due:
            pass
        s.send(p, dst)
print(count, time.perf_counter() - start, flush=True)
"""


def tagged_burst(topo: topology.Topology, run: int, rate: int) -> tuple[int, float]:
    """One second of pings tagged ``run``, container1 -> container2, paced at ``rate``
    per second (packets built beforehand): how many were sent, in how long."""
    c1 = topo.namespace("container1")
    out = subprocess.run(
        netns.command(c1, [sys.executable, "-c", _SENDER, c1, str(run), str(rate), "1"]),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return int(out[0]), float(out[1])
