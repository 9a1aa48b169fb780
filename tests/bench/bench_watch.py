"""`watch`'s two costs: traffic the filter does not match, and a flow it does.

1. An iperf3 TCP stream that `watch 'udp port 53'` does not match, with the
   watch armed against not armed (target >= 0.97), by the interleaved method
   of bench_traced_throughput (armed windows against the unarmed ones either
   side, in one long stream; the A/A schedule is the noise floor).
2. A matched flow of 10,000 UDP datagrams a second (iperf3 -u, 3 s): events
   lost to a full ring buffer (target: none), and the datagrams the probes
   followed out of container1 against those iperf3 says it sent.

3. Where the cost goes: per program, the run time under `run`'s tracer and
   under the unmatched watch (BPF run-time statistics).
4. A report of 10,000 flows: `pathtrace watch --json` (a process of its own) on
   a flood of new UDP flows from container1 through the NAT, its peak resident
   memory and time to the end of its output, against `pathtrace run ping` (report).

Run: `python -m tests.bench.bench_watch [matched] [unmatched] [share] [report]`
(as root; its own lab; the first three by default).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

from pathtrace.capture.filter import compile_watch_filter
from pathtrace.kernel import libbpf
from pathtrace.kernel.engine import Tracer, for_watch
from pathtrace.lab import build, topology
from pathtrace.system import netns, observe
from pathtrace.watch import inside_devices
from tests.bench.bench_traced_throughput import Stream, _program_time, _summary, cycled
from tests.bench.common import PREFIX, lab
from tests.tracing import flood_of_new_flows

# A filter no packet of the stream matches but every one must be run through: it
# asks about addresses, which every protocol has (the worst case for the gate).
WORST = "host 10.99.0.1"

PATHS = (
    ("container1 -> container2", "container2", "192.168.100.3"),
    ("container1 -> wan (NAT)", "wan", "8.8.8.8"),
)


def _inside(topo: topology.Topology) -> list[tuple[str, int]]:
    """As `watch` arms: the veths whose peers are watched too (filtered there)."""
    every = [topo.namespace(n) for n in topo.nodes]
    states = {
        topo.namespace(n): observe.state(topo.namespace(n), n, None, every) for n in topo.nodes
    }
    return inside_devices(states, every)


def _arm(namespaces: list[str], expression: str, inside: list[tuple[str, int]]) -> Tracer:
    tracer = for_watch(1000, 12)
    tracer.namespaces = namespaces
    tracer.begin()
    tracer.finish(observe.with_rules(namespaces), [])  # as `watch` links netfilter
    tracer.watch(compile_watch_filter(expression), namespaces, inside)
    return tracer


def unmatched(topo: topology.Topology) -> None:
    namespaces = [topo.namespace(n) for n in topo.nodes]
    inside = _inside(topo)

    def not_armed() -> Callable[[], None]:
        time.sleep(0.15)  # as long as arming takes, on the same CPU
        return lambda: None

    for label, server_node, dst in PATHS:
        control = cycled(topo, server_node, dst, not_armed)
        lines = []
        for expression in ("udp port 53", WORST):
            ratios = cycled(
                topo, server_node, dst, lambda e=expression: _arm(namespaces, e, inside).stop
            )
            lines.append(f"  armed/unarmed, watch {expression!r:<18} {_summary(ratios)}")
        print(
            f"iperf3 {label} (matched by neither filter), {len(control)} cycles:\n"
            + "\n".join(lines)
            + f" (target >= 0.97)\n  unarmed/unarmed {' ' * 25}{_summary(control)} (noise floor)",
            flush=True,
        )


def matched(topo: topology.Topology, rate: int = 10_000, seconds: int = 3) -> None:
    namespaces = [topo.namespace(n) for n in topo.nodes]
    tracer = _arm(namespaces, "udp port 5201", _inside(topo))
    try:
        server = netns.popen(
            topo.namespace("container2"),
            ["iperf3", "-s", "-1"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.3)
        bits = rate * 100 * 8
        done = netns.run(
            topo.namespace("container1"),
            ["iperf3", "-u", "-c", "192.168.100.3", "-b", str(bits), "-l", "100"]
            + ["-t", str(seconds), "-J"],
            check=False,
        )
        server.wait(timeout=10)
        time.sleep(0.5)
        records = tracer.drain()
        lost = tracer.lost()
        stats = tracer.watch_stats()
    finally:
        tracer.stop()
    sent = json.loads(done.stdout)["end"]["sum"]["packets"]
    assert tracer.layout is not None
    out = set()
    for raw in records:
        e = tracer.layout.unpack(raw)
        if e["hook"] == 1 and e["sport"] != 5201:  # dev_xmit of a datagram to the server
            out.add((e["skb_id"], e["ifindex"], e["netns"]))
    first_hop = {k for k in out if k[2] == os.stat(netns.path(namespaces[0])).st_ino}
    print(
        f"a matched flow, {rate} datagrams/s for {seconds} s (iperf3 -u -l 100):\n"
        f"  iperf3 sent {sent}; the probes followed {len(first_hop)} out of container1; "
        f"{len(records)} events, lost {sum(lost.values())} {lost or ''}; filter {stats}",
        flush=True,
    )


def share(topo: topology.Topology) -> None:
    """Per program, the run time a packet costs under `run`'s tracer and under a watch
    that matches nothing (BPF run-time statistics, 2 s of the stream each)."""
    namespaces = [topo.namespace(n) for n in topo.nodes]
    inside = _inside(topo)
    for mode in ("run", "watch", "watch*"):
        for label, server_node, dst in PATHS:
            tracer = (
                Tracer(11, namespaces).start()
                if mode == "run"
                else _arm(namespaces, WORST if mode == "watch*" else "udp port 53", inside)
            )
            stats = libbpf.lib().bpf_enable_stats(0)  # BPF_STATS_RUN_TIME while open
            stream = Stream(topo, server_node, dst, seconds=4)
            try:
                time.sleep(1.0)
                before = _program_time()
                time.sleep(2.0)
                after = _program_time()
            finally:
                stream.close()
                os.close(stats)
                tracer.stop()
            spent: dict[str, list[int]] = {}
            for pid, (name, runs, ns) in after.items():
                _, runs0, ns0 = before.get(pid, (name, 0, 0))
                if runs > runs0:
                    total = spent.setdefault(name, [0, 0])
                    total[0] += runs - runs0
                    total[1] += ns - ns0
            print(
                f"{mode:<5} {label}: "
                + ", ".join(f"{k} {n / r:.0f} ns x {r}" for k, (r, n) in spent.items()),
                flush=True,
            )


FLOOD = flood_of_new_flows("8.8.8.8")


def _peak(argv: list[str], during: Callable[[], None]) -> tuple[float, float]:
    """(peak resident MB, seconds) of the command ``argv``, in a process of its own
    (its peak read from the kernel's child accounting by a process that runs only it)."""
    probe = (
        "import resource, subprocess, sys, time; t = time.monotonic(); "
        "p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE); "
        "p.stderr.readline(); print('armed', flush=True); p.wait(); "
        "print(time.monotonic() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    proc = subprocess.Popen([sys.executable, "-c", probe, *argv], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    proc.stdout.readline()
    during()
    seconds, rss = proc.stdout.readline().split()
    proc.wait()
    return int(rss) / 1024, float(seconds)


def report(topo: topology.Topology, rounds: int = 3) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".toml") as f:
        f.write(topology.reference_text().replace('prefix = "pt-"', f'prefix = "{PREFIX}"', 1))
        f.flush()
        cli = [sys.executable, "-m", "pathtrace"]
        watch = cli + ["watch", "udp dst port 9999", "--topology", f.name, "--max-flows", "10000"]
        watch += ["--packets-kept", "5", "--duration", "4", "--json"]
        ping = cli + ["run", "ping", "8.8.8.8", "-c", "1", "--topology", f.name, "--json"]

        def flood() -> None:
            netns.run(topo.namespace("container1"), [sys.executable, "-c", FLOOD])

        watched, ran = [], []
        for _ in range(rounds):
            watched.append(_peak(watch, flood))
            ran.append(_peak(ping, lambda: None))
    w_mb, w_s = (statistics.median(x) for x in zip(*watched, strict=True))
    r_mb, r_s = (statistics.median(x) for x in zip(*ran, strict=True))
    print(
        f"watch of a flood (10,000 flows kept, 5 packets each), {rounds} rounds: peak "
        f"{w_mb:.0f} MB, {w_s:.1f} s to the end of its JSON (4 s watched); a run's ping "
        f"{r_mb:.0f} MB: {w_mb / r_mb:.1f}x",
        flush=True,
    )


def main(argv: list[str]) -> int:
    os.sched_setaffinity(0, {1})  # iperf3 has CPU 0
    topo = lab()
    try:
        if not argv or "matched" in argv:
            matched(topo)
        if not argv or "unmatched" in argv:
            unmatched(topo)
        if not argv or "share" in argv:
            share(topo)
        if "report" in argv:
            report(topo)
    finally:
        build.down(None, prefix=PREFIX)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
