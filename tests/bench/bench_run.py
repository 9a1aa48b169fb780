"""Benchmark: `pathtrace run ping 8.8.8.8 -c 3 -i 0.05` beside plain ping.

Three figures, medians of ROUNDS interleaved rounds in one lab (up, capture on):
- a traced run as a new process (wall from spawn to exit, peak RSS), against
  `ping -c 3 -i 0.05` run in container1 the same way (issue 23's target: 4x,
  under 80 MB);
- a second run in one process (the library API, as the TUI runs them: the
  imports done, the probes verified ahead by `ready_next` after the run before,
  as the TUI has them), against the same ping (target: 2x).
The processes run with their bytecode compiled, as an installed package has it
(a PYTHONDONTWRITEBYTECODE environment would compile every module each time).
Run: `make bench` (as root).
"""

from __future__ import annotations

import compileall
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from pathtrace.lab import build, topology
from pathtrace.model.options import RunOptions
from pathtrace.session import Run, drop_ready, ready_next
from pathtrace.system import netns

ROUNDS = 9
PREFIX = "ptbr-"


def _measure(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of one process.

    Its peak RSS is read by /usr/bin/time, which this process starts: a child
    forked from this process (large once it has run traces itself) would report
    this process's size, which the kernel keeps as the child's peak across exec."""
    with tempfile.NamedTemporaryFile("r") as out:
        command = ["/usr/bin/time", "-f", "%M", "-o", out.name, *argv]
        start = time.perf_counter()
        pid = os.posix_spawn(
            command[0],
            command,
            env,
            file_actions=[(os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0)],
        )
        _, status = os.waitpid(pid, 0)
        elapsed = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) not in (0,):
            raise RuntimeError(f"{argv} failed")
        return elapsed, int(out.read().split()[-1]) / 1024


def main() -> int:
    text = topology.reference_text().replace('prefix = "pt-"', f'prefix = "{PREFIX}"', 1)
    topo = topology.parse(text)
    build.up(topo, text)
    path = f"/run/pathtrace/{PREFIX}bench.toml"
    with open(path, "w") as f:
        f.write(text)
    compileall.compile_dir(str(Path(__file__).parents[2] / "pathtrace"), quiet=1)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    options = RunOptions.parse("ping", "8.8.8.8", count=3, interval=0.05)
    traced = [sys.executable, "-m", "pathtrace", "run", "ping", "8.8.8.8", "-c", "3"]
    traced += ["-i", "0.05", "--topology", path]
    ping = netns.command(
        topo.namespace("container1"),
        ["/usr/bin/ping", "-c", "3", "-i", "0.05", "-q", "8.8.8.8"],
    )
    ours, theirs, again = [], [], []
    try:
        Run(options, topo, text).execute()  # this process's imports, done once
        ready_next(options, wait=True)
        for _ in range(ROUNDS):
            ours.append(_measure(traced, env))
            theirs.append(_measure(ping, env))
            start = time.perf_counter()
            Run(options, topo, text).execute()
            again.append(time.perf_counter() - start)
            # As the TUI does once a run has ended; waited for, so that the verifier
            # does not run beside the next round's new process.
            ready_next(options, wait=True)
    finally:
        drop_ready()
        build.down(None, prefix=PREFIX)
        os.unlink(path)
    t_ours, m_ours = (statistics.median(x) for x in zip(*ours, strict=True))
    t_ping, m_ping = (statistics.median(x) for x in zip(*theirs, strict=True))
    t_again = statistics.median(again)
    print(f"run ping 8.8.8.8 -c 3 -i 0.05, median of {ROUNDS} interleaved rounds (lab up)")
    print(f"  ping -c 3 -i 0.05     {t_ping:.3f} s  peak {m_ping:.0f} MB")
    print(f"  pathtrace run         {t_ours:.3f} s  peak {m_ours:.0f} MB")
    print(f"  second run, same process {t_again:.3f} s")
    print(f"  ratio, new process    {t_ours / t_ping:.2f}x  (target 4x, < 80 MB)")
    print(f"  ratio, second run     {t_again / t_ping:.2f}x  (target 2x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
