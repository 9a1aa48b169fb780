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
        Binding("home", "first_hop", "first hop", show=False),
        Binding("end", "last_hop", "last hop", show=False),
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
        previous: Hop | None

    def __init__(self, **kwargs: object) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)  # type: ignore[arg-type]
        self.hops: list[Hop] = []

    def on_mount(self) -> None:
        self.add_columns("+us", "cap", "dir", "node", "if", "what")

    def show(self, probe: ProbeTrace | None) -> None:
        self.clear()
        self.hops = []
        if probe is None:
            return
        for series in probe.series:
            for hop in series.hops:
                self.hops.append(hop)
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
            self.move_cursor(row=0)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        row = event.cursor_row
        if 0 <= row < len(self.hops):
            self.post_message(self.HopSelected(self.hops[row], self.hops[row - 1] if row else None))
