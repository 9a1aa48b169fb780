"""The hop timeline of one probe: a row per hop, translations and drops styled."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable

from pathtrace.model.trace import Hop, ProbeTrace

_DIRECTION = {
    "request": "req",
    "reply": "reply",
    "icmp_error": "error",
    "source_rst": "rst",
    "source_icmp_error": "src err",
}
_STYLE = {"translate": "bold cyan", "drop": "bold red", "deliver": "green", "end": "red"}


class HopTimeline(DataTable[Text]):
    DEFAULT_CSS = "HopTimeline { height: 1fr; }"
    BINDINGS = [
        Binding("home,g", "first_hop", "first hop", show=False),
        Binding("end,G", "last_hop", "last hop", show=False),
        Binding("j", "cursor_down", "next hop", show=False),
        Binding("k", "cursor_up", "previous hop", show=False),
    ]

    def action_first_hop(self) -> None:
        if self.hops:
            self.move_cursor(row=0)

    def action_last_hop(self) -> None:
        if self.hops:
            self.move_cursor(row=len(self.hops) - 1)

    @dataclass
    class HopSelected(Message):
        hop: Hop
        previous: Hop | None  # the hop before in the same series
        series: str  # request, reply, ...

    def __init__(self, **kwargs: object) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)  # type: ignore[arg-type]
        self.hops: list[Hop] = []
        self.series: list[tuple[str, bool]] = []  # each row's (series, first of it)

    def on_mount(self) -> None:
        self.add_columns("+us", "cap", "dir", "node", "if", "what")

    def show(self, probe: ProbeTrace | None) -> None:
        self.clear()
        self.hops = []
        self.series = []
        if probe is None:
            return
        for series in probe.series:
            for number, hop in enumerate(series.hops):
                self.hops.append(hop)
                self.series.append((series.direction, number == 0))
                mark = {True: "*", False: "!", None: ""}[hop.captured]
                self.add_row(
                    Text(f"{hop.offset_us:.1f}"),
                    Text(mark),
                    Text(_DIRECTION[series.direction]),
                    Text(hop.node),
                    Text(hop.interface or "-"),
                    Text(hop.text, style=_STYLE.get(hop.action, "")),
                )
        if self.hops:
            # Where it died, if it did: the hop a failing probe is looked at for,
            # selected (and so on screen, however few rows the terminal has).
            drop = next((i for i, h in enumerate(self.hops) if h.action == "drop"), 0)
            self.move_cursor(row=drop)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        row = event.cursor_row
        if 0 <= row < len(self.hops):
            direction, first = self.series[row]
            previous = None if first else self.hops[row - 1]
            self.post_message(self.HopSelected(self.hops[row], previous, direction))
