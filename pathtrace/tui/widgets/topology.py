"""The lab at a glance: nodes, interfaces, addresses, routes, rules, health."""

from __future__ import annotations

from rich.text import Text
from textual.message import Message
from textual.widgets import Tree

from pathtrace.lab.topology import Topology
from pathtrace.model.state import NamespaceState


def _plain(text: str, style: str = "") -> Text:
    """A label as written: a string label is markup, where rich also turns
    ``:100:`` (in ``fd00:100::2``) into an emoji."""
    return Text(text, style=style)


class TopologyPane(Tree[str]):
    DEFAULT_CSS = "TopologyPane { width: 34; border-right: solid $primary; }"

    class DetailAsked(Message):
        """A line too long for the pane was selected: show it whole."""

        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    def on_tree_node_selected(self, event: Tree.NodeSelected[str]) -> None:
        if event.node.data:
            self.post_message(self.DetailAsked(event.node.data))

    def __init__(self, **kwargs: object) -> None:
        super().__init__("lab", **kwargs)  # type: ignore[arg-type]
        self.show_root = True

    def show_traced(self, states: dict[str, NamespaceState]) -> None:
        """The network a run traced, as the kernel had it: each namespace with its
        interfaces (bridges with their ports, veths), addresses and routes."""
        self.clear()
        self.root.set_label(_plain(f"traced: {len(states)} namespaces (no lab)"))
        for state in states.values():
            branch = self.root.add(_plain(state.node, "bold"), expand=True)
            for link in state.links:
                if link.name == "lo":
                    continue
                master = f" (port of {link.master})" if link.master else ""
                kind = f" {link.kind}" if link.kind in ("bridge", "veth") else ""
                addresses = " ".join(link.addresses)
                down = "" if link.up else " DOWN"
                branch.add_leaf(_plain(f"{link.name}{kind} {addresses}{master}{down}".strip()))
            for route in state.routes:
                branch.add_leaf(_plain(f"route {route.describe()}"))
        self.root.expand()

    def show(self, topology: Topology | None, problems: list[str] | None, note: str = "") -> None:
        self.clear()
        if topology is None:
            self.root.set_label(_plain(note or "no lab"))
            return
        if problems is None:
            health = note or "not up"
        elif problems:
            health = f"{len(problems)} differences"
        else:
            health = "up, healthy"
        self.root.set_label(_plain(f"lab {topology.prefix!r}: {health}"))
        for node in topology.nodes.values():
            branch = self.root.add(_plain(node.name, "bold"), expand=True)
            for iface in node.interfaces.values():
                addresses = " ".join(str(a) for a in iface.addresses)
                master = f" (port of {iface.master})" if iface.master else ""
                branch.add_leaf(_plain(f"{iface.name} {addresses}{master}".rstrip()))
            for route in node.routes:
                branch.add_leaf(_plain(f"route {route.describe()}"))
            for rule in node.rules:
                branch.add_leaf(_plain(f"{rule.where}: {rule.name}"))
        if problems:
            differences = self.root.add(_plain(f"{len(problems)} differences", "red"), expand=True)
            for problem in problems:
                # Cut to the pane's width here; Enter on it shows it whole.
                differences.add_leaf(_plain(problem, "red"), data=problem)
        self.root.expand()
