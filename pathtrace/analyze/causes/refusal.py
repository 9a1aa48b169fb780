"""ICMP errors a node sent back: why that node refused the packet."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from ipaddress import ip_address, ip_interface

from pathtrace.analyze import links, nfmatch, routing
from pathtrace.analyze.causes.addresses import duplicate, prefix_finding
from pathtrace.analyze.causes.common import only
from pathtrace.analyze.causes.neighbours import bare_station, no_arp_answer
from pathtrace.analyze.causes.netfilter import nf_ref
from pathtrace.analyze.causes.routes import no_route, refused_lookup
from pathtrace.analyze.causes.sockets import dnat_to_a_closed_port
from pathtrace.analyze.network import Network
from pathtrace.model.cause import Finding, ref
from pathtrace.model.state import Link, NamespaceState
from pathtrace.model.trace import Packet, Series


def refusal(
    net: Network,
    sender: str,
    code: tuple[int, int],
    packet: Packet,
    iif: str | None,
    request: Series,
) -> Finding | None:
    state = net.state(sender)
    if state is None:
        return None
    if code in ((3, 0), (3, 1), (3, 9), (3, 10), (3, 13)) and (
        back := _bounced(net, request, packet.dst)
    ):
        return back
    if code in ((3, 0), (3, 1), (3, 9), (3, 10), (3, 13)):
        lookup = routing.route_get(state, packet.dst, packet.src if iif else None, iif)
        if lookup.kind in routing.REFUSING:
            return refused_lookup(net, sender, lookup, packet.dst)
        if lookup.kind == "none" and code[1] in (0, 1):
            return no_route(net, state, packet.dst)
        if code == (3, 1) and lookup.route is not None:
            # Host unreachable from a node with a route: its neighbour never answered
            # (ARP or neighbour solicitation): why, as for a packet held for it.
            hop_ip = lookup.route.gateway or packet.dst
            link = state.link(lookup.route.dev) if lookup.route.dev else None
            why = no_arp_answer(net, state, link, hop_ip) if link is not None else None
            if why is None and link is not None and links.owner(net.all, hop_ip) is None:
                why = _nobody_holds(net, state, link, hop_ip)
            if why is not None:
                asked = "neighbour solicitation" if ":" in hop_ip else "ARP"
                return replace(
                    why,
                    cause=f"{sender} found no MAC for {hop_ip} on {link.name if link else '?'} "
                    f"({asked}) and sent host unreachable: {why.cause}",
                )
        if iif and state.sysctl("forwarding", iif) == "0":
            key = f"net.ipv4.conf.{iif}.forwarding"
            return Finding(
                "sysctl.forwarding",
                (ref("sysctl", sender, key),),
                f"{sender} does not forward what arrives on {iif}: {key}=0",
                net.command(sender, f"sysctl -w {key}=1"),
                [f"{sender}: {key}=0"],
            )
    if code[0] == 3 and code[1] in (3, 9, 10, 13, 0, 1):
        rule, _ = only(r for r in state.rules().rules if r.does("reject"))
        if rule is not None:
            return Finding(
                "nf.reject",
                (nf_ref(sender, rule),),
                f"a reject rule in {sender}: {rule.cited}",
                net.command(sender, rule.delete_command),
                [f"{sender}: {rule.cited}"],
            )
    if code == (3, 3) and (
        dup := duplicate(
            net, state, packet.dst, f"{sender} took the packet for {packet.dst} as its own"
        )
    ):
        return dup
    if code == (3, 3):
        sockets = [s for s in state.listeners if s.protocol == packet.protocol]
        cause = f"nothing listens on {packet.protocol} port {packet.dport} in {sender}"
        fix = (
            f"start a listener on {packet.protocol} port {packet.dport} in {sender}, or "
            "check the port"
        )
        said = "socket.none"
        objects: tuple[str, ...] = (ref("socket", sender, f"{packet.protocol} {packet.dport}"),)
        other = dnat_to_a_closed_port(request, sockets, packet)
        if other is not None:
            cause, fix = f"{cause}; {other[0]}", other[1]
            said, objects = "nat.port", (*other[2], *objects)
        evidence = [f"{sender} has open: {', '.join(s.describe() for s in sockets) or 'nothing'}"]
        return Finding(said, objects, cause, fix, evidence)
    if code == (3, 4):
        lookup = routing.route_get(state, packet.dst, packet.src if iif else None, iif)
        link = state.link(lookup.route.dev) if lookup.route and lookup.route.dev else None
        if link is None:
            return None
        v6 = ":" in packet.dst
        return Finding(
            "link.mtu",
            (ref("link", sender, link.name),),
            f"{sender} must send the {packet.length}-byte packet out of {link.name}, whose "
            f"MTU is {link.mtu}, and "
            + ("IPv6 routers never fragment" if v6 else "DF forbids fragmenting it"),
            net.advice(
                f"send smaller packets (at most {link.mtu} bytes)"
                + ("" if v6 else ", clear DF")
                + ", or raise the MTU: "
                f"{net.run_in(sender)}ip link set {link.name} mtu {packet.length}"
            ),
            [f"{sender}: {lookup.describe()}", f"{sender}/{link.name} mtu {link.mtu}"],
        )
    if code == (1, 2) and ip_address(packet.src).is_link_local:
        # ICMPv6 "beyond scope of source address": a link-local source is never forwarded.
        source = request.hops[0]
        return Finding(
            "link.no_address",
            (ref("link", source.node, source.interface),),
            f"{source.node} sent it from its link-local address {packet.src}, which no router "
            f"forwards ({sender}: beyond scope of source address): {source.node}/"
            f"{source.interface} has no global or unique-local IPv6 address",
            net.advice(f"give {source.node}/{source.interface} its IPv6 address back"),
            [f"{source.node}: source {packet.src}"],
        )
    if code == (11, 0):
        for hop in request.hops:
            s = net.state(hop.node)
            rule = (
                next((r for r in s.rules().rules if nfmatch.statement(r).ttl is not None), None)
                if s
                else None
            )
            if rule is not None and s is not None:
                return Finding(
                    "nf.ttl",
                    (nf_ref(s.node, rule),),
                    f"the TTL reached 0 at {sender}: a rule in {s.node} rewrites it: {rule.cited}",
                    net.command(s.node, rule.delete_command),
                    [f"{s.node}: {rule.cited}"],
                )
        return _looped(net, request, sender) or Finding(
            "path.ttl",
            (),
            f"the TTL reached 0 at {sender}",
            "raise the TTL (the path is longer than it allows)",
            [],
        )
    return None


def _looped(net: Network, request: Series, sender: str) -> Finding | None:
    """The request left the same place more than once: a loop, not a long path.
    An address held twice on the loop's nodes explains one; else it is said unknown
    (raising the TTL would only make it go round longer)."""
    seen = Counter((h.node, h.interface) for h in request.hops if h.action in ("route", "send"))
    again = [place for place, n in seen.items() if n > 1]
    if not again:
        return None
    loop = ", ".join(f"{node}/{interface}" for node, interface in again)
    what = f"the packet went round a loop (out of {loop} again and again) until its TTL ran out"
    for node in dict.fromkeys(node for node, _ in again):
        state = net.state(node)
        for link in state.links if state else []:
            for address in link.addresses:
                ip = address.split("/")[0]
                if link.kind == "loopback" or ip_address(ip).is_link_local:
                    continue
                found = duplicate(net, state, ip, what) if state else None
                if found is not None:
                    return found
    return Finding(
        "unknown",
        (),
        f"the TTL reached 0 at {sender}: {what}; the saved state does not show why it loops",
        None,
        [f"sent out of {place[0]}/{place[1]} {n} times" for place, n in seen.items() if n > 1],
    )


def _bounced(net: Network, request: Series, dst: str) -> Finding | None:
    """A router sent the packet back out of the interface it came in by, while one of
    its own links reaches ``dst``'s holder through an address too narrow to route
    there: that router's address is why, not the refusal further on."""
    for i, hop in enumerate(request.hops):
        if hop.action != "route":
            continue
        came = next(
            (h for h in reversed(request.hops[:i]) if h.node == hop.node and h.action == "cross"),
            None,
        )
        state = net.state(hop.node)
        if came is None or came.interface != hop.interface or state is None:
            continue
        for link in state.links:
            found = prefix_finding(
                net, state, link, dst, f"{hop.node} sent it back out of {hop.interface}"
            )
            if found is not None:
                return found
        found = _unaddressed(net, state, hop.interface, dst)
        if found is not None:
            return found
    return None


