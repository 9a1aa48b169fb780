"""Sizes: a packet larger than the receiving veth end or the tunnel's underlay carries."""

from __future__ import annotations

from pathtrace.analyze import links
from pathtrace.analyze.causes.common import Placed
from pathtrace.analyze.network import Network
from pathtrace.model.cause import Finding, ref
from pathtrace.model.trace import Hop


def veth_mtu(net: Network, drop: Hop) -> Placed | None:
    state = net.state(drop.node)
    link = net.link(drop.node, drop.interface)
    if state is None or link is None:
        return None
    big = links.veth_mtu(net.all, state, link, drop.packet.length)
    if big is None:
        return None
    receiver_node, receiver = big.receiver.split("/", 1)
    onward = ", ".join(big.onward) or "none"
    if big.receiver_is_odd:
        # Everything past the receiver takes the sender's size: the receiver is the
        # odd one out (lowering the sender instead would shrink every packet it sends).
        fix = net.command(receiver_node, f"ip link set {receiver} mtu {big.mtu}")
        why = (
            f"; the links {receiver_node} passes packets on to take {big.mtu} ({onward})"
            if big.onward
            else f"; {receiver_node} has no other link to pass it on to"
        )
    else:
        fix = net.command(drop.node, f"ip link set {big.sender} mtu {big.peer_mtu}")
        why = f"; past {big.receiver}, not every link takes {big.mtu} ({onward})"
    return None, Finding(
        "link.mtu",
        (ref("link", drop.node, big.sender), ref("link", receiver_node, receiver)),
        f"{drop.node} sent a {drop.packet.length}-byte packet on {big.sender} (MTU "
        f"{big.mtu}), but its peer {big.receiver} takes at most {big.peer_mtu} bytes: the "
        f"veth drops what the peer's MTU refuses{why}",
        fix,
        [
            f"{drop.node}/{big.sender} mtu {big.mtu}",
            f"{big.receiver} mtu {big.peer_mtu}",
            f"{receiver_node} passes on through: {onward}",
        ],
    )


def tunnel_mtu(net: Network, drop: Hop) -> Placed | None:
    """A tunnel's datagram too big for its underlay device, which may not fragment it
    (the tunnel sets DF on the outer header): the overlay's MTU is the underlay's
    minus the encapsulation."""
    outer, state = drop.outer, net.state(drop.node)
    underlay = net.link(drop.node, drop.interface)
    if outer is None or state is None or underlay is None:
        return None
    tunnel = next(
        (
            link
            for link in state.links
            if link.kind == outer.kind and link.detail("vni") in (None, str(outer.vni))
        ),
        None,
    )
    # Outer IP header, UDP, VXLAN (or Geneve's fixed header), inner Ethernet.
    overhead = (40 if ":" in outer.src else 20) + 8 + 8 + 14
    size = drop.packet.length + overhead
    if tunnel is None or size <= underlay.mtu:
        return None
    fits = underlay.mtu - overhead
    cause = (
        f"{tunnel.name} ({tunnel.describe_kind()}) wrapped a {drop.packet.length}-byte packet "
        f"into a {size}-byte datagram ({overhead} bytes of encapsulation), more than "
        f"{drop.interface}'s MTU {underlay.mtu}, and the datagram may not be fragmented "
        f"(dropped in {drop.interface}'s fragmentation); {tunnel.name}'s MTU {tunnel.mtu} "
        f"lets through packets that cannot fit: the overlay can carry {fits} bytes"
    )
    fix = net.command(drop.node, f"ip link set {tunnel.name} mtu {fits}") + (
        f", and the same MTU ({fits}) on the interfaces of the pods that use the overlay"
    )
    evidence = [
        f"{drop.node}: {drop.interface} mtu {underlay.mtu}",
        f"{drop.node}: {tunnel.name} mtu {tunnel.mtu}",
        f"the datagram: {outer.describe()}, {size} bytes",
    ]
    objects = (ref("link", drop.node, tunnel.name), ref("link", drop.node, underlay.name))
    return None, Finding("tunnel.mtu", objects, cause, fix, evidence)
