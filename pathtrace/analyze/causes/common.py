"""What every kind of evidence shares: the finding with a better place, the one rule that
did it, where a packet came into a node.
"""

from __future__ import annotations

from collections.abc import Iterable

from pathtrace.analyze.network import Network
from pathtrace.model.cause import Finding
from pathtrace.model.ruleset import LiveRule
from pathtrace.model.trace import Series

Placed = tuple[str | None, Finding]  # (a better place than the drop's, the finding)


def only(rules: Iterable[LiveRule]) -> tuple[LiveRule | None, list[LiveRule]]:
    """The one rule that can have done it; else None and every candidate (no guessing)."""
    found = list(rules)
    return (found[0], []) if len(found) == 1 else (None, found)


def arrival(net: Network, series: Series, node: str) -> str | None:
    for hop in series.hops:
        if hop.node == node and hop.action in ("receive", "bridge-up", "cross"):
            link = net.link(node, hop.interface)
            return link.master if link is not None and link.master else hop.interface
    return None
