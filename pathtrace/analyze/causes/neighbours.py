"""Neighbours: a frame sent to a MAC that is not the next hop's, an ARP or ND request
nobody answered and why.
"""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network, ip_address, ip_interface

from pathtrace.analyze import links, routing
from pathtrace.analyze.causes.addresses import duplicate
from pathtrace.analyze.causes.bridge import (
    bridge_port_towards,
    crossed_bridge,
    port_evidence,
    port_words,
)
from pathtrace.analyze.causes.common import Placed
from pathtrace.analyze.causes.netfilter import dropping, nf_ref, stops_neighbour_discovery
from pathtrace.analyze.causes.programs import tc_filter
from pathtrace.analyze.network import Network
from pathtrace.model.cause import Finding, ref
from pathtrace.model.ruleset import LiveRule
from pathtrace.model.state import Link, NamespaceState
from pathtrace.model.trace import Hop, Series


def _sender_of(net: Network, series: Series, drop: Hop) -> Hop | None:
    """The hop that addressed the frame: the last send or route before ``drop`` out
    of a device that is not a bridge port (a port only passes the bridge's frames on)."""
    before = series.hops[: series.hops.index(drop)]
    for hop in reversed(before):
        link = net.link(hop.node, hop.interface)
        if hop.action in ("send", "route") and not (link and link.master):
            return hop
    return None


def wrong_mac(net: Network, series: Series, drop: Hop) -> Placed | None:
    """A frame that reached a host which is not its destination (OTHERHOST): its
    sender addressed it to a MAC that is not the next hop's."""
    sent = _sender_of(net, series, drop)
    if sent is None:
        return None
    state = net.state(sent.node)
    if state is None:
        return None
    # A tunnel's datagram is addressed by the underlay: its outer destination.
    lookup = routing.route_get(state, sent.wire.dst)
    route = lookup.route
    hop_ip = (route.gateway if route and route.gateway else None) or sent.wire.dst
    entry = links.neighbour(state, hop_ip, sent.interface) or links.neighbour(
        state, hop_ip, sent.interface, after=True
    )
    owner = links.owner(net.all, hop_ip)
    if entry is None or owner is None or not entry.lladdr:
        return None
    if entry.lladdr.lower() == owner[1].mac.lower():
        return None
    out = state.link(sent.interface)
    # How the frame died, as the kernel said: a host's OTHERHOST, or a bridge's drop.
    if drop.drop_reason == "OTHERHOST":
        died = "which drops it as not its own (OTHERHOST)"
    else:
        died = f"and {drop.node}/{drop.interface} drops it ({drop.drop_reason or 'no reason'})"
    if out is not None and out.noarp:
        # No neighbour resolution on a NOARP link: the kernel fills in an address of
        # its own, and deleting the entry makes the same one again.
        return f"{sent.node}/{out.name}", Finding(
            "link.noarp",
            (ref("link", sent.node, out.name), ref("neigh", sent.node, hop_ip)),
            f"{sent.node}/{out.name} has NOARP set: the kernel resolves no neighbour on it "
            f"and sends the frame for {hop_ip} to {entry.lladdr}, not {owner[0].node}/"
            f"{owner[1].name}'s {owner[1].mac}, {died}",
            net.command(sent.node, f"ip link set dev {out.name} arp on"),
            [f"{sent.node}: {out.name} flags NOARP", f"{sent.node}: neighbour {entry.describe()}"],
        )
    bridge = sent.interface if state.is_bridge(sent.interface) else crossed_bridge(net, series)
    place = f"{bridge[0]}/{bridge[1]}" if isinstance(bridge, tuple) else f"{sent.node}/{bridge}"
    cause = (
        f"{sent.node}'s neighbour entry for {hop_ip} says {entry.lladdr}, but {hop_ip} is "
        f"{owner[0].node}/{owner[1].name} with MAC {owner[1].mac}: the frame goes to a MAC "
        + (
            "no one has, the bridge floods it, and each receiver drops it as not its own "
            "(OTHERHOST)"
            if drop.drop_reason == "OTHERHOST"
            else f"that is not the next hop's, {died}"
        )
    )
    fix = net.command(sent.node, f"ip neigh del {hop_ip} dev {sent.interface}")
    evidence = [
        f"{sent.node}: neighbour {entry.describe()}",
        f"{owner[0].node}: {owner[1].name} has {hop_ip} and MAC {owner[1].mac}",
    ]
    return place, Finding(
        "neigh.wrong_mac", (ref("neigh", sent.node, hop_ip),), cause, fix, evidence
    )


