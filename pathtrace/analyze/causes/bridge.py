"""Bridges: a port's switches (state, flooding, learning, isolation), its FDB, and the
frame's way through.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from pathtrace.analyze import links
from pathtrace.analyze.causes.common import Placed
from pathtrace.analyze.network import Network
from pathtrace.model.cause import Finding, ref
from pathtrace.model.state import Link, NamespaceState
from pathtrace.model.trace import Hop, Series


def crossed_bridge(net: Network, series: Series) -> tuple[str, str] | str:
    for hop in series.hops:
        if hop.action in ("bridge-forward", "bridge-up"):
            link = net.link(hop.node, hop.interface)
            if link is not None:
                return hop.node, link.master or hop.interface
    return "?"


def bridge_stop(net: Network, series: Series, drop: Hop) -> Placed | None:
    """A bridge that had nowhere to send the frame: the port switches say why."""
    state = net.state(drop.node)
    ingress = net.link(drop.node, drop.interface)
    # A frame that came in on a port, or that the bridge device itself sent.
    if state is None or ingress is None or (ingress.master is None and ingress.kind != "bridge"):
        return None
    bridge = ingress.name if ingress.kind == "bridge" else ingress.master
    if "STP_STATE" in (drop.drop_reason or ""):
        # The port that took the frame in does not forward: its state, or its
        # bridge being down (which disables every port), says why.
        blocked = links.bridge_blocks(state, ingress, ingress, None)
        if blocked is not None:
            evidence = (
                [f"{drop.node}: {ingress.name} {ingress.port.describe()}"] if (ingress.port) else []
            )
            return f"{drop.node}/{bridge}", blocked.finding(
                drop.node, net.command(drop.node, blocked.fix), evidence
            )
    owner = links.owner(net.all, drop.packet.dst)
    if owner is None:
        return None
    port = links.bridge_port_towards(net.all, owner[0], owner[1])
    if port is None or port[0] is not state:
        return None
    blocked = links.bridge_blocks(state, ingress, port[1], owner[1].mac)
    if blocked is None:
        return None
    evidence = [f"{drop.node}: {p.name} {p.port.describe()}" for p in (ingress, port[1]) if p.port]
    evidence += [f"{drop.node}: fdb {e.describe()}" for e in state.fdb if e.is_for(owner[1].mac)]
    return f"{drop.node}/{bridge}", blocked.finding(
        drop.node, net.command(drop.node, blocked.fix), evidence
    )


def flooded_past(net: Network, series: Series, drop: Hop) -> Placed | None:
    """A frame with the right MAC that a bridge on the way flooded to a host it was not
    for (OTHERHOST there): the bridge would not send it out of the port towards its
    owner (no FDB entry and that port does not take floods, or its state)."""
    crossed = crossed_bridge(net, series)
    if not isinstance(crossed, tuple):  # or a bridge that sent it itself (routed onto it)
        sent = next(
            (
                (h.node, h.interface)
                for h in series.hops
                if h.action in ("send", "route", "end")
                and h.interface
                and (link := net.link(h.node, h.interface)) is not None
                and link.kind == "bridge"
            ),
            None,
        )
        if sent is None or sent[1] is None:
            return None
        crossed = (sent[0], sent[1])
    state = next((s for s in net.all if s.node == crossed[0]), None)
    bridge = state.link(crossed[1]) if state else None
    if state is None or bridge is None:
        return None
    found = bridge_port_towards(net, state, bridge, drop.packet.dst)
    if found is None:
        return None
    how = (
        "sent the frame out of that port instead"
        if found.code == "bridge.fdb"
        else "flooded the frame to its other ports instead"
    )
    said = (
        f"{found.cause}; it {how}, and {drop.node}/{drop.interface} dropped it as not its "
        "own (OTHERHOST)"
    )
    return f"{state.node}/{bridge.name}", replace(found, cause=said)


def bridge_port_towards(
    net: Network, state: NamespaceState, bridge: Link, address: str
) -> Finding | None:
    """Why ``bridge`` (a device of ``state``) would not pass what it sends to the
    holder of ``address`` out of the port towards it (None for a broadcast's)."""
    owner = links.owner(net.all, address)
    if owner is None:
        return None
    port = links.bridge_port_towards(net.all, owner[0], owner[1])
    if port is None or port[0] is not state or port[1].master != bridge.name:
        return None
    o_state, o_link = owner
    if not port[1].up:
        return Finding(
            "link.down",
            (ref("link", state.node, port[1].name),),
            f"{bridge.name}'s port {port[1].name}, towards {address} ({o_state.node}/"
            f"{o_link.name}), is down",
            net.command(state.node, f"ip link set {port[1].name} up"),
            [f"{state.node}: {port[1].name} down"],
        )
    if not port[1].carrier and not o_link.up:
        return Finding(
            "link.down",
            (ref("link", o_state.node, o_link.name), ref("link", state.node, port[1].name)),
            f"{address} is on {o_state.node}/{o_link.name}, which is down (so {bridge.name}'s "
            f"port {port[1].name} has no carrier)",
            net.command(o_state.node, f"ip link set {o_link.name} up"),
            [f"{o_state.node}: {o_link.name} down", f"{state.node}: {port[1].name} no carrier"],
        )
    entry = links.neighbour(state, address, bridge.name, after=True)
    mac = None if links.unresolved(entry) or entry is None else entry.lladdr
    blocked = links.bridge_blocks(state, bridge, port[1], mac)
    if blocked is None:
        return None
    evidence = [f"{state.node}: {port[1].name} {port[1].port.describe()}"] if port[1].port else []
    return blocked.finding(state.node, net.command(state.node, blocked.fix), evidence)


def port_evidence(state: NamespaceState, ports: Iterable[Link], mac: str) -> list[str]:
    """The ports' switches and the FDB's word on ``mac`` (or that it has none)."""
    found = [f"{state.node}: {p.name} {p.port.describe()}" for p in ports if p.port]
    fdb = [entry for entry in state.fdb if entry.is_for(mac)]
    found += [f"{state.node}: fdb {entry.describe()}" for entry in fdb] or [
        f"{state.node}: no fdb entry for {mac}"
    ]
    return found


def port_words(net: Network, state: NamespaceState, link: Link) -> str:
    port = links.bridge_port_towards(net.all, state, link)
    if port is None:
        return ""
    return f" (so {port[0].node}'s bridge port {port[1].name} has no carrier)"
