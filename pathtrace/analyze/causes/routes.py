"""Routes and policy rules: the lookup over the saved tables (marks, iif), what refused it,
and the route that would carry it; reverse-path filtering.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from ipaddress import ip_address, ip_interface

from pathtrace.analyze import links, nfmatch, routing
from pathtrace.analyze.causes.addresses import prefix_finding
from pathtrace.analyze.causes.common import Placed, arrival, only
from pathtrace.analyze.causes.neighbours import bare_station
from pathtrace.analyze.causes.netfilter import nf_ref
from pathtrace.analyze.network import Network
from pathtrace.model.cause import Finding, ref
from pathtrace.model.state import Link, NamespaceState
from pathtrace.model.trace import Hop, Series

ROUTING_REASONS = (
    "NOT_SPECIFIED",
    "IP_INADDRERRORS",
    "IP_INNOROUTES",
    "IP_OUTNOROUTES",
    "NO_ROUTE",
    "IP_BLACKHOLE",
    "UNREACHABLE",
)


def sent_here_by_default(net: Network, series: Series, drop: Hop) -> Placed | None:
    """A packet a router translated (DNAT) to an address it then had no route for but
    its default, so it went to a node that could only drop it: the fault is the
    router's missing route, not the last node's."""
    dst = drop.packet.dst
    before = [h for h in series.hops if h.node != drop.node and h.time_ns <= drop.time_ns]
    if not before or before[-1].action not in ("route", "send"):
        return None
    router = before[-1].node
    # A translation of the destination: a DNAT, or the un-SNAT of an answer.
    dnat = [
        h
        for h in series.hops
        if h.node == router and h.translation and h.translation.kind in ("DNAT", "un-SNAT")
    ]
    state = net.state(router)
    if not dnat or state is None:
        return None
    lookup = routing.route_get(state, dst)
    if lookup.route is None or lookup.route.dst != "default":
        return None
    down = [
        link
        for link in state.links
        if not link.up and any(ip_address(dst) in ip_interface(a).network for a in link.addresses)
    ]
    rule = dnat[-1].translation.rule if dnat[-1].translation else None
    kind = dnat[-1].translation.kind if dnat[-1].translation else "DNAT"
    cause = (
        f"{router} translated it to {dst} ({kind}{f' by {rule}' if rule else ''}) and has no route "
        f"to {dst} but its default ({lookup.route.describe()}), so it sent it to {drop.node}, "
        f"which has none either ({drop.drop_reason})"
    )
    objects: tuple[str, ...]
    fix: str | None
    if down:
        cause += f": {router}'s {down[0].name}, on {dst}'s network, is down"
        fix = net.command(router, f"ip link set {down[0].name} up")
        code, objects = links.down_code(down[0]), (ref("link", router, down[0].name),)
    elif (narrow := _narrow_towards(net, state, dst)) is not None:
        cause, fix = f"{cause}: {narrow.cause}", narrow.fix
        code, objects = narrow.code, narrow.objects
    elif (bare := _bare_link_towards(net, state, dst)) is not None:
        link, owner, address = bare
        cause += (
            f": {router}'s {link.name} reaches {dst} ({owner}) on its link but has no "
            f"address on {dst}'s network"
        )
        fix = (
            net.command(router, f"ip addr add {address} dev {link.name}")
            if address
            else net.advice(f"give {router}'s {link.name} an address on {dst}'s network")
        )
        code, objects = (
            "link.no_address",
            (ref("link", router, link.name), ref("route", router, dst)),
        )
        if address:
            cause += (
                f"; {owner.split('/')[0]} routes via {address.split('/')[0]}, which no traced "
                "namespace holds (the fix assumes it was this link's)"
            )
    else:
        cause += f": no link of {router} has an address on {dst}'s network"
        fix = net.advice(f"give {router} an address on {dst}'s network, or a route to {dst}")
        code, objects = "route.none", (ref("route", router, dst),)
    evidence = [f"{router}: route to {dst}: {lookup.describe()}"]
    evidence += [f"{router}: {link.name} down" for link in down]
    return f"{router}", Finding(code, objects, cause, fix, evidence)


def _narrow_towards(net: Network, state: NamespaceState, dst: str) -> Finding | None:
    """A link of ``state`` whose segment holds ``dst``'s owner and whose address there
    has a prefix too narrow to reach it."""
    owner = links.owner(net.all, dst)
    if owner is None:
        return None
    for link in state.links:
        if link.up and any(
            s is owner[0] and other is owner[1] for s, other in links.segment(net.all, state, link)
        ):
            return prefix_finding(net, state, link, dst, f"{link.name} reaches {dst}")
    return None


def _bare_link_towards(
    net: Network, state: NamespaceState, dst: str
) -> tuple[Link, str, str | None] | None:
    """A link of ``state``, up and with no address of ``dst``'s family, whose layer-2
    segment holds ``dst``'s owner: (the link, the owner as node/link, the address the
    owner's routes go via that nobody holds, with the owner's prefix, if one does)."""
    owner = links.owner(net.all, dst)
    if owner is None:
        return None
    o_state, o_link = owner
    version = ip_address(dst).version
    for link in state.links:
        if not link.up or any(ip_interface(a).version == version for a in link.addresses):
            continue
        if not any(
            s is o_state and other is o_link for s, other in links.segment(net.all, state, link)
        ):
            continue
        held = next(a for a in o_link.addresses if a.split("/")[0] == dst)
        network = ip_interface(held).network
        gateways = {
            r.gateway
            for r in o_state.routes
            if r.gateway
            and ip_address(r.gateway) in network
            and links.owner(net.all, r.gateway) is None
        }
        address = f"{gateways.pop()}/{network.prefixlen}" if len(gateways) == 1 else None
        return link, f"{o_state.node}/{o_link.name}", address
    return None


def routing_drop(
    net: Network,
    series: Series,
    drop: Hop,
    iif: str | None,
    reason: str,
    source: str,
) -> Placed | None:
    node, packet = drop.node, drop.packet
    state = net.state(node)
    if state is None:
        return None
    # As the packet was where it stopped: a DNAT on the way makes a packet to this
    # node's own address one it must forward. A packet from an address of its own
    # that never arrived here is one it sent (an answer): forwarding is not asked.
    sent_here = node == source or (state.owns(packet.src) and arrival(net, series, node) is None)
    forwarding = not state.owns(packet.dst) and not sent_here
    if sent_here:
        iif = None  # its route lookup is the output one: no input interface
    if forwarding and links.owner(net.all, packet.dst) is None:
        # Forwarding off is the cause only where forwarding would take it on.
        nowhere = _held_by_none(net, state, packet.dst, packet.src if iif else None, iif, drop)
        if nowhere is not None:
            return None, nowhere
    if forwarding and ":" in packet.dst and state.sysctl("net.ipv6.conf.all.forwarding") == "0":
        key = "net.ipv6.conf.all.forwarding"
        return None, Finding(
            "sysctl.forwarding",
            (ref("sysctl", node, key),),
            f"{node} does not forward IPv6: {key} is 0 ({reason})",
            net.command(node, f"sysctl -w {key}=1"),
            [f"{node}: {key}=0"],
        )
    if forwarding and ":" not in packet.dst and state.sysctl("net.ipv4.ip_forward") == "0":
        return None, Finding(
            "sysctl.forwarding",
            (ref("sysctl", node, "net.ipv4.ip_forward"),),
            f"{node} does not forward: net.ipv4.ip_forward is 0 ({reason})",
            net.command(node, "sysctl -w net.ipv4.ip_forward=1"),
            [f"{node}: net.ipv4.ip_forward=0"],
        )
    if forwarding and iif and state.sysctl("forwarding", iif) == "0":
        key = f"net.ipv4.conf.{iif}.forwarding"
        return None, Finding(
            "sysctl.forwarding",
            (ref("sysctl", node, key),),
            f"{node} does not forward what arrives on {iif}: {key}=0 ({reason})",
            net.command(node, f"sysctl -w {key}=1"),
            [f"{node}: {key}=0"],
        )
    lookup = routing.route_get(state, packet.dst, packet.src if iif else None, iif, drop.mark)
    if lookup.refused:
        said = lookup.describe()
        if lookup.kind == "none" and not drop.mark:
            gone = no_route(net, state, packet.dst)
            # The routes went with a link or an address, or an overlay's device has none.
            if gone.code != "route.none" or len(gone.objects) > 1:
                return None, gone
            cause = f"{node} has no route to {packet.dst} ({reason})"
            return None, Finding(
                "route.none",
                (ref("route", node, packet.dst),),
                cause,
                _route_add(net, node, packet.dst),
                [f"{node}: {said}"],
            )
        way = f" from {packet.src}" + (f" (in on {iif})" if iif else "")
        found = refused_lookup(net, node, lookup, packet.dst, way)
        return None, marked(
            net, state, found, packet.dst, packet.src if iif else None, iif, drop.mark
        )
    return None


def _held_by_none(
    net: Network, state: NamespaceState, dst: str, src: str | None, iif: str | None, drop: Hop
) -> Finding | None:
    """No traced namespace holds ``dst``, and the node where it stopped has no route
    for it: turning forwarding on there would not send it anywhere."""
    lookup = routing.route_get(state, dst, src, iif, drop.mark)
    if not lookup.refused or lookup.kind != "none":
        return None
    node = state.node
    key = "net.ipv6.conf.all.forwarding" if ":" in dst else "net.ipv4.ip_forward"
    off = [f"{node}: {key}={state.sysctl(key)}"] if state.sysctl(key) == "0" else []
    return Finding(
        "route.none",
        (ref("route", node, dst),),
        f"no traced namespace holds {dst}, and {node}, where it arrived, has no route for it"
        + (f" (nor does it forward: {key} is 0)" if off else ""),
        # Not the lab's restore: no fix makes an address exist.
        f"check the destination: no traced namespace holds {dst} (a route for it in "
        f"{node}, and forwarding there, would only send it further)",
        [f"{node}: {lookup.describe()}", *off],
    )


def refused_lookup(
    net: Network, node: str, lookup: routing.Lookup, dst: str, way: str = ""
) -> Finding:
    """A lookup for ``dst`` (``way``: from where it came) that ends in a blackhole,
    unreachable or prohibit route or rule."""
    said = lookup.describe()
    return Finding(
        f"route.{lookup.kind}",
        routing.refs(node, lookup, dst),
        f"{node}'s route lookup for {dst}{way} ends in {lookup.kind}: {said}",
        refused_fix(net, node, lookup, dst),
        [f"{node}: {said}"],
    )


def marked(
    net: Network,
    state: NamespaceState,
    found: Finding,
    dst: str,
    src: str | None,
    iif: str | None,
    mark: int,
) -> Finding:
    """``found`` (a lookup refused), told that the packet carried ``mark`` (read from
    the skb), which a policy rule routes by, and which rule set it: where the same
    lookup without the mark would not refuse, the mark is why."""
    if not mark:
        return found
    plain = routing.route_get(state, dst, src, iif, 0)
    if plain.refused:
        return found  # refused with or without it: the mark is not why
    setters = [r for r in state.rules().rules if nfmatch.statement(r).mark == mark]
    setter, _ = only(iter(setters))
    said = f"; the packet carries mark {mark:#x}"
    said += (
        f", which {setter.cited} sets (the one rule read here that sets that value)"
        if setter is not None
        else " (no rule read here sets that value)"
    )
    said += f"; without it the lookup would find {plain.describe()}"
    objects = found.objects + ((nf_ref(state.node, setter),) if setter is not None else ())
    evidence = [*found.evidence, f"{state.node}: skb mark {mark:#x}"]
    if setter is not None:
        evidence.append(f"{state.node}: {setter.cited}")
    return replace(found, cause=found.cause + said, objects=objects, evidence=evidence)


def refused_fix(
    net: Network, node: str, lookup: routing.Lookup, dst: str | None = None
) -> str | None:
    """What mends a lookup that ends in a refusing route or rule: a refusing default
    route replaced by one via the traced namespace that forwards on the node's own
    network (deleting it would leave no route at all); a refusing route to ``dst``
    whose deletion would leave the lookup refused (tried on the saved state)
    replaced by one via the namespace that takes packets on to ``dst``; else the
    refusal deleted."""
    route = lookup.route
    six = "-6 " if route is not None and route.family == 6 else ""
    if route is not None and route.dst == "default" and route.table == 254:
        gateway = net.gateway_for(node, route.family)
        if gateway is not None:
            return net.command(node, f"ip {six}route replace default via {gateway}")
    state = net.state(node)
    if route is not None and route.table == 254 and dst is not None and state is not None:
        without = replace(state, routes=[r for r in state.routes if r is not route])
        hop = net.next_hop(node, dst)
        if routing.route_get(without, dst).refused and hop is not None:
            return net.command(node, f"ip {six}route replace {route.dst} via {hop[0]}")
    delete = routing.delete_command(lookup)
    return net.command(node, delete) if delete else None


def no_route(net: Network, state: NamespaceState, dst: str) -> Finding:
    """``state`` has no route to ``dst``: where an up link has no address of the family,
    the routes through it went with the address (its connected network, the routes via
    a gateway on it)."""
    node, version = state.node, ip_address(dst).version
    mine = [r for r in state.routes if r.family == version and r.table == 254]
    has_default = state.has_default(version)
    routes = ", ".join(r.describe() for r in mine) or "none"

    def has_family(link: Link) -> bool:
        return any(ip_interface(a).version == version for a in link.addresses)

    # Links that could carry routes (not loopback, not a port of a bridge or a bond).
    own = [link for link in state.links if link.kind != "loopback" and link.master is None]
    # IPv6 takes a link's addresses away when it goes down: any down link may be it.
    down = [link for link in own if not link.up and (has_family(link) or version == 6)]
    bare = [link for link in own if link.up and not has_family(link)]
    evidence = [f"{node}'s routes: {routes}"]
    if down and not has_default:
        # A link that is down takes its connected network and the routes through it.
        names = ", ".join(link.name for link in down)
        return Finding(
            links.down_code(down[0]),
            (*(ref("link", node, link.name) for link in down), ref("route", node, dst)),
            f"{node} has no route to {dst}: {names} is down, so the routes through it are gone",
            link_up_fix(net, node, down, dst),
            evidence + [f"{node}: {link.name} down ({', '.join(link.addresses)})" for link in down],
        )
    if bare and not has_default:
        names = ", ".join(link.name for link in bare)
        back, assumed = _address_back(net, state, bare, version, dst)
        return Finding(
            "link.no_address",
            (*(ref("link", node, link.name) for link in bare), ref("route", node, dst)),
            f"{node} has no route to {dst}: {names} has no IPv{version} address, so no route "
            "goes through it (its connected network and the routes via a gateway on it "
            "went with the address)" + (f"; {assumed}" if assumed else ""),
            back
            or net.advice(
                f"give {names} its IPv{version} address back, then the routes through it"
            ),
            evidence + [f"{node}: {link.name} has no IPv{version} address" for link in bare],
        )
    for link in own:
        if link.up and (
            narrow := prefix_finding(net, state, link, dst, f"{node} has no route to {dst}")
        ):
            return replace(narrow, evidence=[*evidence, *narrow.evidence])
    tunnel = net.tunnel_route(node, dst)
    if tunnel is not None:
        return Finding(
            "route.none",
            (ref("route", node, dst), ref("link", node, tunnel.device)),
            f"{node} has no route to {dst} through {tunnel.device}: {tunnel.why}",
            net.command(node, f"ip route add {tunnel.route}"),
            evidence + tunnel.evidence,
        )
    gateway = net.gateway_for(node, version) or "GATEWAY"
    return Finding(
        "route.none",
        (ref("route", node, dst),),
        f"{node} has no route to {dst}" + ("" if has_default else " (it has no default route)"),
        net.command(node, f"ip {'-6 ' if version == 6 else ''}route add default via {gateway}"),
        evidence,
    )


def _address_back(
    net: Network,
    state: NamespaceState,
    bare: list[Link],
    version: int,
    dst: str,
) -> tuple[str | None, str]:
    """The fix giving a link the address it lost, as the stations on its segment
    still know it: the one address their neighbour tables give this link's MAC,
    with the prefix of the network the station holds it in (else the one gateway
    they route through on it that nobody holds: an assumption, said in the
    second part); then a default route via the station there that forwards,
    where ``dst`` is not on that network. None where they say nothing, or
    several things."""
    if len(bare) != 1 or not bare[0].mac:
        return None, ""
    link = bare[0]
    assumed = ""
    found = set()
    for other, theirs in links.segment(net.all, state, link):
        for entry in other.neighbour_entries() + other.neighbour_entries(after=True):
            if (
                entry.dev == theirs.name
                and (entry.lladdr or "").lower() == link.mac.lower()
                and ip_address(entry.dst).version == version
                and not ip_address(entry.dst).is_link_local
            ):
                held = [
                    ip_interface(a).network
                    for a in theirs.addresses
                    if ip_address(entry.dst) in ip_interface(a).network
                ]
                if len(held) == 1:
                    found.add(f"{entry.dst}/{held[0].prefixlen}")
    if not found:
        routed = _gateway_nobody_holds(net, state, link, version)
        if len(routed) == 1:
            ((address, via),) = routed.items()
            found = {address}
            assumed = (
                f"the fix below assumes {link.name} held {address.split('/')[0]}: {via}, "
                "and no traced namespace holds that address"
            )
    if len(found) != 1:
        return None, ""
    address = found.pop()
    parts = [f"ip addr add {address} dev {link.name}"]
    if not state.has_default(version) and ip_address(dst) not in ip_interface(address).network:
        gateway = net.gateway_with(state, link, (*link.addresses, address), version)
        if gateway is None:
            return None, ""
        six = "-6 " if version == 6 else ""
        parts.append(f"ip {six}route add default via {gateway}")
    return net.advice(" && ".join(f"{net.run_in(state.node)}{part}" for part in parts)), assumed


def _gateway_nobody_holds(
    net: Network, state: NamespaceState, link: Link, version: int
) -> dict[str, str]:
    """Where no neighbour table knows the link's MAC: the gateways the other
    stations on its segment route through on it that no traced namespace holds,
    where this link is the one station there with no address in that network
    (as the other side's diagnosis assumes, neighbours.bare_station): each with
    the route that goes through it."""
    found: dict[str, str] = {}
    for other, theirs in links.segment(net.all, state, link):
        for route in other.routes:
            gateway = route.gateway
            if (
                route.dev != theirs.name
                or not gateway
                or ip_address(gateway).version != version
                or links.owner(net.all, gateway) is not None
            ):
                continue
            bare = bare_station(net, other, theirs, gateway)
            if bare is not None and (bare[0].node, bare[1].name) == (state.node, link.name):
                found.setdefault(
                    f"{gateway}/{bare[2].prefixlen}", f"{other.node}'s route {route.describe()}"
                )
    return found


def _route_add(net: Network, node: str, dst: str) -> str:
    """`ip route add` for a route ``node`` lacks to ``dst``, via the one traced
    namespace that can take it on (GATEWAY where none, or several, can)."""
    tunnel = net.tunnel_route(node, dst)
    route = tunnel.route if tunnel is not None else net.route_to(node, dst)
    six = "-6 " if ":" in dst else ""
    return net.command(node, f"ip {six}route add {route or f'{dst} via GATEWAY'}")


def rp_filter(net: Network, drop: Hop) -> Placed:
    """Reverse-path filtering: the route back to the source, read from the saved state."""
    node, packet = drop.node, drop.packet
    state = net.state(node)
    values = ", ".join(
        f"{k.removeprefix('net.ipv4.conf.')}={v}"
        for k, v in (state.sysctls.items() if state else [])
        if k.endswith("rp_filter") and v != "0"
    )
    lookup = net.lookup(node, packet.src)
    back = lookup.describe() if lookup else "?"
    keys = [
        k
        for k, v in (state.sysctls.items() if state else [])
        if k.endswith("rp_filter") and v != "0"
    ]
    objects = (*(ref("sysctl", node, k) for k in keys), ref("route", node, packet.src))
    evidence = [f"{node}: {values}", f"{node}: route to {packet.src}: {back}"]
    iface = drop.interface
    if lookup is None or lookup.refused or lookup.route is None:
        # No way back at all: loose mode (2) drops it too; only a route helps.
        hop = net.next_hop(node, packet.src)
        route = f"{hop[1]} via {hop[0]}" if hop else packet.src
        return (
            None,
            Finding(
                "sysctl.rp_filter",
                objects,
                f"reverse-path filtering in {node} ({values}): {node} has no route back to "
                f"the source {packet.src} ({back}), so strict and loose modes alike "
                "drop it",
                net.command(node, f"ip route add {route} dev {iface}")
                + f": a route back to {packet.src} through {iface}",
                evidence,
            ),
        )
    elif lookup.route.dev == iface:
        # The lookup read says the way back is the way in: the kernel's own (with
        # the packet's mark and interface) found otherwise; which, is not known.
        return (
            None,
            Finding(
                "unknown",
                objects,
                f"{node} dropped it as reverse-path filtering ({values}), yet the route "
                f"read back to {packet.src} goes through {iface}, the way it came: the "
                "kernel's lookup (with the packet's mark and incoming interface) differed",
                None,
                evidence,
            ),
        )
    else:
        return (
            None,
            Finding(
                "sysctl.rp_filter",
                objects,
                f"reverse-path filtering in {node} ({values}): the source {packet.src} "
                f"is routed back through {lookup.route.dev or '?'}, not {iface}",
                # The effective value is the larger of `all` and the interface's: 2
                # on the interface alone loosens it there and nowhere else.
                net.command(node, f"sysctl -w net.ipv4.conf.{iface or 'all'}.rp_filter=2")
                + f": loose rp_filter on {iface or 'every interface'}, or route "
                f"{packet.src} back through {iface}",
                evidence,
            ),
        )


def link_up_fix(net: Network, node: str, down: Sequence[Link], dst: str) -> str:
    """Bringing a link up gives back its connected networks, not the routes via a
    gateway on it (the kernel deleted those with the link): a command when a
    connected network covers ``dst``, else advice that says what else is needed."""
    target = ip_address(dst)
    for link in down:
        if any(
            ip_interface(a).version == target.version and target in ip_interface(a).network
            for a in link.addresses
        ):
            return net.command(node, f"ip link set {link.name} up")
    state = net.state(node)
    default = state is not None and state.has_default(target.version)
    gateway = net.gateway_for(node, target.version) if not default else None
    if len(down) == 1 and gateway is not None:
        # The default route went with the link: back via the station there that forwards.
        link = down[0]
        held = [ip_interface(a).network for a in link.addresses]
        if any(ip_address(gateway) in network for network in held):
            six = "-6 " if target.version == 6 else ""
            parts = [f"ip link set {link.name} up", f"ip {six}route add default via {gateway}"]
            return net.advice(" && ".join(f"{net.run_in(node)}{part}" for part in parts))
    names = " and ".join(link.name for link in down)
    return net.advice(
        f"bring {names} up (`{net.run_in(node)}ip link set {down[0].name} up`) and add back "
        f"the route to {dst} through it: the kernel deleted it with the link, and which "
        "gateway it had, the saved state does not show"
    )


def rerouted(net: Network, drop: Hop, hook: str | None) -> Finding | None:
    """Netfilter dropped it and no rule drops: a packet whose mark changed at a
    route-type chain is routed again (ip_route_me_harder), and freed as netfilter's
    drop when that lookup refuses. The mark read from the skb, or one a rule sets."""
    state = net.state(drop.node)
    if state is None:
        return None
    packet = drop.wire
    marks = [drop.mark] if drop.mark else []
    marks += [m for r in state.rules().rules if (m := nfmatch.statement(r).mark) is not None]
    for mark in dict.fromkeys(marks):
        lookup = routing.route_get(state, packet.dst, None, None, mark)
        if not lookup.refused:
            continue
        found = marked(
            net,
            state,
            refused_lookup(net, drop.node, lookup, packet.dst),
            packet.dst,
            None,
            None,
            mark,
        )
        return replace(
            found,
            cause=f"netfilter routed it again at {hook or 'a hook'} once a rule changed its "
            f"mark (a route-type chain), and that lookup refused it: {found.cause}",
        )
    return None