def bare_station(
    net: Network, state: NamespaceState, link: Link, address: str
) -> tuple[NamespaceState, Link, IPv4Network | IPv6Network] | None:
    """The one station on ``link``'s segment with no address in the network ``link``
    reaches ``address`` by (where an address nobody holds any more was, likely)."""
    network = next(
        (
            ip_interface(a).network
            for a in link.addresses
            if ip_address(address) in ip_interface(a).network
        ),
        None,
    )
    if network is None:
        return None
    bare = [
        (s, other)
        for s, other in links.segment(net.all, state, link)
        # A link that went down lost its IPv6 addresses with it (IPv4 keeps them).
        if (other.up or network.version == 6)
        and not any(
            ip_interface(a).version == network.version and ip_interface(a).network == network
            for a in other.addresses
        )
    ]
    if len(bare) != 1:
        return None
    return bare[0][0], bare[0][1], network


def no_arp_answer(net: Network, state: NamespaceState, link: Link, address: str) -> Finding | None:
    """Why the owner of ``address`` did not answer ARP: its link, its sysctls, or a
    bridge between the two that does not pass the request."""
    owner = links.owner(net.all, address)
    if owner is None:
        return None
    o_state, o_link = owner
    if ":" not in address:
        # The request's sender address is one the owner holds too: the kernel takes
        # such an ARP request for a conflict and answers nothing.
        network = next(
            (
                ip_interface(a).network
                for a in o_link.addresses
                if ":" not in a and ip_address(address) in ip_interface(a).network
            ),
            None,
        )
        for a in link.addresses:
            ip = a.split("/")[0]
            if network is not None and ip_address(ip) in network and o_state.owns(ip):
                dup = duplicate(
                    net,
                    o_state,
                    ip,
                    f"{state.node}'s ARP request comes from {ip}, which {o_state.node} holds "
                    "too, so it answers nothing",
                )
                if dup is not None:
                    return dup
    if not o_link.up:
        return Finding(
            links.down_code(o_link),
            (ref("link", o_state.node, o_link.name),),
            f"{address} is on {o_state.node}/{o_link.name}, which is down"
            + port_words(net, o_state, o_link),
            net.command(o_state.node, f"ip link set {o_link.name} up"),
            [f"{o_state.node}: {o_link.name} down"],
        )
    if o_link.noarp and o_link.kind != "loopback":
        return Finding(
            "link.noarp",
            (ref("link", o_state.node, o_link.name),),
            f"{address} is on {o_state.node}/{o_link.name}, which has NOARP set: it answers "
            "no ARP request (nor neighbour solicitation)",
            net.command(o_state.node, f"ip link set dev {o_link.name} arp on"),
            [f"{o_state.node}: {o_link.name} flags NOARP"],
        )
    if ":" in address:
        nd = _no_neighbour_advertisement(net, state, o_state, address)
        if nd is not None:
            return nd
    # The kernel uses the larger of the two; 8 answers no ARP request at all.
    keys = ("net.ipv4.conf.all.arp_ignore", f"net.ipv4.conf.{o_link.name}.arp_ignore")
    key, value = max(((k, o_state.sysctls.get(k, "0")) for k in keys), key=lambda kv: int(kv[1]))
    if value == "8" and ":" not in address:
        return Finding(
            "sysctl.arp_ignore",
            (ref("sysctl", o_state.node, key),),
            f"{o_state.node} does not answer ARP for {address}: {key}={value}",
            net.command(o_state.node, f"sysctl -w {key}=0"),
            [f"{o_state.node}: {key}={value}"],
        )
    if o_link.xdp:
        # ARP carries no tag, so no event shows where the requests went; the program
        # sees every frame on that link before the stack does.
        return Finding(
            "xdp.attached",
            (ref("xdp", o_state.node, o_link.name),),
            f"{address} is on {o_state.node}/{o_link.name}, which has an XDP program attached "
            f"({o_link.xdp}): it sees every frame before ARP does, and may be dropping the "
            "requests (ARP is not traced: unproven)",
            None,
            [f"{o_state.node}: {o_link.name} xdp {o_link.xdp}"],
        )
    mine = links.bridge_port_towards(net.all, state, link)
    theirs = links.bridge_port_towards(net.all, o_state, o_link)
    # tc filters that take every frame, on the links the request and the answer cross:
    # the asker's, the bridge's ports towards both, the owner's.
    way = [(state, link), *([mine] if mine else []), *([theirs] if theirs else []), owner]
    for w_state, w_link in way:
        for direction in ("egress", "ingress"):  # the request out, the answer back
            tc = tc_filter(net, w_state, w_link.name, direction, every=True)
            if tc is not None:
                return tc
    # A bridge between the two: its bridge family's hooks see every frame it switches,
    # ARP and ND included.
    for bridge_state in _bridges_between(net, state, o_state):
        rule = next(
            (
                r
                for r in dropping(bridge_state, ("PREROUTING", "FORWARD", "POSTROUTING"), "bridge")
                if r.family == "bridge" and _takes_resolution(r)
            ),
            None,
        )
        if rule is not None:
            return Finding(
                "nf.reject" if rule.verdict == "reject" else "nf.drop",
                (nf_ref(bridge_state.node, rule),),
                f"{bridge_state.node}'s bridge family stops the frames it switches between "
                f"{state.node} and {o_state.node}, the "
                f"{'neighbour solicitation' if ':' in address else 'ARP request'} for "
                f"{address} among them: {rule.cited}",
                net.command(bridge_state.node, rule.delete_command),
                [f"{bridge_state.node}: {rule.cited}"],
            )
    if link.kind == "bridge":  # the bridge device itself asks, out of its ports
        blocked_here = bridge_port_towards(net, state, link, address)
        if blocked_here is not None:
            return blocked_here
    if mine and mine[0] is o_state and mine[1].master == o_link.name:
        # The address is the bridge's own: the port the request comes in by must pass it.
        blocked = links.bridge_blocks(o_state, mine[1], mine[1], None)
        if blocked is not None:
            evidence = (
                [f"{o_state.node}: {mine[1].name} {mine[1].port.describe()}"]
                if (mine[1].port)
                else []
            )
            return blocked.finding(o_state.node, net.command(o_state.node, blocked.fix), evidence)
        # The answer goes back, unicast to the asker's MAC, out of that same port.
        blocked = links.bridge_blocks(o_state, o_link, mine[1], link.mac)
        if blocked is not None:
            return blocked.finding(
                o_state.node,
                net.command(o_state.node, blocked.fix),
                port_evidence(o_state, (mine[1],), link.mac),
            )
    if mine and theirs and mine[0] is theirs[0] and mine[1].master == theirs[1].master:
        b_state = mine[0]
        port = theirs[1]
        if not port.up:
            return Finding(
                "link.down",
                (ref("link", b_state.node, port.name),),
                f"{b_state.node}'s port {port.name}, the way to {address}, is down",
                net.command(b_state.node, f"ip link set {port.name} up"),
                [f"{b_state.node}: {port.name} down"],
            )
        if not port.carrier:
            other = links.peer(net.all, b_state, port)
            return Finding(
                "link.carrier",
                (ref("link", b_state.node, port.name),)
                + ((ref("link", other[0].node, other[1].name),) if other else ()),
                f"{b_state.node}'s port {port.name}, the way to {address}, has no carrier"
                + (
                    f": {other[1].name} in {other[0].node} is down"
                    if other and not other[1].up
                    else ""
                ),
                net.command(other[0].node, f"ip link set {other[1].name} up")
                if other and not other[1].up
                else None,
                [f"{b_state.node}: {port.name} no carrier"],
            )
        blocked = links.bridge_blocks(b_state, mine[1], theirs[1], None)
        if blocked is not None:
            evidence = [
                f"{b_state.node}: {p.name} {p.port.describe()}"
                for p in (mine[1], theirs[1])
                if p.port
            ]
            return blocked.finding(b_state.node, net.command(b_state.node, blocked.fix), evidence)
        # The answer, unicast to the asker's MAC, from the owner's port to the asker's.
        blocked = links.bridge_blocks(b_state, theirs[1], mine[1], link.mac)
        if blocked is not None:
            return blocked.finding(
                b_state.node,
                net.command(b_state.node, blocked.fix),
                port_evidence(b_state, (theirs[1], mine[1]), link.mac),
            )
    return None


