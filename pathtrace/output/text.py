"""The run for people: header, hop table per probe, verdict. Fits 100 columns, reads in 80.

Probes that took the same path as the one before are summarised in a line, so
`-c 10` does not print the same table ten times.
"""

from __future__ import annotations

import io
import re
import shutil
import sys
import textwrap
from typing import Any, TextIO

from pathtrace.model.result import RunResult
from pathtrace.model.trace import Hop, ProbeTrace

_OUTCOME_STYLE = {
    "answered": "green",
    "delivered": "green",
    "rejected": "yellow",
    "dropped": "red",
    "lost": "red",
}
# Spaces at a line's end, before any closing colour codes.
_TRAILING = re.compile(r" +((?:\x1b\[[0-9;]*m)*)$", re.M)
_ACTION_STYLE = {"translate": "cyan", "drop": "bold red", "deliver": "green"}


def hooks_line(result: RunResult) -> str:
    used = [h for h in result.hooks if h["state"] == "used"]
    parts = []
    for hook in used:
        where = f" ({hook['reason']})" if hook["reason"] else ""
        parts.append(f"{hook['family']}: {hook['via']}{where}")
    not_used = sorted({h["family"] for h in result.hooks} - {h["family"] for h in used})
    text = "; ".join(parts)
    if not_used:
        text += f"; not available here: {', '.join(not_used)} (pathtrace doctor says why)"
    return text


def _path_signature(probe: ProbeTrace) -> tuple[Any, ...]:
    return (
        probe.verdict.outcome,
        tuple((s.direction, h.node, h.interface, h.action) for s in probe.series for h in s.hops),
        # Flooded once, forwarded once the FDB learned: not the same path.
        tuple(h.text for s in probe.series for h in s.hops if h.action == "bridge-forward"),
        tuple(len(s.copies) for s in probe.series),
    )


def render(result: RunResult, out: TextIO | None = None, width: int | None = None) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    stream = out or sys.stdout
    tty = stream.isatty()
    width = width or (shutil.get_terminal_size().columns if tty else 100)
    # Rendered aside, then written without the padding rich gives table cells:
    # no line of the report ends in spaces.
    buffer = io.StringIO()
    console = Console(
        file=buffer,
        width=width,
        force_terminal=tty,
        highlight=False,
        soft_wrap=False,
        emoji=False,  # fd00:100::2 is an address, not ":100:" (an emoji code)
    )

    def note(text: str) -> None:
        _hanging(console, text, style="dim")

    o = result.options
    console.print(
        f"[bold]pathtrace run {escape(o.label)}[/]  ({o.count} probes, "
        f"run {result.run_id:08x}, kernel {result.kernel})"
    )
    note(f"hooks: {hooks_line(result)}")
    for text in result.degraded:
        _hanging(console, f"warning: {text}", style="yellow")
    if result.interrupted:
        _hanging(console, f"interrupted (Ctrl-C) after {o.count} probes sent", style="yellow")
    if result.capture_interfaces:
        c = result.correlation
        disagree = (len(c.events_without_capture) + len(c.captures_without_event)) if c else 0
        note(
            f"capture: {len(result.captures)} packets on "
            f"{result.capture_interfaces} interfaces ({result.options.capture}), "
            f"{result.capture_drops} dropped; hops marked * were seen by it"
            + (f"; {disagree} disagreements (see --json)" if disagree else "")
        )
    for text in result.notes:
        note(f"note: {text}")
    lost = sum(result.lost.values())
    if lost:
        console.print(f"[red]{lost} events were lost (ring buffer full): hops may be missing[/]")
    previous: tuple[Any, ...] | None = None
    for probe in result.probes:
        signature = _path_signature(probe)
        style = _OUTCOME_STYLE[probe.verdict.outcome]
        if signature == previous:
            console.print(
                f"probe {probe.number}: same path, [{style}]{escape(probe.verdict.summary)}[/]"
            )
            continue
        previous = signature
        console.print()
        console.print(f"[bold]probe {probe.number}[/]: [{style}]{escape(probe.verdict.summary)}[/]")
        for series in probe.series:
            if series is None or not series.hops:
                continue
            table = Table(box=None, pad_edge=False, show_header=False, expand=False)
            table.add_column("t", justify="right", style="dim", no_wrap=True)
            table.add_column("c", no_wrap=True, width=1)
            table.add_column("node", no_wrap=True)
            table.add_column("if", no_wrap=True)
            table.add_column("what", overflow="fold")
            console.print(
                f"  [bold]{escape(series.title)}[/]  {escape(series.hops[0].packet.describe())}"
            )
            for hop in series.hops:
                mark = {True: "*", False: "[red]![/]", None: ""}[hop.captured]
                table.add_row(
                    f"+{hop.offset_us:.1f}us", mark, hop.node, hop.interface or "-", _what(hop)
                )
            for copy in series.copies:  # flooded beside the path: dim, never judged
                for hop in copy.hops:
                    mark = {True: "*", False: "!", None: ""}[hop.captured]
                    table.add_row(
                        f"+{hop.offset_us:.1f}us",
                        mark,
                        hop.node,
                        hop.interface or "-",
                        f"[dim]copy: {escape(hop.text)}[/]",
                    )
            console.print(table)
        _verdict(console, probe)
    console.print()
    answered = result.answered
    colour = "green" if result.delivered else "red"
    console.print(f"[{colour}]{answered}/{len(result.probes)} answered[/]")
    stream.write("".join(_TRAILING.sub(r"\1", line) for line in buffer.getvalue().splitlines(True)))


def _what(hop: Hop) -> str:
    from rich.markup import escape

    style = _ACTION_STYLE.get(hop.action)
    text = escape(hop.text)
    return f"[{style}]{text}[/]" if style else text


def _verdict(console: Any, probe: ProbeTrace) -> None:
    from rich.markup import escape

    v = probe.verdict
    if v.outcome == "answered":
        return
    for label, text in (("where:", v.where), ("why:  ", v.cause), ("fix:  ", v.fix)):
        if text:
            _hanging(console, f"  {label} {text}")
    if v.fix and v.proof:
        _hanging(console, f"  proof: {v.proof}")
    for line in v.evidence:  # the saved state that proves the cause
        _hanging(console, f"  seen:  {line}")
    for prediction in v.predicted:  # what the saved state alone says would happen
        _hanging(console, f"  predicted: {prediction.describe()}")
        for unknown in prediction.unknowns:
            _hanging(console, f"  not modelled: {unknown}")
    if v.confidence != "certain":
        console.print(f"  [yellow]{escape(v.confidence)}[/]")


def _hanging(console: Any, text: str, style: str = "") -> None:
    """A long line wrapped at words, continued under the start of its text, past
    its label ("hooks: ...", "  why:   ...")."""
    from rich.markup import escape

    label = re.match(r"\s*\S+:\s+", text)
    indent = len(label.group(0)) if label else 0
    wrapped = textwrap.fill(
        text,
        console.width,
        subsequent_indent=" " * indent,
        break_long_words=False,
        break_on_hyphens=False,
    )
    body = escape(wrapped)
    console.print(f"[{style}]{body}[/]" if style else body, soft_wrap=True)
