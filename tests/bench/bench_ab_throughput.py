"""Untagged iperf3 throughput armed with this tree's tracer against another tree's,
interleaved in one stream: cycles alternate the two, each armed second against
the unarmed seconds either side (bench_traced_throughput's method), so a change
to the probes is measured against its starting point in the same run.

Run: `python -m tests.bench.bench_ab_throughput OTHER_TREE [ipv4|ipv6]` (as root),
where OTHER_TREE is a checkout with its probes built (`git worktree add /tmp/old
COMMIT && make -C /tmp/old/probes`).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from pathtrace.lab import build, topology
from tests.bench import bench_traced_throughput as tp
from tests.bench.common import PREFIX, lab

HERE = str(Path(__file__).resolve().parents[2])


def armer(tree: str, namespaces: list[str]) -> Callable[[], Callable[[], None]]:
    """Arms ``tree``'s tracer in a process of its own (its pathtrace, its probes)."""
    script = (
        "import sys; from pathtrace.kernel.engine import Tracer; "
        f"t = Tracer(11, {namespaces!r}).start(); print('armed', flush=True); "
        "sys.stdin.read(); t.stop()"
    )

    def arm() -> Callable[[], None]:
        proc = subprocess.Popen(
            [sys.executable, "-c", script], cwd=tree, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert proc.stdout is not None and proc.stdin is not None
        if proc.stdout.readline().strip() != "armed":
            raise RuntimeError(f"the tracer of {tree} did not arm")

        def disarm() -> None:
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait()

        return disarm

    return arm


def in_order(
    topo: topology.Topology, server: str, dst: str, arms: list[Callable[[], Callable[[], None]]]
) -> list[list[float]]:
    """Per arm, its cycles' armed/unarmed ratios; the arms take turns."""
    stream = tp.Stream(topo, server, dst, seconds=int(tp.CYCLES * (2 * tp.HOLD + 0.8) + 10))
    try:
        time.sleep(1.0)
        off = [(time.monotonic(), time.monotonic() + tp.HOLD)]
        time.sleep(tp.HOLD)
        on: list[tuple[int, float, float]] = []
        for k in range(tp.CYCLES):
            which = k % len(arms)
            disarm = arms[which]()
            a = time.monotonic()
            time.sleep(tp.HOLD)
            b = time.monotonic()
            disarm()
            c = time.monotonic()
            time.sleep(tp.HOLD)
            on.append((which, a, b))
            off.append((c, time.monotonic()))
        time.sleep(2 * tp.INTERVAL)
        intervals = stream.intervals()
    finally:
        stream.close()
    ratios: list[list[float]] = [[] for _ in arms]
    for k, (which, a, b) in enumerate(on):
        armed = tp._mean_within(intervals, a, b)
        around = [tp._mean_within(intervals, *off[k]), tp._mean_within(intervals, *off[k + 1])]
        unarmed = [x for x in around if x is not None]
        if armed is not None and unarmed:
            ratios[which].append(armed / statistics.fmean(unarmed))
    return [sorted(r) for r in ratios]


def main(argv: list[str]) -> int:
    if not argv or not Path(argv[0], "pathtrace", "kernel", "bpf").is_dir():
        print("usage: bench_ab_throughput OTHER_TREE [ipv4|ipv6] (OTHER_TREE with built probes)")
        return 2
    other, families = argv[0], argv[1:] or ["ipv4"]
    os.sched_setaffinity(0, {1})  # iperf3 has CPU 0
    topo = lab()
    namespaces = [topo.namespace(n) for n in topo.nodes]
    try:
        for label, server, dst in (p for f in families for p in tp.PATHS[f]):
            theirs, ours = in_order(
                topo, server, dst, [armer(other, namespaces), armer(HERE, namespaces)]
            )
            print(
                f"iperf3 {label}, armed/unarmed, {tp.CYCLES} cycles taking turns:\n"
                f"  {other:<20} {tp._summary(theirs)}\n  {'this tree':<20} {tp._summary(ours)}",
                flush=True,
            )
    finally:
        build.down(None, prefix=PREFIX)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
