"""A drop the kernel reported: which kind of evidence explains it.

The kernel's drop reason and the function that freed the packet choose the module
of ``analyze.causes`` to ask (netfilter, bridge, neighbours, routes, programs,
sizes, tunnels, addresses); what none of them explains is said "unknown" with the
reason and the location.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from pathtrace.analyze.causes.addresses import duplicate, localnet
from pathtrace.analyze.causes.bridge import bridge_stop, flooded_past
from pathtrace.analyze.causes.common import Placed, arrival
from pathtrace.analyze.causes.mtu import tunnel_mtu, veth_mtu
from pathtrace.analyze.causes.neighbours import wrong_mac
from pathtrace.analyze.causes.netfilter import conntrack_messages, netfilter_drop, open_chain
from pathtrace.analyze.causes.programs import tc_drop, xdp_drop
from pathtrace.analyze.causes.routes import (
    ROUTING_REASONS,
    rerouted,
    routing_drop,
    rp_filter,
    sent_here_by_default,
)
from pathtrace.analyze.causes.stalled import stalled
from pathtrace.analyze.causes.tunnels import (
    TUNNELS,
    tunnel_kind,
    tunnel_no_target,
    tunnel_socket,
    tunnel_underlay,
)
from pathtrace.analyze.network import Network
from pathtrace.model.event import Event
from pathtrace.model.trace import Hop, Series, Verdict


def explain(
    net: Network, series: Series, drop: Hop, events: Sequence[Event], source: str
) -> Verdict:
    if not drop.node:  # freed before any device: the netfilter state's namespace says where
        drop = replace(drop, node=_node_of_skb(net, drop, events) or source)
    node, reason = drop.node, drop.drop_reason or "NOT_SPECIFIED"
    where = f"{node}/{drop.interface}" if drop.interface else node
    location = _location(drop, events)
    arrived_on = _arrived_on(net, series, drop)
    packet = drop.packet
    found: Placed | None = None
    if reason == "NETFILTER_DROP":
        chain = open_chain(net, node, events)
        finding, hook = netfilter_drop(net, series, drop, chain)
        if finding.code == "unknown":
            finding = rerouted(net, drop, hook) or finding
        if not drop.interface:
            where = f"{node} ({hook or 'netfilter'}, before any device)"
        told = _conntrack_messages(net, drop, events)
        if told:
            finding = replace(finding, cause=finding.cause + told)
        found = (None, finding)
    # What the reason or the freeing function names comes before what the device's
    # kind suggests: a tc filter or an XDP program on a tunnel device is still that.
    elif reason.startswith("TC_") or "tcf_" in location or "mirred" in location:
        found = tc_drop(net, drop, reason)
    elif "xdp" in location and (link := net.link(node, drop.interface)) and link.xdp:
        found = xdp_drop(node, link, location, net)
    elif reason == "NO_SOCKET" and drop.outer is not None:
        found = tunnel_socket(net, drop)
    elif reason == "OTHERHOST":
        found = wrong_mac(net, series, drop) or flooded_past(net, series, drop)
    elif (
        drop.outer is not None
        # Freed in fragmentation (or where the symbol is not known): then the size is
        # the fact that explains it.
        and ("fragment" in location or not location)
        and (found := tunnel_mtu(net, drop)) is not None
    ):
        pass  # the datagram was larger than its underlay device carries
    elif location.startswith(tuple(f"{k}_" for k in TUNNELS)) or tunnel_kind(net, drop) in TUNNELS:
        found = tunnel_no_target(net, drop, events) or (
            tunnel_underlay(net, series, drop, events, reason)
            if reason in ROUTING_REASONS
            else None
        )
    elif reason == "NO_TX_TARGET" or location.startswith("br_"):
        # The bridge's switches; else the frame's address: a MAC that is not the next
        # hop's goes nowhere (or back towards the port it came in by, which a bridge
        # never does).
        found = bridge_stop(net, series, drop) or wrong_mac(net, series, drop)
    elif reason == "IP_RPFILTER":
        found = rp_filter(net, drop)
    elif reason == "IP_LOCALNET":
        found = localnet(net, drop)
    elif reason == "IP_LOCAL_SOURCE" and (state := net.state(node)) is not None:
        dup = duplicate(
            net,
            state,
            packet.src,
            f"{node} drops a packet that arrives from an address of its own (IP_LOCAL_SOURCE)",
        )
        found = (None, dup) if dup is not None else None
    elif reason in ("NEIGH_FAILED", "QUEUE_PURGE"):
        # Freed when address resolution gave up, or its queue was purged (the entry
        # destroyed): why it was never answered.
        found = stalled(net, series, drop)
    elif "dev_forward_skb" in location or "veth" in location:
        found = veth_mtu(net, drop)
    if found is None and reason in ("IP_INADDRERRORS", "IP_INNOROUTES", "NO_ROUTE"):
        found = sent_here_by_default(net, series, drop)
    if found is None and reason in ROUTING_REASONS + ("IP_INHDR",):
        found = routing_drop(net, series, drop, arrived_on, reason, source)
    if found is None and (state := net.state(node)) is not None and state.owns(packet.dst):
        # The node took the packet as its own (to its loopback): so does another one.
        dup = duplicate(
            net, state, packet.dst, f"{node} takes a packet for {packet.dst} as its own"
        )
        found = (None, dup) if dup is not None else None
    if found is None:
        return Verdict(
            "dropped",
            f"dropped in {where}",
            where=where,
            cause=f"unknown: the kernel dropped it with reason {reason}"
            + (f" in {location}" if location else "")
            + "; the saved state does not show why",
            fix=None,
            code="unknown",
        )
    better, finding = found
    return Verdict.of("dropped", f"dropped in {better or where}", better or where, finding)


def _node_of_skb(net: Network, drop: Hop, events: Sequence[Event]) -> str | None:
    """The node of the last event, before the drop, that saw the same skb in a namespace."""
    skbs = {events[i].skb_id for i in drop.events if 0 <= i < len(events)}
    first = min(drop.events, default=len(events))
    for e in reversed(events[:first]):
        state = net.states.get(e.namespace)
        if e.skb_id in skbs and state is not None:
            return state.node
    return None


def _conntrack_messages(net: Network, drop: Hop, events: Sequence[Event]) -> str:
    """conntrack's messages on the dropped packet in the drop's node, as the cause's end."""
    state = net.state(drop.node)
    skbs = {events[i].skb_id for i in drop.events if 0 <= i < len(events)}
    told = conntrack_messages(events, skbs, state.namespace) if state else []
    if not told:
        return ""
    return f"; conntrack's message on it in {drop.node}: " + "; ".join(f'"{m}"' for m in told)


def _location(drop: Hop, events: Sequence[Event]) -> str:
    for i in drop.events:
        if 0 <= i < len(events) and events[i].location:
            return (events[i].location or "").split("+")[0]
    return ""


def _arrived_on(net: Network, series: Series, drop: Hop) -> str | None:
    """The interface the packet came into the drop's node on, as routing sees it
    (a bridge port's bridge)."""
    return arrival(net, series, drop.node) or drop.interface or None
