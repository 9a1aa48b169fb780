"""The verdict in words, the cause and the fix."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from pathtrace.model.result import RunResult

_STYLE = {
    "answered": "bold green",
    "delivered": "bold green",
    "rejected": "bold yellow",
    "dropped": "bold red",
    "lost": "bold red",
}


class DiagnosisPane(VerticalScroll):
    """Scrolls (wheel, or arrows once focused): a fix and the evidence come after
    the cause and would otherwise be cut at the pane's height."""

    DEFAULT_CSS = "DiagnosisPane { height: auto; max-height: 8; padding: 0 1; }"

    def compose(self) -> ComposeResult:
        yield Static("", id="diagnosis-text")

    def text(self) -> str:
        """What the pane says (what a test reads)."""
        return str(self.query_one("#diagnosis-text", Static).content)

    def update(self, text: Text | str) -> None:
        self.query_one("#diagnosis-text", Static).update(text)

    def show(self, result: RunResult | None, index: int = 0) -> None:
        if result is None or not result.probes:
            self.update("no run yet: press r to run the probe")
            return
        probe = result.probes[min(index, len(result.probes) - 1)]
        v = probe.verdict
        text = Text()
        text.append(f"probe {probe.number} of {len(result.probes)}: ", style="bold")
        text.append(v.summary, style=_STYLE[v.outcome])
        text.append(
            f"   ({result.answered}/{len(result.probes)} answered; {result.options.label})\n",
            style="dim",
        )
        if v.cause:
            text.append(f"why: {v.cause}\n")
        if v.fix:
            text.append(f"fix: {v.fix}\n")
        for line in v.evidence:
            text.append(f"seen: {line}\n", style="dim")
        if v.confidence != "certain":
            text.append(v.confidence, style="yellow")
        self.update(text)
