"""Benchmarks of the probe engine, each a ratio measured in one run (as root).

1. Process start to every hook armed, against bpftrace attaching the same four
   tracepoints (bpftrace runs BEGIN once its probes are attached).
2. The largest rate of events delivered to Python with zero loss.

Throughput with the tracer armed is `bench_traced_throughput`.
Run: `make bench` (or `python -m tests.bench.bench_probes [arm|events]`).
Uses its own lab.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time

from pathtrace.kernel.engine import Tracer
from pathtrace.lab import build, topology
from tests.bench.common import PREFIX, lab, tagged_burst

ROUNDS = 5


def arm_time(topo: topology.Topology) -> None:
    namespaces = [topo.namespace(n) for n in topo.nodes]
    script = (
        "from pathtrace.kernel.engine import Tracer\n"
        f"t = Tracer(7, {namespaces!r}).start()\nprint('armed', flush=True)\nt.stop()\n"
    )
    bpftrace = (
        "tracepoint:net:net_dev_start_xmit, tracepoint:net:netif_receive_skb, "
        "tracepoint:skb:kfree_skb, tracepoint:skb:consume_skb { } "
        'BEGIN { printf("armed\\n"); exit(); }'
    )
    ours, theirs, floor = [], [], []
    for _ in range(ROUNDS):
        ours.append(_until_armed([sys.executable, "-c", script]))
        # What any Python program pays before its first line: the floor for us.
        floor.append(_until_armed([sys.executable, "-c", "print('armed', flush=True)"]))
        # bpftrace resolves tracepoints through tracefs, which this machine does not
        # mount; mount it in a private mount namespace, leaving the host as it is.
        theirs.append(
            _until_armed(
                [
                    "unshare",
                    "-m",
                    "sh",
                    "-c",
                    f"mount -t tracefs nodev /sys/kernel/tracing && exec bpftrace -e '{bpftrace}'",
                ]
            )
        )
    a, b = statistics.median(ours), statistics.median(theirs)
    print(f"arm time, median of {ROUNDS} (process start to 'armed')")
    print(f"  pathtrace, all hook families   {a:.3f} s  (target < 0.3 s)")
    print(f"  bpftrace, 4 tracepoints        {b:.3f} s")
    print(f"  python printing at once        {statistics.median(floor):.3f} s  (no import, no BPF)")
    print(f"  ratio pathtrace / bpftrace     {a / b:.2f}  (target <= 0.25)")


def _until_armed(argv: list[str]) -> float:
    start = time.perf_counter()
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "armed" in line:
                elapsed = time.perf_counter() - start
                break
        else:
            raise RuntimeError(f"{argv[0]} never armed")
        proc.wait(timeout=30)
    return elapsed


def event_rate(topo: topology.Topology) -> None:
    namespaces = [topo.namespace(n) for n in topo.nodes]
    best = 0.0
    print("event rate delivered to Python (tagged pings container1 -> container2, 1 s each)")
    for rate in (2000, 5000, 10000, 15000, 20000, 30000):
        tracer = Tracer(rate, namespaces, families=["device", "drop", "netfilter"])
        received = 0

        def count() -> None:
            nonlocal received
            received += 1

        tracer.on_record = count
        with tracer:
            sent, seconds = tagged_burst(topo, rate, rate)
            time.sleep(0.3)
            lost = sum(tracer.lost().values())
        events_per_s = received / seconds
        print(f"  {sent / seconds:8.0f} packets/s -> {events_per_s:9.0f} events/s, lost {lost}")
        if lost == 0:
            best = max(best, events_per_s)
        else:
            break
    print(f"  largest zero-loss rate: {best:.0f} events/s (target >= 300000)")


def main(argv: list[str]) -> int:
    """Runs the parts named on the command line (arm, events), or all."""
    parts = {"arm": arm_time, "events": event_rate}
    chosen = argv or list(parts)
    unknown = set(chosen) - set(parts)
    if unknown:
        print(f"unknown part(s) {', '.join(sorted(unknown))}; choose from {', '.join(parts)}")
        return 2
    topo = lab()
    try:
        for name in chosen:
            parts[name](topo)
    finally:
        build.down(None, prefix=PREFIX)
    return 0


if __name__ == "__main__":
    with tempfile.TemporaryDirectory():
        raise SystemExit(main(sys.argv[1:]))