def _no_neighbour_advertisement(
    net: Network, asker: NamespaceState, o_state: NamespaceState, address: str
) -> Finding | None:
    """Why the owner of an IPv6 address did not answer a neighbour solicitation:
    IPv6 off there, or a netfilter rule that ND meets (unlike ARP, ND is ICMPv6 and
    crosses the ip6 hooks): the solicitation out of the asker and into the owner,
    the advertisement out of the owner and into the asker."""
    key = "net.ipv6.conf.all.disable_ipv6"
    if o_state.sysctls.get(key) == "1":
        return Finding(
            "sysctl.disable_ipv6",
            (ref("sysctl", o_state.node, key),),
            f"{o_state.node} has IPv6 off: {key}=1",
            net.command(o_state.node, f"sysctl -w {key}=0"),
            [f"{o_state.node}: {key}=1"],
        )
    way: list[tuple[NamespaceState, tuple[str, ...], str]] = [
        (asker, ("OUTPUT", "POSTROUTING"), "the solicitation leaving"),
        (o_state, ("PREROUTING", "INPUT"), "the solicitation arriving at"),
        (o_state, ("OUTPUT", "POSTROUTING"), "the advertisement leaving"),
        (asker, ("PREROUTING", "INPUT"), "the advertisement arriving at"),
    ]
    # A bridge between the two whose node sends bridged IPv6 through its ip6 hooks
    # (br_netfilter): both ways cross its forward hook.
    for bridge_state in _bridges_between(net, asker, o_state):
        if bridge_state.sysctls.get("net.bridge.bridge-nf-call-ip6tables") == "1":
            way.append(
                (bridge_state, ("PREROUTING", "FORWARD", "POSTROUTING"), "the bridged ND through")
            )
    for state, hooks, what in way:
        rule = next(
            (r for r in dropping(state, hooks, "ip6") if stops_neighbour_discovery(r)), None
        )
        if rule is not None:
            return Finding(
                "nf.reject" if rule.verdict == "reject" else "nf.drop",
                (nf_ref(state.node, rule),),
                f"{state.node}'s netfilter stops {what} {state.node} (neighbour discovery for "
                f"{address} is ICMPv6 and crosses the ip6 hooks): {rule.cited}",
                net.command(state.node, rule.delete_command),
                [f"{state.node}: {rule.cited}"],
            )
    return None


def _bridges_between(
    net: Network, one: NamespaceState, other: NamespaceState
) -> list[NamespaceState]:
    """The nodes holding a bridge that both ``one`` and ``other`` plug into."""

    def ports(state: NamespaceState) -> set[tuple[str, str | None]]:
        found = set()
        for link in state.links:
            port = links.bridge_port_towards(net.all, state, link)
            if port is not None:
                found.add((port[0].node, port[1].master))
        return found

    shared = ports(one) & ports(other)
    return [s for s in net.all if any(node == s.node for node, _ in shared)]


def _takes_resolution(rule: LiveRule) -> bool:
    """A bridge-family drop that ARP or ND frames match: one with no match at all, or
    one on ARP or ICMPv6."""
    return stops_neighbour_discovery(rule) or "arp" in rule.text.split()