def _unaddressed(net: Network, state: NamespaceState, came: str, dst: str) -> Finding | None:
    """A router that sent the packet back the way it came, while ``dst``'s holder is
    on the segment of another of its links that has no address in the holder's
    network: no connected route there, so the lookup took the way back. The address
    it lacks is the one the holder's neighbours route through, if nobody holds it."""
    holder = links.owner(net.all, dst)
    if holder is None:
        return None
    h_state, h_link = holder
    held = next((a for a in h_link.addresses if a.split("/")[0] == dst), None)
    if held is None:
        return None
    network = ip_interface(held).network
    for link in state.links:
        if link.name == came or link.kind == "loopback":
            continue
        stations = links.segment(net.all, state, link)
        if not any(s is h_state and lk.name == h_link.name for s, lk in stations):
            continue
        node = state.node
        has = any(ip_interface(a).ip in network for a in link.addresses)
        wanted = sorted(
            {
                r.gateway
                for s, _ in stations
                for r in s.routes
                if r.gateway
                and ip_address(r.gateway) in network
                and links.owner(net.all, r.gateway) is None
            }
        )
        six = "-6 " if network.version == 6 else ""
        add = f"ip {six}addr add {wanted[0]}/{network.prefixlen} dev {link.name}" if wanted else ""
        if not link.up:
            # A link that went down took its routes, and IPv6 its addresses, with it.
            parts = [f"ip link set {link.name} up"] + ([] if has or len(wanted) != 1 else [add])
            return Finding(
                links.down_code(link),
                (ref("link", node, link.name), ref("route", node, dst)),
                f"{node} sent it back out of {came}, the way it came: {dst} is held by "
                f"{h_state.node}/{h_link.name} on {link.name}'s link, and {link.name} is down "
                "(its routes went with it)",
                net.advice(" && ".join(f"{net.run_in(node)}{p}" for p in parts)),
                [f"{node}: {link.name} down, addresses: {', '.join(link.addresses) or 'none'}"],
            )
        if has:
            return None  # it has one: something else sent it back
        fix = (
            net.command(node, add)
            if len(wanted) == 1
            else net.advice(f"give {node}'s {link.name} an address in {network}")
        )
        return Finding(
            "route.none",
            (ref("route", node, dst), ref("link", node, link.name)),
            f"{node} sent it back out of {came}, the way it came: {dst} is held by "
            f"{h_state.node}/{h_link.name} on {link.name}'s link, but {link.name} has no "
            f"address in {network}, so {node} has no route to it there"
            + (
                f" ({wanted[0]} is the gateway the stations there use, and nobody holds it)"
                if len(wanted) == 1
                else ""
            ),
            fix,
            [
                f"{node}: {link.name} addresses: {', '.join(link.addresses) or 'none'}",
                f"{h_state.node}: {h_link.name} has {held}",
            ],
        )
    return None


def _nobody_holds(net: Network, state: NamespaceState, link: Link, address: str) -> Finding | None:
    """No traced namespace holds ``address``: the one station on ``link``'s segment
    without an address in its network is where it was, likely."""
    bare = bare_station(net, state, link, address)
    if bare is None:
        return None
    b_state, b_link, network = bare
    return Finding(
        "neigh.failed",
        (ref("neigh", state.node, address), ref("link", b_state.node, b_link.name)),
        f"no traced namespace holds {address}, and the one station on {link.name}'s link "
        f"without an address in {network} is {b_state.node}/{b_link.name} (the fix below "
        f"assumes {address} was its address)",
        net.command(b_state.node, f"ip addr add {address}/{network.prefixlen} dev {b_link.name}"),
        [f"{b_state.node}: {b_link.name} addresses: {', '.join(b_link.addresses) or 'none'}"],
    )
