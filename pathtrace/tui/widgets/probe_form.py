"""What to send: kind, from, to, count, size, DF; each field named in its border."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.events import DescendantBlur
from textual.widgets import Checkbox, Input, Select

from pathtrace.lab import DEFAULT_SOURCE
from pathtrace.model.options import KINDS


@dataclass(frozen=True)
class FormValues:
    """The form as typed (checked when run, each mistake named by its field)."""

    kind: str
    source: str
    target: str
    count: str
    size: str  # "" for the default
    dont_fragment: bool


class ProbeForm(Horizontal):
    """Enter in a field runs the probe; Esc leaves the form for the timeline."""

    # The labels are the fields' border titles: on one 80-column row, the target
    # keeps room for an IPv6 address (it takes what the others leave).
    DEFAULT_CSS = """
    ProbeForm { height: 3; }
    ProbeForm Input { padding: 0 1; }
    ProbeForm Select { width: 12; }
    ProbeForm #source { width: 14; }
    ProbeForm #target { width: 1fr; min-width: 18; }
    ProbeForm #count { width: 11; }
    ProbeForm #size { width: 10; }
    ProbeForm Checkbox { width: auto; padding: 0; }
    """
    # Shown in the footer while a field has the keys (the app's own single keys
    # type into the field then, and the footer hides them; Enter runs, as said
    # in the fields' placeholder and help).
    BINDINGS = [
        Binding("escape", "leave", "leave the form"),
        Binding("tab", "app.focus_next", "next field"),
    ]

    def compose(self) -> ComposeResult:
        yield Select([(k, k) for k in KINDS], value="ping", allow_blank=False, id="kind")
        yield _titled(Input(DEFAULT_SOURCE, id="source"), "from")
        yield _titled(Input("8.8.8.8", id="target", placeholder="ADDR or ADDR:PORT"), "to")
        yield _titled(Input("3", id="count", restrict=r"[0-9]{0,4}"), "count")  # digits only
        yield _titled(Input("", id="size", placeholder="56", restrict=r"[0-9]{0,5}"), "size")
        yield Checkbox("DF", id="df")  # don't fragment

    def values(self) -> FormValues:
        kind = self.query_one("#kind", Select).value
        return FormValues(
            str(kind),
            self.query_one("#source", Input).value.strip(),
            self.query_one("#target", Input).value.strip(),
            self.query_one("#count", Input).value.strip(),
            self.query_one("#size", Input).value.strip(),
            self.query_one("#df", Checkbox).value,
        )

    def fill(
        self,
        kind: str,
        source: str,
        target: str,
        count: int,
        size: int | None = None,
        dont_fragment: bool = False,
    ) -> None:
        """The form as a run had it (a bundle opened from disk shows its probe)."""
        self.query_one("#kind", Select).value = kind
        fields = (("#source", source), ("#target", target), ("#count", str(count)))
        for field, value in (*fields, ("#size", "" if size is None else str(size))):
            self.query_one(field, Input).value = value
            self.query_one(field, Input).cursor_position = 0
        self.query_one("#df", Checkbox).value = dont_fragment

    def fill_command(self, command: str) -> bool:
        """A `run` command line (a break scenario's "try:"), as the form's fields;
        False (the form untouched) for what the form cannot hold."""
        words = shlex.split(command)
        if len(words) < 3 or words[0] != "run" or words[1] not in KINDS:
            return False
        kind, target, rest = words[1], words[2], words[3:]
        source, size, df = DEFAULT_SOURCE, None, False
        while rest:
            option = rest.pop(0)
            if option == "--df":
                df = True
            elif option in ("--from", "--size") and rest:
                value = rest.pop(0)
                if option == "--from":
                    source = value
                elif value.isdigit():
                    size = int(value)
                else:
                    return False
            else:
                return False  # an option the form has no field for
        self.fill(kind, source, target, 3, size, df)
        return True

    def on_descendant_blur(self, event: DescendantBlur) -> None:
        # A field scrolled to its end while typed in shows its start again.
        if isinstance(event.widget, Input):
            event.widget.cursor_position = 0

    def action_leave(self) -> None:
        self.app.query_one("#timeline").focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        _mark_cut(event.input)

    def on_resize(self) -> None:
        for field in self.query(Input):
            _mark_cut(field)


def _mark_cut(field: Input) -> None:
    """A value longer than its field says so in the border (its end is not shown)."""
    width = field.content_region.width
    field.border_subtitle = "…more" if width and len(field.value) > width else ""


def _titled(field: Input, title: str) -> Input:
    field.border_title = title
    return field
