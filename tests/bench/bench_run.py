"""Benchmark: `pathtrace run ping 8.8.8.8 -c 3` end to end, beside plain ping.

Wall time (process start to exit) and peak memory (max RSS) of each, median
of ROUNDS, with the lab up; plain `ping -c 3 -i 0.05` runs in container1.
Run: `make bench` (as root).
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import time

from pathtrace.lab import build, topology
from pathtrace.system import netns

ROUNDS = 7
PREFIX = "ptbr-"


def _measure(argv: list[str]) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of one process."""
    start = time.perf_counter()
    pid = os.posix_spawn(
        shutil.which(argv[0]) or argv[0],
        argv,
        os.environ,
        file_actions=[(os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0)],
    )
    _, status, usage = os.wait4(pid, 0)
    elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) not in (0,):
        raise RuntimeError(f"{argv} failed")
    return elapsed, usage.ru_maxrss / 1024


def main() -> int:
    text = topology.reference_text().replace('prefix = "pt-"', f'prefix = "{PREFIX}"', 1)
    topo = topology.parse(text)
    build.up(topo, text)
    path = f"/run/pathtrace/{PREFIX}bench.toml"
    with open(path, "w") as f:
        f.write(text)
    ours, theirs = [], []
    try:
        for _ in range(ROUNDS):
            ours.append(
                _measure(
                    [
                        sys.executable,
                        "-m",
                        "pathtrace",
                        "run",
                        "ping",
                        "8.8.8.8",
                        "-c",
                        "3",
                        "--topology",
                        path,
                    ]
                )
            )
            theirs.append(
                _measure(
                    netns.command(
                        topo.namespace("container1"),
                        ["/usr/bin/ping", "-c", "3", "-i", "0.05", "-q", "8.8.8.8"],
                    )
                )
            )
    finally:
        build.down(None, prefix=PREFIX)
        os.unlink(path)
    t_ours, m_ours = (statistics.median(x) for x in zip(*ours, strict=True))
    t_ping, m_ping = (statistics.median(x) for x in zip(*theirs, strict=True))
    print(f"run ping 8.8.8.8 -c 3, median of {ROUNDS} (lab up)")
    print(f"  pathtrace run   {t_ours:.3f} s  peak {m_ours:.0f} MB  (targets < 1.5 s, < 150 MB)")
    print(f"  ping -i 0.05    {t_ping:.3f} s  peak {m_ping:.0f} MB")
    print(f"  ratio           {t_ours / t_ping:.2f} (time)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
