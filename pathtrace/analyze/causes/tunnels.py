"""Tunnels: a VXLAN device with no VTEP for the frame, with NOARP, whose underlay
has no route to the VTEP, or that is down where its datagrams arrive."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from pathtrace.analyze.causes.common import Placed
from pathtrace.analyze.causes.routes import link_up_fix, routing_drop
from pathtrace.analyze.network import Network
from pathtrace.model.cause import Finding, ref
from pathtrace.model.event import Event, Hook
from pathtrace.model.state import FdbEntry, Link, NamespaceState
from pathtrace.model.trace import Hop, Series

TUNNELS = ("vxlan", "geneve")
ZERO_MAC = "00:00:00:00:00:00"  # a tunnel's default FDB entry: every MAC it does not know


def tunnel_kind(net: Network, drop: Hop) -> str | None:
    link = net.link(drop.node, drop.interface)
    return link.kind if link else None


def _sent_to(state: NamespaceState, link: Link, drop: Hop, events: Sequence[Event]) -> str | None:
    """The inner destination MAC of the last frame ``link`` was given before the drop."""
    sent = [
        e
        for e in events
        if e.hook == Hook.DEV_XMIT
        and e.ifname == link.name
        and e.time_ns <= drop.time_ns
        and e.dmac
        and e.namespace == state.namespace
    ]
    return sent[-1].dmac if sent else None


def tunnel_no_target(net: Network, drop: Hop, events: Sequence[Event]) -> Placed | None:
    """A VXLAN device with no VTEP for the frame's destination MAC: no FDB entry for
    it, no default (all-zeros) entry, no remote or group of its own."""
    state = net.state(drop.node)
    link = net.link(drop.node, drop.interface)
    if state is None or link is None or link.kind != "vxlan" or link.detail("remote"):
        return None
    mac = _sent_to(state, link, drop, events)
    if mac is None:
        return None
    if mac == link.mac and link.noarp:
        return _noarp(net, state, link, drop)
    own = [entry for entry in state.fdb if entry.dev == link.name and entry.dst]
    if any(entry.is_for(mac) or entry.is_for(ZERO_MAC) for entry in own):
        return None  # it had a VTEP: something else stopped it
    told = [n for n in state.neighbours if f" lladdr {mac} " in f"{n} " and link.name in n]
    # The VTEP that owns the MAC, as the other node's own device says.
    vtep = next(
        (
            (other_state.node, other.detail("local"))
            for other_state in net.all
            for other in other_state.links
            if other.kind == "vxlan" and other.mac == mac and other.detail("local")
        ),
        None,
    )
    if told and vtep is None:
        wrong = _wrong_neighbour(net, state, link, told[0], mac, own)
        if wrong is not None:
            return None, wrong
    dst = vtep[1] if vtep else "VTEP-ADDRESS"
    cause = (
        f"{link.name} ({link.describe_kind()}) has no FDB entry for {mac}"
        + (f", the MAC its neighbour entry gives ({told[0]})" if told else "")
        + ", and no default entry or remote: the kernel has no VTEP to send the frame to "
        f"({drop.drop_reason})" + (f"; {mac} is {vtep[0]}'s VTEP at {vtep[1]}" if vtep else "")
    )
    evidence = [
        f"{drop.node}: fdb of {link.name}: {'; '.join(e.describe() for e in own) or 'empty'}"
    ]
    evidence += [f"{drop.node}: neighbour {n}" for n in told]
    fix = net.command(
        drop.node, f"bridge fdb append {mac} dev {link.name} dst {dst} self permanent"
    )
    objects = (ref("fdb", drop.node, mac), ref("link", drop.node, link.name))
    return None, Finding("tunnel.fdb", objects, cause, fix, evidence)


def tunnel_socket(net: Network, drop: Hop) -> Placed | None:
    """A tunnel's datagram freed for want of a socket (NO_SOCKET): the node's tunnel
    devices with that UDP port open their socket only while they are up."""
    state = net.state(drop.node)
    if state is None or drop.outer is None:
        return None
    port = str(drop.outer.dport)
    mine = [link for link in state.links if link.kind in TUNNELS and link.detail("port") == port]
    evidence = [
        f"{drop.node}: {link.name} ({link.describe_kind()}) {'up' if link.up else 'down'}"
        for link in state.links
        if link.kind in TUNNELS
    ]
    down = [link for link in mine if not link.up]
    if mine and len(down) == len(mine):
        link = down[0]
        return None, Finding(
            "link.down",
            (ref("link", drop.node, link.name),),
            f"the tunnel's datagram came to UDP port {port} of {drop.node}, which "
            f"{link.name} ({link.describe_kind()}) takes only while it is up: {link.name} is "
            f"down, so no socket has the port and the kernel frees it ({drop.drop_reason})",
            # The answer goes back through the tunnel too: its route went with the link.
            net.command(drop.node, f"ip link set {link.name} up")
            if _routed(net, drop.node, drop.packet.src)
            else link_up_fix(net, drop.node, [link], drop.packet.src),
            evidence,
        )
    if not mine:
        others = ", ".join(
            f"{k.name}: {k.detail('port') or '?'}" for k in state.links if k.kind in TUNNELS
        )
        return None, Finding(
            "socket.none",
            (ref("socket", drop.node, f"udp {port}"),),
            f"the tunnel's datagram came to UDP port {port} of {drop.node}, and no tunnel "
            f"device of {drop.node} takes that port"
            + (f" (its tunnel devices' ports: {others})" if others else " (it has none)"),
            None,
            evidence or [f"{drop.node}: no vxlan or geneve device"],
        )
    return None  # a device that is up has the port: something else


def _routed(net: Network, node: str, dst: str) -> bool:
    lookup = net.lookup(node, dst)
    return lookup is not None and not lookup.refused and lookup.route is not None


def _noarp(net: Network, state: NamespaceState, link: Link, drop: Hop) -> Placed:
    """A tunnel device with NOARP addresses every frame to its own MAC (the kernel's
    NOARP neighbour entries take the device's address), which no VTEP has; turning
    ARP off also flushed its neighbour entries."""
    node = state.node
    lookup = net.lookup(node, drop.packet.dst)
    gateway = lookup.route.gateway if lookup and lookup.route else None
    owner = next(
        (
            other
            for other_state in net.all
            if other_state is not state
            for other in other_state.links
            if other.kind == link.kind
            and gateway
            and any(a.split("/")[0] == gateway for a in other.addresses)
        ),
        None,
    )
    # ARP back on, and the gateway's entry the flush took, as a static one (a VXLAN
    # device's peers answer no ARP across the overlay): both in the tunnel's node.
    parts = [f"ip link set dev {link.name} arp on"]
    if gateway and owner is not None and owner.mac:
        parts.append(f"ip neigh replace {gateway} lladdr {owner.mac} dev {link.name} nud permanent")
    return None, Finding(
        "link.noarp",
        (ref("link", node, link.name),),
        f"{link.name} ({link.describe_kind()}) has NOARP (arp off): the kernel addresses its "
        f"frames to {link.name}'s own MAC {link.mac}, which no VTEP has"
        + (
            f"; {gateway}, the gateway, is {owner.name} with MAC {owner.mac}"
            if gateway and owner is not None
            else ""
        ),
        net.advice(" && ".join(f"{net.run_in(node)}{part}" for part in parts)),
        [f"{node}: {link.name} NOARP, MAC {link.mac}"],
    )


def tunnel_underlay(
    net: Network, series: Series, drop: Hop, events: Sequence[Event], reason: str
) -> Placed | None:
    """A tunnel device whose own route lookup, for the VTEP its FDB (or remote) sends
    the frame to, failed: the underlay's routes, read as for the node's own packet."""
    state = net.state(drop.node)
    link = net.link(drop.node, drop.interface)
    if state is None or link is None or link.kind not in TUNNELS:
        return None
    vtep, said = link.detail("remote"), f"{link.name}'s remote"
    if vtep is None:
        mac = _sent_to(state, link, drop, events)
        entry = next(
            (
                e
                for e in state.fdb
                if e.dev == link.name and e.dst and (e.is_for(mac or "") or e.is_for(ZERO_MAC))
            ),
            None,
        )
        if entry is None or entry.dst is None:
            return None
        vtep, said = entry.dst, f"FDB {entry.describe()}"
    outer = replace(
        drop.packet,
        protocol="udp",
        src=link.detail("local") or drop.packet.src,
        dst=vtep,
        sport=0,
        dport=int(link.detail("port") or 0),
    )
    found = routing_drop(
        net, series, replace(drop, packet=outer, outer=None), None, reason, drop.node
    )
    if found is None:
        return None
    place, finding = found
    return place, replace(
        finding,
        cause=f"{link.name} sends the frame to the VTEP {vtep} ({said}), and the underlay "
        f"fails: {finding.cause}",
        evidence=[f"{drop.node}: {said}", *finding.evidence],
    )


def _wrong_neighbour(
    net: Network, state: NamespaceState, link: Link, told: str, mac: str, own: list[FdbEntry]
) -> Finding | None:
    """The neighbour entry gives a MAC no tunnel device has, while the address it is
    for is held by a traced node's device of the same kind whose MAC this device's
    FDB does send to a VTEP: the entry is wrong, not the FDB."""
    address = told.split()[0]
    owner = next(
        (
            (other_state, other)
            for other_state in net.all
            for other in other_state.links
            if other.kind == link.kind and any(a.split("/")[0] == address for a in other.addresses)
        ),
        None,
    )
    if owner is None or not owner[1].mac:
        return None
    known = [entry.describe() for entry in own if entry.is_for(owner[1].mac)]
    if not known:
        return None
    node = state.node
    return Finding(
        "neigh.wrong_mac",
        (ref("neigh", node, address),),
        f"{node}'s neighbour entry for {address} on {link.name} says {mac}, a MAC no "
        f"tunnel device has, while {address} is {owner[0].node}/{owner[1].name} with MAC "
        f"{owner[1].mac}, which {link.name}'s FDB sends to a VTEP: the kernel has no VTEP "
        "for the frame",
        net.command(
            node,
            f"ip neigh replace {address} lladdr {owner[1].mac} dev {link.name} nud permanent",
        ),
        [
            f"{node}: neighbour {told}",
            f"{node}: fdb {known[0]}",
            f"{owner[0].node}: {owner[1].name} has {address}, MAC {owner[1].mac}",
        ],
    )
