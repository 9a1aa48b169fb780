"""The packet at the selected hop: what changed in one line, then its layers as a
collapsible tree (Wireshark's detail pane), changed fields highlighted; and what the
kernel did there, in words. Both panes take focus and scroll from the keyboard."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Static, Tree

from pathtrace.model.trace import Hop
from pathtrace.output.explain import explain
from pathtrace.output.packet import PacketView as View

_SEEN = {
    True: "seen by the capture",
    False: "NOT seen by the capture",
    None: "no capture at this hook",
}


class PacketView(Vertical):
    DEFAULT_CSS = """
    PacketView { height: 1fr; }
    PacketView > #packet-head { height: auto; }
    PacketView > Tree { height: 1fr; }
    """

    def compose(self) -> ComposeResult:
        yield Static("select a hop", id="packet-head")
        tree: Tree[str] = Tree("packet", id="layers")
        tree.show_root = False
        yield tree

    def show(
        self,
        view: View | None,
        hop_text: str = "",
        translation: str | None = None,
        first_of: str | None = None,
        live: bool = False,
    ) -> None:
        """``first_of``: the series (request, reply...) whose first hop this is;
        ``live``: a hop of a run under way (its capture is matched at the end)."""
        head = self.query_one("#packet-head", Static)
        tree = self.query_one("#layers", Tree)
        tree.clear()
        if view is None:
            head.update("select a hop")
            return
        text = Text()
        text.append(f"{hop_text}\n", style="bold")
        if translation and translation != hop_text:
            text.append(f"{translation}\n", style="bold cyan")
        if view.diff:
            text.append(f"changed since the previous hop: {view.diff}\n", style="bold yellow")
        elif first_of:
            what = first_of.replace("_", " ")
            text.append(f"the {what}'s first hop: nothing before it to compare\n", style="dim")
        else:
            text.append("changed since the previous hop: nothing\n", style="dim")
        seen = "the capture is matched to the hops when the run ends" if live else None
        text.append(seen or _SEEN[view.captured], style="dim")
        head.update(text)
        for layer, fields in view.layers:
            branch = tree.root.add(Text(layer, style="bold"), expand=True)
            for line in fields:
                branch.add_leaf(Text(line, style="bold yellow" if view.is_changed(line) else ""))
        if view.hex:  # the frame's bytes, folded (Enter opens it)
            raw = tree.root.add(Text(f"bytes ({len(view.hex)} lines)", style="bold"))
            for line in view.hex:
                raw.add_leaf(Text(line))

    def text(self) -> str:
        """Everything the pane shows, as plain text (for tests and copy)."""
        head = str(self.query_one("#packet-head", Static).render())
        tree = self.query_one("#layers", Tree)
        lines = [head]
        for layer in tree.root.children:
            lines.append(str(layer.label))
            lines += [f"  {leaf.label}" for leaf in layer.children]
        return "\n".join(lines)


class ExplainView(VerticalScroll):
    DEFAULT_CSS = """
    ExplainView { height: 1fr; padding: 0 1; }
    ExplainView > Static { height: auto; }
    """

    def compose(self) -> ComposeResult:
        yield Static("", id="explain-text")

    def show_hop(self, hop: object) -> None:
        self.query_one("#explain-text", Static).update(explain(hop) if isinstance(hop, Hop) else "")

    def text(self) -> str:
        return str(self.query_one("#explain-text", Static).render())
