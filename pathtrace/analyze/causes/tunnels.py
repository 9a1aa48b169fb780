"""Tunnels: a VXLAN device with no VTEP for the frame."""

from __future__ import annotations

from collections.abc import Sequence

from pathtrace.analyze.causes.common import Placed
from pathtrace.analyze.network import Network
from pathtrace.model.cause import Finding, ref
from pathtrace.model.event import Event, Hook
from pathtrace.model.trace import Hop

TUNNELS = ("vxlan", "geneve")


def tunnel_kind(net: Network, drop: Hop) -> str | None:
    link = net.link(drop.node, drop.interface)
    return link.kind if link else None


def tunnel_no_target(net: Network, drop: Hop, events: Sequence[Event]) -> Placed | None:
    """A VXLAN device with no VTEP for the frame's destination MAC: no FDB entry for
    it, no default (all-zeros) entry, no remote or group of its own."""
    state = net.state(drop.node)
    link = net.link(drop.node, drop.interface)
    if state is None or link is None or link.kind != "vxlan" or link.detail("remote"):
        return None
    sent = [
        e
        for e in events
        if e.hook == Hook.DEV_XMIT
        and e.ifname == link.name
        and e.time_ns <= drop.time_ns
        and e.dmac
        and e.namespace == state.namespace
    ]
    if not sent:
        return None
    mac = sent[-1].dmac
    own = [line for line in state.fdb if f" dev {link.name} dst " in line]
    if any(line.startswith((f"{mac} ", "00:00:00:00:00:00 ")) for line in own):
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
    dst = vtep[1] if vtep else "VTEP-ADDRESS"
    cause = (
        f"{link.name} ({link.describe_kind()}) has no FDB entry for {mac}"
        + (f", the MAC its neighbour entry gives ({told[0]})" if told else "")
        + ", and no default entry or remote: the kernel has no VTEP to send the frame to "
        f"({drop.drop_reason})" + (f"; {mac} is {vtep[0]}'s VTEP at {vtep[1]}" if vtep else "")
    )
    evidence = [f"{drop.node}: fdb of {link.name}: {'; '.join(own) or 'empty'}"]
    evidence += [f"{drop.node}: neighbour {n}" for n in told]
    fix = net.command(
        drop.node, f"bridge fdb append {mac} dev {link.name} dst {dst} self permanent"
    )
    objects = (ref("fdb", drop.node, mac), ref("link", drop.node, link.name))
    return None, Finding("tunnel.fdb", objects, cause, fix, evidence)
