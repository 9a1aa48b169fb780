"""What to send: kind, from, to, count."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Input, Label, Select

from pathtrace.lab import DEFAULT_SOURCE


class ProbeForm(Horizontal):
    DEFAULT_CSS = """
    ProbeForm { height: 3; }
    ProbeForm Label { padding: 1 1 0 1; }
    ProbeForm Select { width: 14; }
    ProbeForm #source { width: 16; }
    ProbeForm #target { width: 22; }
    ProbeForm #count { width: 8; }
    """

    def compose(self) -> ComposeResult:
        yield Select(
            [("ping", "ping"), ("udp", "udp"), ("tcp", "tcp")],
            value="ping",
            allow_blank=False,
            id="kind",
        )
        yield Label("from")
        yield Input(DEFAULT_SOURCE, id="source")
        yield Label("to")
        yield Input("8.8.8.8", id="target", placeholder="ADDR or ADDR:PORT")
        yield Label("count")
        yield Input("3", id="count")

    def values(self) -> tuple[str, str, str, str]:
        kind = self.query_one("#kind", Select).value
        return (
            str(kind),
            self.query_one("#source", Input).value,
            self.query_one("#target", Input).value,
            self.query_one("#count", Input).value,
        )
