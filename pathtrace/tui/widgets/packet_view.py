"""The packet at the selected hop, layer by layer; changed fields highlighted."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from pathtrace.model.trace import Hop
from pathtrace.output.explain import explain
from pathtrace.output.packet import PacketView as View


class PacketView(Static):
    DEFAULT_CSS = "PacketView { height: 1fr; overflow-y: auto; }"

    def show(self, view: View | None, hop_text: str = "", translation: str | None = None) -> None:
        if view is None:
            self.update("select a hop")
            return
        text = Text()
        seen = {
            True: "seen by the capture",
            False: "NOT seen by the capture",
            None: "no capture at this hook",
        }[view.captured]
        text.append(f"{hop_text}\n", style="bold")
        if translation and translation != hop_text:
            text.append(f"{translation}\n", style="bold cyan")
        text.append(
            f"{seen}; changed since the previous hop: {', '.join(view.changed) or 'nothing'}\n",
            style="dim",
        )
        names = {
            "src": "src",
            "dst": "dst",
            "sport": "sport",
            "dport": "dport",
            "ttl": "ttl",
            "length": "len",
        }
        for line in view.lines:
            field = line.strip().split(" ", 1)[0]
            hot = any(field == names[c] for c in view.changed)
            text.append(line + "\n", style="bold yellow" if hot else "")
        self.update(text)


class ExplainView(Static):
    DEFAULT_CSS = "ExplainView { height: 1fr; padding: 0 1; }"

    def show_hop(self, hop: object) -> None:

        self.update(explain(hop) if isinstance(hop, Hop) else "")
