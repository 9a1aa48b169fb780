"""A bridge that floods a frame makes copies of it: one path, and its copies.

Flooding (an unknown destination MAC, a broadcast) clones the frame for every
port but the last (which gets the original). The clones are new sk_buffs whose
first event is a transmit on a bridge port. Left in one time-ordered series,
they interleave with the frame that goes on: a copy's drop (OTHERHOST in a
namespace the frame was not for) reads as the packet's end, and veth crossings
pair with the wrong transmit. Here the series is the original up to the bridge
plus the one branch that arrives (or the original's own continuation); every
other branch is a copy, shown apart and never judged.

And what a bridge's FDB knew at a moment: its saved table, plus what it learned
during the run from the source MACs of frames its ports received.
"""

from __future__ import annotations

from collections.abc import Sequence

from pathtrace.analyze.links import fdb_port
from pathtrace.model.event import Event, Hook
from pathtrace.model.state import NamespaceState

Positioned = tuple[int, Event]


def split_copies(
    events: Sequence[Positioned], states: dict[str, NamespaceState]
) -> tuple[list[Positioned], list[list[Positioned]]]:
    """(the path, the flooded copies) of one series' events (time order)."""
    by_skb: dict[int, list[Positioned]] = {}
    for item in events:
        by_skb.setdefault(item[1].skb_id, []).append(item)
    if not events or len(by_skb) < 2:
        return list(events), []
    root = events[0][1].skb_id
    clones = [
        skb
        for skb, found in by_skb.items()
        if skb and skb != root and _starts_on_a_port(found[0][1], states)
    ]
    if not clones:
        return list(events), []
    fork = min(by_skb[skb][0][1].time_ns for skb in clones)
    branches = {root: [x for x in by_skb[root] if x[1].time_ns >= fork]}
    branches.update({skb: by_skb[skb] for skb in clones})
    arriving = [skb for skb, found in branches.items() if _arrives(found, states)]
    chosen = arriving[0] if arriving else root
    path = [x for x in by_skb[root] if x[1].time_ns < fork] + branches[chosen]
    path += [x for skb, found in by_skb.items() if skb not in branches for x in found]
    path.sort(key=lambda x: x[0])
    copies = [found for skb, found in branches.items() if skb != chosen and found]
    return path, copies


def _starts_on_a_port(e: Event, states: dict[str, NamespaceState]) -> bool:
    state = states.get(e.namespace)
    link = state.link(e.ifname) if state else None
    return e.hook in (Hook.DEV_XMIT, Hook.BR_FORWARD) and link is not None and bool(link.master)


def _arrives(found: list[Positioned], states: dict[str, NamespaceState]) -> bool:
    """Whether a branch reaches the namespace that owns its destination."""
    for _, e in found:
        state = states.get(e.namespace)
        if state is not None and e.hook in (Hook.DEV_RECV, Hook.CONSUME) and state.owns(e.dst):
            return True
    return False


class Fdb:
    """Which port a bridge sends a MAC to, at a given moment of the run."""

    def __init__(self, states: dict[str, NamespaceState], events: Sequence[Event]) -> None:
        self.states = states
        # (namespace, MAC) -> (port, when): learned from frames a port received.
        self.learned: dict[tuple[str, str], tuple[str, int]] = {}
        for e in events:
            if e.hook != Hook.DEV_RECV or not e.smac:
                continue
            state = states.get(e.namespace)
            link = state.link(e.ifname) if state else None
            if link is not None and link.master and (e.namespace, e.smac) not in self.learned:
                self.learned[(e.namespace, e.smac)] = (e.ifname, e.time_ns)

    def port(self, namespace: str, mac: str, at_ns: int) -> str | None:
        state = self.states.get(namespace)
        saved = fdb_port(state, mac) if state else None
        if saved is not None:
            return saved
        learned = self.learned.get((namespace, mac))
        return learned[0] if learned and learned[1] < at_ns else None


def is_group(mac: str) -> bool:
    """Broadcast or multicast: the bridge floods it whatever its FDB holds."""
    return bool(mac) and int(mac.split(":")[0], 16) & 1 == 1
