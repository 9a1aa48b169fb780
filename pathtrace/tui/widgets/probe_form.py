"""What to send: kind, from, to, count."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.events import DescendantBlur
from textual.widgets import Input, Label, Select

from pathtrace.lab import DEFAULT_SOURCE


class ProbeForm(Horizontal):
    """Enter in a field runs the probe; Esc leaves the form for the timeline."""

    DEFAULT_CSS = """
    ProbeForm { height: 3; }
    ProbeForm Label { padding: 1 1 0 1; }
    ProbeForm Select { width: 12; }
    ProbeForm #source { width: 18; }
    ProbeForm #target { width: 24; }
    ProbeForm #count { width: 8; }
    """
    BINDINGS = [Binding("escape", "leave", "leave the form", show=False)]

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
        yield Input("3", id="count", restrict=r"[0-9]{0,4}")  # digits only

    def values(self) -> tuple[str, str, str, str]:
        kind = self.query_one("#kind", Select).value
        return (
            str(kind),
            self.query_one("#source", Input).value.strip(),
            self.query_one("#target", Input).value.strip(),
            self.query_one("#count", Input).value.strip(),
        )

    def fill(self, kind: str, source: str, target: str, count: int) -> None:
        """The form as a run had it (a bundle opened from disk shows its probe)."""
        self.query_one("#kind", Select).value = kind
        for field, value in (("#source", source), ("#target", target), ("#count", str(count))):
            self.query_one(field, Input).value = value
            self.query_one(field, Input).cursor_position = 0

    def on_descendant_blur(self, event: DescendantBlur) -> None:
        # A field scrolled to its end while typed in shows its start again.
        if isinstance(event.widget, Input):
            event.widget.cursor_position = 0

    def action_leave(self) -> None:
        self.app.query_one("#timeline").focus()
