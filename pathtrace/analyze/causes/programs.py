"""Programs attached to devices: tc filters (redirect, drop) and XDP."""

from __future__ import annotations

from pathtrace.analyze.causes.common import Placed
from pathtrace.analyze.network import Network
from pathtrace.model.cause import Finding, ref
from pathtrace.model.state import Link, NamespaceState
from pathtrace.model.trace import Hop


def tc_drop(net: Network, drop: Hop, reason: str) -> Placed | None:
    state = net.state(drop.node)
    if state is None or not drop.interface:
        return None
    direction = "egress" if "EGRESS" in reason else "ingress"
    found = tc_filter(net, state, drop.interface, direction, every=False)
    return (None, found) if found is not None else None


def tc_filter(
    net: Network, state: NamespaceState, ifname: str, direction: str, every: bool
) -> Finding | None:
    """The tc filter on ``ifname`` that drops or redirects away what passes
    ``direction`` (the other direction's, when that one has none). ``every``: only a
    filter that takes every frame (protocol all, a match of everything) with a drop
    or a redirect, as one that stops untraced frames (ARP) must."""
    filters = [f for f in state.tc if f.dev == ifname]
    mine = [f for f in filters if f.direction == direction]
    if every:
        mine = [
            f for f in mine if f.protocol == "all" and f.every and (f.redirects_to() or f.drops())
        ]
        if not mine:
            return None
    mine = mine or filters
    if not mine:
        return None
    first = mine[0]
    on = f"{state.node}/{ifname}" if every else ifname
    it = "every frame (protocol all, matching all, ARP too)" if every else "it"
    cause = f"a tc {first.direction} filter on {on} drops {it}"
    target_name = first.redirects_to()
    if target_name:
        target = state.link(target_name)
        status = "down" if target is not None and not target.up else "not able to send"
        cause = (
            f"a tc {first.direction} filter on {on} redirects {it} (mirred: redirect dev "
            f"{target_name}) to {target_name}, which is {status}: the redirect drops it"
        )
    return Finding(
        "tc.redirect" if target_name else "tc.drop",
        (ref("tc", state.node, f"{ifname} {first.direction}"),),
        cause,
        net.command(state.node, f"tc filter del dev {ifname} {first.direction}"),
        [f"{state.node}: tc {f.describe()}" for f in mine],
    )


def xdp_drop(node: str, link: Link, location: str, net: Network) -> Placed:
    """An XDP program attached where the kernel freed the packet."""
    mode = link.xdp.split()[0]
    off = {"generic": "xdpgeneric", "native": "xdpdrv"}.get(mode, "xdp")
    return (
        None,
        Finding(
            "xdp.drop",
            (ref("xdp", node, link.name),),
            f"the XDP program on {node}/{link.name} ({link.xdp}) dropped it: the kernel "
            f"freed it in {location}, where a program's XDP_DROP (or XDP_ABORTED) ends",
            net.command(node, f"ip link set dev {link.name} {off} off")
            + ", or make the program pass it",
            [f"{node}: {link.name} xdp {link.xdp}"],
        ),
    )
