"""Benchmark: what per-interface capture costs, in one run (as root).

1. Bursts of tagged pings container1 -> container2 at rising rates with the
   run's capture on: capture drops (PACKET_STATISTICS) and packets missed, and
   where drops start.
2. iperf3 container1 -> container2: throughput with our capture (the run's
   filter; and --capture all), and with plain tcpdump on the same interfaces,
   each against no capture, alternating pairs, median of the pairs' ratios.
Run: `make bench`.
"""

from __future__ import annotations

import statistics
import subprocess
import time

from pathtrace.capture.filter import compile_filter
from pathtrace.capture.sniffer import Capture
from pathtrace.lab import build
from pathtrace.model.tag import capture_filter
from pathtrace.system import netns
from tests.bench.common import PREFIX, iperf, lab, tagged_burst

PATH_INTERFACES = [
    ("container1", "veth-cont1"),
    ("host", "veth-host1"),
    ("host", "veth-host2"),
    ("container2", "veth-cont2"),
]


def bursts(topo) -> None:  # type: ignore[no-untyped-def]
    interfaces = [(topo.namespace(n), i) for n, i in PATH_INTERFACES]
    print("bursts of tagged pings container1 -> container2, 1 s each, the run's capture")
    for rate in (2000, 5000, 10000, 20000, 30000):
        run = rate
        with Capture(interfaces, compile_filter(capture_filter(run))) as capture:
            sent, seconds = tagged_burst(topo, run, rate)
            time.sleep(0.3)
        expected = sent * 2 * len(interfaces)  # request and reply on each interface
        print(
            f"  {sent / seconds:7.0f} probes/s: captured {len(capture.packets)} of "
            f"{expected} expected, capture drops {capture.drops}"
        )


def throughput(topo, pairs: int = 5) -> None:  # type: ignore[no-untyped-def]
    interfaces = [(topo.namespace(n), i) for n, i in PATH_INTERFACES]
    program = compile_filter(capture_filter(0x12345678))
    for label in (
        "pathtrace capture (run filter)",
        "pathtrace capture --capture all",
        "tcpdump -w /dev/null",
    ):
        ratios = []
        for _ in range(pairs):
            off = iperf(topo, "container2", "192.168.100.3")
            if label.startswith("tcpdump"):
                dumps = [
                    netns.popen(
                        ns,
                        ["tcpdump", "-i", i, "-n", "-w", "/dev/null"],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE,
                        text=True,
                    )
                    for ns, i in interfaces
                ]
                for d in dumps:
                    assert d.stderr is not None
                    for line in d.stderr:
                        if "listening" in line:
                            break
                on = iperf(topo, "container2", "192.168.100.3")
                for d in dumps:
                    d.terminate()
                    d.communicate()
            else:
                keep = program if "run filter" in label else None
                with Capture(interfaces, keep) as capture:
                    on = iperf(topo, "container2", "192.168.100.3")
                drops = capture.drops
            ratios.append(on / off)
        extra = f", capture drops in the last pair {drops}" if not label.startswith("tcp") else ""
        print(
            f"iperf3 container1 -> container2 with {label}: median ratio "
            f"{statistics.median(ratios):.3f} (pairs {min(ratios):.2f}-{max(ratios):.2f})" + extra
        )


def main() -> int:
    topo = lab()
    try:
        bursts(topo)
        throughput(topo)
    finally:
        build.down(None, prefix=PREFIX)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
