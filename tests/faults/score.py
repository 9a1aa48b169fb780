"""The fault scoreboard: `python -m tests.faults.score [FAULT ...] [--markdown]`.

Makes each fault on a fresh reference lab, runs its probe, and prints per
fault whether the verdict's outcome, place, cause and fix are right, and the
totals. Needs root, like the tests.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from tests.faults.corpus import BY_NAME, FAULTS
from tests.faults.harness import Score, run_fault, score

MARKS = {True: "right", False: "wrong"}


def table(scores: list[Score], markdown: bool) -> str:
    head = ("fault", "layer", "outcome", "place", "cause (code)", "words", "fix", "predicted")
    rows = [
        (
            s.fault.name,
            s.fault.layer,
            MARKS[s.outcome],
            MARKS[s.place],
            f"{s.cause} ({s.verdict.code})",
            MARKS[s.said],
            MARKS[s.fix],
            s.predicted,
        )
        for s in scores
    ]
    n = len(scores)
    totals = (
        "total",
        f"{n} faults",
        f"{sum(s.outcome for s in scores)}/{n}",
        f"{sum(s.place for s in scores)}/{n}",
        f"{sum(s.cause == 'right' for s in scores)}/{n} "
        f"({sum(s.cause == 'wrong' for s in scores)} wrong)",
        f"{sum(s.said for s in scores)}/{n}",
        f"{sum(s.fix for s in scores)}/{n}",
        " ".join(
            f"{sum(s.predicted == m for s in scores)} {m}"
            for m in ("right", "wrong", "unknown", "missed")
        ),
    )
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(r) + " |" for r in [*rows, totals]]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in [head, *rows, totals]) for i in range(len(head))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
        for r in [head, *rows, totals]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.faults.score")
    parser.add_argument("faults", nargs="*", help="fault names (default: all)")
    parser.add_argument("--markdown", action="store_true", help="a table for README.md")
    parser.add_argument("-v", "--verbose", action="store_true", help="each verdict in full")
    args = parser.parse_args(argv)
    unknown = [name for name in args.faults if name not in BY_NAME]
    if unknown:
        print(f"unknown faults: {', '.join(unknown)}", file=sys.stderr)
        return 2
    chosen = [BY_NAME[name] for name in args.faults] or FAULTS
    scores = []
    for fault in chosen:
        try:
            result = run_fault(fault)
        except subprocess.CalledProcessError as error:
            print(f"{fault.name}: could not make it: {error.stderr.decode().strip()}")
            return 2
        s = score(fault, result.probes[0].verdict)
        scores.append(s)
        if args.verbose:
            v = s.verdict
            print(
                f"{fault.name}: {v.outcome} | {v.summary}\n  where: {v.where}\n"
                f"  cause: {v.cause}\n  code: {v.code} {v.objects}\n  fix: {v.fix}\n"
                + "".join(
                    f"  predicted {p.describe()} {p.code} {p.objects}\n" for p in v.predicted
                ),
                file=sys.stderr,
            )
    print(table(scores, args.markdown))
    return 0 if all(s.right for s in scores) else 1


if __name__ == "__main__":
    sys.exit(main())
