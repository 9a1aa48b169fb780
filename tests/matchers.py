"""Assert an ordered subset of events, retis-style: each pattern names only what matters."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pathtrace.model.event import Event


def matches(event: Event, pattern: dict[str, Any]) -> bool:
    return all(getattr(event, key) == value for key, value in pattern.items())


def assert_ordered_subset(events: Sequence[Event], patterns: Sequence[dict[str, Any]]) -> None:
    """Each pattern matches some event, in order (other events may come between)."""
    at = 0
    for n, pattern in enumerate(patterns):
        while at < len(events) and not matches(events[at], pattern):
            at += 1
        if at == len(events):
            seen = "\n".join(
                f"  {e.hook:<9} {e.nf_hook or '':<11} {e.where:<28} {e.tag:<8} {e.src}->{e.dst}"
                for e in events
            )
            raise AssertionError(f"pattern {n} not found in order: {pattern}\nevents:\n{seen}")
        at += 1


def tshark_rows(pcapng: object) -> list[tuple[str, str]]:
    """(interface name, packet comment) of every packet, as tshark reads the file."""
    import subprocess

    out = subprocess.run(
        [
            "tshark",
            "-r",
            str(pcapng),
            "-T",
            "fields",
            "-e",
            "frame.interface_name",
            "-e",
            "frame.comment",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [tuple(line.split("\t", 1)) for line in out.splitlines()]  # type: ignore[misc]
