"""One long line in full (a lab difference, a diagnosis), wrapped; Esc closes."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static


class DetailScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    DetailScreen { align: center middle; }
    DetailScreen > VerticalScroll { width: 80%; height: auto; max-height: 80%;
                                    border: thick $primary; background: $surface; padding: 0 1; }
    """
    BINDINGS = [("escape,enter,q", "app.pop_screen", "close")]

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(self.text, markup=False)
