"""Keys and what the panes show."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

HELP = """\
# pathtrace keys

Esc, q or ? close this help.

| key | what |
|---|---|
| r, ctrl+r | run the probe in the form (ctrl+r also from inside a field) |
| Enter | in a field of the form: run; on a lab difference: show it whole |
| Esc | leave the form (back to the timeline) |
| i | to the form (its target field) |
| F | pick the source: the lab's nodes, and every namespace on the machine |
| Tab / shift+Tab | next / previous pane or field |
| ↑ ↓ (j k), PgUp PgDn | move in the timeline; scroll the focused pane |
| Home / End (g / G) | first / last hop of the timeline |
| / | find a hop by its node, interface or words; / then Enter: the next |
| ← → | scroll the timeline's columns |
| n / p | next / previous probe of the run |
| u / x x | lab up / lab down (x twice: every namespace of the lab goes) |
| b / f | break the lab (pick a scenario) / fix it |
| l | read the lab's live state again (also when the window regains focus) |
| s | save the run as a bundle (during a run: when it ends) |
| o | open a saved run: type a path, or pick one |
| w | watch real packets a pcap filter picks, live; s stops, Esc goes back |
| t | show or hide the lab pane (hidden below 100 columns) |
| ctrl+p | the command palette: every action by name |
| ? | this help |
| q, ctrl+c | quit |

The timeline shows every hop of the selected probe, by series: `req` the
request, `reply` its answer, `error` an ICMP error about it, `rst` and
`src err` what the source sent back to an answer. `*` marks hops the
per-interface capture saw, `!` hops it did not. Select a hop to see the packet
there: what changed since the previous hop on one line, then its layers (Enter
folds a layer), and what the kernel did, in the tutorial's terms. After a run
on a network pathtrace did not build, the left pane shows what was traced.
Keys that need a live lab are hidden while a bundle is open without one.

Watch mode (w, or `pathtrace tui --watch FILTER`) follows an application's own
packets, as `pathtrace watch` does: the flows on the left as they start, the
selected flow's first packet and answer hop by hop, NAT, RSTs, retransmissions
and its verdict on the right, updated while it runs.
"""


# Rows of keys that need a live lab: left out while a bundle is open without one.
LIVE_KEYS = (
    "| r, ctrl+r ",
    "| F ",
    "| u / x",
    "| b / f ",
    "| l ",
    "| w ",
    "| Esc | leave the form",
    "| i ",
)


def help_text(live: bool) -> str:
    lines = HELP.splitlines()
    if not live:
        lines = [line for line in lines if not line.startswith(LIVE_KEYS)]
        lines = [
            line.replace("| Enter | in a field of the form: run; on", "| Enter | on")
            for line in lines
        ]
    return "\n".join(lines) + "\n"


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 80%; height: 80%; border: thick $primary;
                                  background: $surface; }
    """
    BINDINGS = [("escape,q,question_mark", "app.pop_screen", "close")]

    def __init__(self, live: bool = True) -> None:
        super().__init__()
        self.live = live

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Markdown(help_text(self.live))
