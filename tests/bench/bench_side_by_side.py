"""Runs side by side, and memory per probe.

    python -m tests.bench.bench_side_by_side [ROUNDS]

1. Soak: ROUNDS rounds (default 10) of 8 `run ping 8.8.8.8 -c 3` at once on one
   lab: how many of them got every NAT hop (SNAT and un-SNAT per probe) and
   no warning, and the wall time of a round against one run alone in the same
   round (median ratio).
2. Memory: peak RSS of `run ping 8.8.8.8 -c N -i 0 --json` for N = 1, 100,
   1000 (medians of 3), and the slope per probe.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time

from tests.bench.common import PREFIX, lab

RUN = [sys.executable, "-m", "pathtrace", "run", "ping", "8.8.8.8", "--capture", "off", "--json"]


def _complete(out: str) -> bool:
    report = json.loads(out)
    kinds = [
        h["translation"]["kind"]
        for p in report["probes"]
        for s in ("request", "reply")
        for h in (p[s] or {}).get("hops", [])
        if h["translation"]
    ]
    count = report["summary"]["count"]
    return (
        report["summary"]["answered"] == count
        and kinds.count("SNAT") == count
        and kinds.count("un-SNAT") == count
        and not report["warnings"]
    )


def soak(rounds: int, topology_file: str) -> None:
    args = [*RUN, "-c", "3", "--topology", topology_file]
    good = total = 0
    ratios = []
    for _ in range(rounds):
        t0 = time.monotonic()
        alone = subprocess.run(args, capture_output=True, text=True, check=False)
        one = time.monotonic() - t0
        good += _complete(alone.stdout)
        total += 1
        t0 = time.monotonic()
        runs = [subprocess.Popen(args, stdout=subprocess.PIPE, text=True) for _ in range(8)]
        outs = [p.communicate()[0] for p in runs]
        eight = time.monotonic() - t0
        good += sum(_complete(o) for o in outs)
        total += len(outs)
        ratios.append(eight / one)
    print(f"soak: {good}/{total} runs with every NAT hop and no warning")
    print(f"8 at once / 1 alone, wall time: median {statistics.median(ratios):.2f}")


def memory(topology_file: str) -> None:
    peaks = {}
    for n in (1, 100, 1000):
        samples = []
        for _ in range(3):
            done = subprocess.run(
                ["/usr/bin/time", "-f", "%M", *RUN, "-c", str(n), "-i", "0"]
                + ["--topology", topology_file],
                capture_output=True,
                text=True,
                check=False,
            )
            samples.append(int(done.stderr.strip().splitlines()[-1]) / 1024)
        peaks[n] = statistics.median(samples)
        print(f"-c {n}: peak RSS {peaks[n]:.0f} MB")
    print(f"per probe: {(peaks[1000] - peaks[1]) / 999 * 1024:.0f} KB")


def main() -> None:
    from pathlib import Path
    from tempfile import mkdtemp

    from pathtrace.lab import build, topology

    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    topo = lab()
    folder = Path(mkdtemp())
    path = folder / "lab.toml"
    path.write_text(topology.reference_text().replace('prefix = "pt-"', f'prefix = "{PREFIX}"', 1))
    try:
        soak(rounds, str(path))
        memory(str(path))
    finally:
        build.down(topo)
        path.unlink()
        folder.rmdir()


if __name__ == "__main__":
    main()
