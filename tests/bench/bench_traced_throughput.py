"""Untagged iperf3 throughput with the tracer armed against not armed (target >= 0.97).

One iperf3 stream runs for the whole measurement and reports every 0.2 s; this
process arms and disarms the tracer around it in cycles (1 s armed, 1 s
not). Each armed window is compared with the unarmed windows either side of
it, so the drift of this shared VM (its throughput wanders by tens of percent
over seconds, which made separate runs of iperf3 unable to resolve 3%)
cancels; the median over the cycles is reported, with a bootstrap 90%
interval. The same schedule with a
tracer that is never armed is the noise floor (A/A), measured in the same run.

iperf3's client, server and their softirqs are pinned to CPU 0: the path is
CPU-bound, so whatever the probes cost comes off the throughput in full (the
strict case). This process arms and disarms from CPU 1, and intervals within
0.1 s of a change are left out. Last, BPF run-time statistics during one
traced stretch give the probes' share of the CPU directly.

Run: `python -m tests.bench.bench_traced_throughput [ipv4] [ipv6]` (as root; its
own lab, dual-stack: the IPv6 paths are the same ones over fd00:100::/64 and NAT66).
"""

from __future__ import annotations

import json
import os
import random
import re
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable

from pathtrace.kernel import libbpf
from pathtrace.kernel.engine import Tracer
from pathtrace.lab import build, topology
from pathtrace.system import netns
from tests.bench.common import PREFIX, lab

INTERVAL, HOLD, MARGIN, CYCLES = 0.2, 1.0, 0.1, 60
PATHS = {
    "ipv4": (
        ("container1 -> container2", "container2", "192.168.100.3"),
        ("container1 -> wan (NAT)", "wan", "8.8.8.8"),  # wan owns 8.8.8.8
    ),
    "ipv6": (
        ("container1 -> container2 (IPv6)", "container2", "fd00:100::3"),
        ("container1 -> wan (NAT66)", "wan", "2001:4860:4860::8888"),
    ),
}
_LINE = re.compile(r"\s([\d.]+)-([\d.]+)\s+sec\s+[\d.]+ \w+\s+([\d.]+) Mbits/sec")


