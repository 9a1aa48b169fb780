"""`lab show`: the described topology drawn for a terminal (fits 80 columns)."""

from __future__ import annotations

from typing import Any

from pathtrace.lab.topology import Interface, Node, Topology


def to_json(topology: Topology) -> dict[str, Any]:
    return {
        "prefix": topology.prefix,
        "source": topology.source,
        "nodes": [
            {
                "name": node.name,
                "namespace": topology.namespace(node.name),
                "interfaces": [
                    {
                        "name": i.name,
                        "kind": i.kind,
                        "addresses": [str(a) for a in i.addresses],
                        "peer": "/".join(i.peer) if i.peer else None,
                        "master": i.master,
                        "mtu": i.mtu,
                    }
                    for i in node.interfaces.values()
                ],
                "routes": [r.describe() for r in node.routes],
                "sysctls": node.sysctls,
                "rules": [{"name": r.name, "chain": r.where, "rule": r.text} for r in node.rules],
            }
            for node in topology.nodes.values()
        ],
    }


def _iface_line(iface: Interface) -> str:
    text = f"[bold]{iface.name}[/]"
    if iface.kind == "bridge":
        text += " [dim](bridge)[/]"
    if iface.addresses:
        text += "  " + " ".join(f"[cyan]{a}[/]" for a in iface.addresses)
    if iface.peer:
        text += f"  [dim]══veth══[/] {iface.peer[0]}/{iface.peer[1]}"
    if iface.mtu:
        text += f"  mtu {iface.mtu}"
    return text


def _node_tree(topology: Topology, node: Node) -> Any:
    from rich.tree import Tree

    facts = "  ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in node.sysctls.items())
    tree = Tree(
        f"[bold magenta]{node.name}[/]  [dim]netns {topology.namespace(node.name)}[/]"
        + (f"  {facts}" if facts else "")
    )
    ports = {i.master for i in node.interfaces.values() if i.master}
    for iface in node.interfaces.values():
        if iface.master:
            continue
        branch = tree.add(_iface_line(iface))
        if iface.name in ports:
            for port in node.interfaces.values():
                if port.master == iface.name:
                    branch.add("port " + _iface_line(port))
    for route in node.routes:
        tree.add(f"[yellow]route[/] {route.describe()}")
    for rule in node.rules:
        tree.add(f"[green]{rule.where}[/] rule [bold]{rule.name}[/]").add(rule.text)
    return tree


def print_topology(topology: Topology) -> None:
    from rich.console import Console

    console = Console(emoji=False)  # ":100:" in fd00:100::1 is no emoji
    console.print(
        f"lab [bold]{topology.prefix!r}[/] ({topology.source}); "
        "no lab namespace has a link to the root namespace"
    )
    for node in topology.nodes.values():
        console.print(_node_tree(topology, node))
