"""The VXLAN overlay: traced throughput armed/unarmed (target >= 0.95), and `run` on
the overlay against `run` on the lab (target: within 1.3x), in one scratch host.

Throughput is bench_traced_throughput's interleaved method (one iperf3 stream
pod-a -> pod-b through both nodes' flannel.1 and the underlay, 1 s armed and
1 s not, each armed window against the unarmed ones either side; an A/A
schedule as the noise floor). The run times alternate the two commands, each
a one-probe ping run as a user types it, and compare medians.

Run: `python -m tests.bench.bench_overlay` (as root). It re-runs itself in a
scratch host (new network, mount and pid namespaces), where it builds the
overlay and the lab: nothing of it touches the machine's own namespace.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

from tests import scratch
from tests.bench import bench_traced_throughput as traced
from tests.overlay import SETUP

RUNS = 7


class _Names:
    """What bench_traced_throughput's stream asks of a topology: the client is pod-a."""

    def namespace(self, node: str) -> str:
        return {"container1": "pod-a"}.get(node, node)


def throughput() -> None:
    from pathtrace.kernel.engine import Tracer

    names = ["node-a", "node-b", "pod-a", "pod-b"]

    def armed() -> Callable[[], None]:
        tracer = Tracer(11, names, tunnels=[(8472, "vxlan")]).start()
        return tracer.stop

    def not_armed() -> Callable[[], None]:
        time.sleep(0.15)  # as long as arming takes
        return lambda: None

    topo = _Names()
    control = traced.cycled(topo, "pod-b", "10.244.1.2", not_armed)  # type: ignore[arg-type]
    ratios = traced.cycled(topo, "pod-b", "10.244.1.2", armed)  # type: ignore[arg-type]
    print(
        f"iperf3 pod-a -> pod-b over VXLAN, {len(ratios)} cycles of {traced.HOLD} s armed / "
        f"{traced.HOLD} s not, one CPU:\n"
        f"  armed/unarmed     {traced._summary(ratios)} (target >= 0.95)\n"
        f"  unarmed/unarmed   {traced._summary(control)} (noise floor)",
        flush=True,
    )


def _timed(argv: list[str]) -> float:
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pathtrace", *argv], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)}: exit {done.returncode}\n{done.stderr}")
    return time.monotonic() - start


def run_times() -> None:
    subprocess.run([sys.executable, "-m", "pathtrace", "lab", "up"], check=True)
    overlay = ["run", "ping", "10.244.1.2", "--from", "pod-a", "-c", "1"]
    lab = ["run", "ping", "8.8.8.8", "-c", "1"]
    _timed(overlay), _timed(lab)  # warm caches
    times: dict[str, list[float]] = {"overlay": [], "lab": []}
    for _ in range(RUNS):
        times["overlay"].append(_timed(overlay))
        times["lab"].append(_timed(lab))
    o, b = statistics.median(times["overlay"]), statistics.median(times["lab"])
    print(
        f"`run ping -c 1`, median of {RUNS} alternated: overlay {o:.2f} s, lab {b:.2f} s, "
        f"ratio {o / b:.2f} (target <= 1.3)",
        flush=True,
    )
    subprocess.run([sys.executable, "-m", "pathtrace", "lab", "down"], check=True)


def main() -> int:
    if os.environ.get("PT_BENCH_SCRATCH") != "1":
        code = """
import os, subprocess, sys
os.environ["PT_BENCH_SCRATCH"] = "1"
sys.exit(subprocess.run([sys.executable, "-m", "tests.bench.bench_overlay"]).returncode)
"""
        done = scratch.run(code, timeout=3600)
        print(done.stdout, end="")
        print(done.stderr, end="", file=sys.stderr)
        return done.returncode
    subprocess.run(["bash", "-c", SETUP], check=True)
    throughput()
    run_times()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