class Stream:
    """One long iperf3 stream, its intervals timed on this process's clock."""

    def __init__(self, topo: topology.Topology, server_node: str, dst: str, seconds: int) -> None:
        self.server = netns.popen(
            topo.namespace(server_node),
            ["taskset", "-c", "0", "iperf3", "-s", "-1"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.3)  # iperf3 has no readiness signal
        self.client = netns.popen(
            topo.namespace("container1"),
            ["taskset", "-c", "0", "iperf3", "-c", dst, "-t", str(seconds)]
            + ["-i", str(INTERVAL), "-f", "m", "--forceflush"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[tuple[float, float, float, float]] = []  # arrival, start, end, Mbit/s
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.client.stdout is not None
        for line in self.client.stdout:
            match = _LINE.search(line)
            if match and "sender" not in line and "receiver" not in line:
                start, end, rate = (float(g) for g in match.groups())
                self.lines.append((time.monotonic(), start, end, rate))

    def intervals(self) -> list[tuple[float, float, float]]:
        """(start, end, Mbit/s) on this process's monotonic clock."""
        # Each line is printed as its interval ends: the test began at arrival - end.
        began = statistics.median(arrival - end for arrival, _, end, _ in self.lines)
        return [(began + s, began + e, rate) for _, s, e, rate in self.lines]

    def close(self) -> None:
        for proc in (self.client, self.server):
            proc.kill()
            proc.wait()
        self.reader.join(timeout=5)


def _mean_within(intervals: list[tuple[float, float, float]], a: float, b: float) -> float | None:
    rates = [r for s, e, r in intervals if s >= a + MARGIN and e <= b - MARGIN]
    return statistics.fmean(rates) if rates else None


def cycled(
    topo: topology.Topology, server_node: str, dst: str, arm: Callable[[], Callable[[], None]]
) -> list[float]:
    """Per cycle, armed throughput over the mean of the unarmed windows either side."""
    stream = Stream(topo, server_node, dst, seconds=int(CYCLES * (2 * HOLD + 0.5) + 10))
    try:
        time.sleep(1.0)  # past slow start
        off = [(time.monotonic(), time.monotonic() + HOLD)]
        time.sleep(HOLD)
        on = []
        for _ in range(CYCLES):
            disarm = arm()
            a = time.monotonic()
            time.sleep(HOLD)
            b = time.monotonic()
            disarm()
            c = time.monotonic()
            time.sleep(HOLD)
            on.append((a, b))
            off.append((c, time.monotonic()))
        time.sleep(2 * INTERVAL)  # the last interval's line
        intervals = stream.intervals()
    finally:
        stream.close()
    ratios = []
    for k, (a, b) in enumerate(on):
        armed = _mean_within(intervals, a, b)
        around = [_mean_within(intervals, *off[k]), _mean_within(intervals, *off[k + 1])]
        unarmed = [x for x in around if x is not None]
        if armed is not None and unarmed:
            ratios.append(armed / statistics.fmean(unarmed))
    return sorted(ratios)


def throughput(topo: topology.Topology, families: list[str]) -> None:
    namespaces = [topo.namespace(n) for n in topo.nodes]

    def armed() -> Callable[[], None]:
        tracer = Tracer(11, namespaces).start()
        return tracer.stop

    def not_armed() -> Callable[[], None]:
        time.sleep(0.15)  # as long as arming takes, on the same CPU
        return lambda: None

    for label, server_node, dst in (p for f in families for p in PATHS[f]):
        control = cycled(topo, server_node, dst, not_armed)
        ratios = cycled(topo, server_node, dst, armed)
        print(
            f"iperf3 {label}, {len(ratios)} cycles of {HOLD} s armed / {HOLD} s not, one CPU:\n"
            f"  armed/unarmed     {_summary(ratios)} (target >= 0.97)\n"
            f"  unarmed/unarmed   {_summary(control)} (noise floor)",
            flush=True,
        )
        probes_share(topo, server_node, dst, namespaces)


def _summary(ratios: list[float]) -> str:
    rng = random.Random(1)
    medians = sorted(statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(2000))
    return (
        f"median {statistics.median(ratios):.3f}, 90% interval {medians[100]:.3f}-"
        f"{medians[1899]:.3f} (cycles {ratios[0]:.2f} to {ratios[-1]:.2f})"
    )


def _busy_jiffies() -> int:
    """CPU time spent on anything but idle and iowait, all CPUs, in 1/HZ."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:8]]
    return sum(fields) - fields[3] - fields[4]


def _program_time() -> dict[int, tuple[str, int, int]]:
    """Run count and run time of each loaded pathtrace program (needs BPF stats on)."""
    out = subprocess.run(
        ["bpftool", "prog", "show", "--json"], capture_output=True, text=True, check=True
    ).stdout
    return {
        p["id"]: (p["name"], p.get("run_cnt", 0), p.get("run_time_ns", 0))
        for p in json.loads(out)
        if p.get("name", "").startswith("pt_")
    }


def probes_share(
    topo: topology.Topology, server_node: str, dst: str, namespaces: list[str]
) -> None:
    """The programs' run time over the CPU time used, during 2 s of traced iperf3.

    An upper bound: statistics add clock reads to every run (a netfilter
    program that only reads one map measures ~80 ns with them)."""
    with Tracer(11, namespaces):
        stats = libbpf.lib().bpf_enable_stats(0)  # BPF_STATS_RUN_TIME, while the fd is open
        if stats < 0:
            raise RuntimeError(f"BPF_ENABLE_STATS failed: {os.strerror(-stats)}")
        stream = Stream(topo, server_node, dst, seconds=3)
        try:
            time.sleep(1.0)
            before, busy = _program_time(), _busy_jiffies()
            time.sleep(2.0)
            after, busy = _program_time(), _busy_jiffies() - busy
        finally:
            stream.close()
            os.close(stats)
    spent = {}
    for pid, (name, runs, ns) in after.items():
        _, runs0, ns0 = before.get(pid, (name, 0, 0))
        if runs > runs0:
            spent[name] = (runs - runs0, ns - ns0)
    share = sum(n for _, n in spent.values()) / (busy * 1e9 / os.sysconf("SC_CLK_TCK"))
    print(
        f"  probes' share of the CPU, armed: {100 * share:.1f}%"
        " (" + ", ".join(f"{k} {n / r:.0f} ns x {r}" for k, (r, n) in spent.items()) + ")",
        flush=True,
    )


def main(argv: list[str]) -> int:
    """``ipv4``, ``ipv6`` or both (the default)."""
    families = argv or list(PATHS)
    if set(families) - set(PATHS):
        print(f"choose from {', '.join(PATHS)}")
        return 2
    os.sched_setaffinity(0, {1})  # iperf3 has CPU 0
    topo = lab()
    try:
        throughput(topo, families)
    finally:
        build.down(None, prefix=PREFIX)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
