"""Keys and what the panes show."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

HELP = """\
# pathtrace

| key | what |
|---|---|
| r | run the probe in the form (kind, from, to, count) |
| n / p | next / previous probe of the run |
| u / x | lab up / lab down |
| b / f | break the lab (pick a scenario) / fix it |
| s / o | save the run as a bundle / open a saved bundle |
| t | show or hide the lab (hidden below 100 columns) |
| ? / q | this help / quit |

The timeline shows every hop of the selected probe; `*` marks hops the
per-interface capture saw, `!` hops it did not. Select a hop to see the packet
there (what changed since the previous hop is highlighted) and what the kernel
did, in the tutorial's terms.
"""


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 80%; height: 80%; border: thick $primary;
                                  background: $surface; }
    """
    BINDINGS = [("escape,q,question_mark", "app.pop_screen", "close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Markdown(HELP)
