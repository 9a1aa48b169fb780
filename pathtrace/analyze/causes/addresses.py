"""Addresses: one held twice, a prefix narrower than the network, a destination in 127/8
that route_localnet refuses.
"""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network, ip_address, ip_interface

from pathtrace.analyze import links
from pathtrace.analyze.causes.common import Placed
from pathtrace.analyze.network import Network
from pathtrace.model.cause import Finding, ref
from pathtrace.model.state import Link, NamespaceState
from pathtrace.model.trace import Hop


def duplicate(net: Network, here: NamespaceState, address: str, what: str) -> Finding | None:
    """``here`` holds ``address`` and so does another traced namespace: ``what`` says
    what that did to the packet. The fix removes ``here``'s copy first (the one that
    acted on this packet), the other's after ", or"."""
    mine = next(
        (link for link in here.links if any(a.split("/")[0] == address for a in link.addresses)),
        None,
    )
    others = [
        (state, link)
        for state in net.all
        if state is not here
        for link in state.links
        if any(a.split("/")[0] == address for a in link.addresses)
    ]
    if mine is None or not others:
        return None
    o_state, o_link = others[0]
    held = next(a for a in mine.addresses if a.split("/")[0] == address)
    o_held = next(a for a in o_link.addresses if a.split("/")[0] == address)
    return Finding(
        "address.duplicate",
        (ref("address", here.node, address), ref("address", o_state.node, address)),
        f"{address} is held by both {here.node}/{mine.name} and {o_state.node}/{o_link.name}: "
        f"{what}",
        net.run_in(here.node)
        + f"ip addr del {held} dev {mine.name}, or if {here.node}'s is the right one: "
        + net.command(o_state.node, f"ip addr del {o_held} dev {o_link.name}"),
        [
            f"{here.node}: {mine.name} has {held}",
            f"{o_state.node}: {o_link.name} has {o_held}",
        ],
    )


def narrow_address(
    net: Network, state: NamespaceState, link: Link
) -> tuple[str, NamespaceState, Link, IPv4Network | IPv6Network] | None:
    """An address of ``link`` whose prefix is narrower than the network a station on
    its segment uses for it (192.168.100.2/32 where the bridge has 192.168.100.1/24):
    no connected route, so no route via a gateway there. (held, the station, its
    link, the station's network)."""
    for held in link.addresses:
        mine = ip_interface(held)
        for s, other in links.segment(net.all, state, link):
            for theirs in other.addresses:
                network = ip_interface(theirs).network
                if (
                    network.version == mine.version
                    and network.prefixlen < mine.network.prefixlen
                    and mine.ip in network
                ):
                    return held, s, other, network
    return None


def prefix_finding(
    net: Network, state: NamespaceState, link: Link, dst: str, what: str
) -> Finding | None:
    found = narrow_address(net, state, link)
    if found is None:
        return None
    held, s, other, network = found
    ip = held.split("/")[0]
    node = state.node
    return Finding(
        "address.prefix",
        (ref("address", node, ip), ref("link", node, link.name), ref("route", node, dst)),
        f"{what}: {link.name} has {held}, while {s.node}/{other.name} on its link uses "
        f"{network}: with /{ip_interface(held).network.prefixlen} there is no route to that "
        "network, nor via a gateway on it",
        _widen(net, state, link, held, f"{ip}/{network.prefixlen}", dst),
        [
            f"{node}: {link.name} has {held}",
            f"{s.node}: {other.name} has {', '.join(other.addresses)}",
        ],
    )


def localnet(net: Network, drop: Hop) -> Placed | None:
    """A packet for 127.0.0.0/8 that came in on an interface (a DNAT to 127.0.0.1,
    say): routed only where route_localnet is on for that interface or `all`."""
    state, iif = net.state(drop.node), drop.interface
    if state is None or iif is None:
        return None
    values = {k: state.sysctl("route_localnet", k) for k in ("all", iif)}
    if any(v is None for v in values.values()) or "1" in values.values():
        return None  # not read, or on: something else refused it
    translated = drop.packet.dst
    return None, Finding(
        "sysctl.route_localnet",
        tuple(ref("sysctl", drop.node, f"net.ipv4.conf.{k}.route_localnet") for k in values),
        f"{drop.node} will not route {translated} (a loopback address) for a packet that came in "
        f"on {iif}: net.ipv4.conf.{iif}.route_localnet and conf.all.route_localnet are 0",
        net.command(drop.node, f"sysctl -w net.ipv4.conf.{iif}.route_localnet=1")
        + " (or translate to an address of an interface, not 127.0.0.0/8)",
        [f"{drop.node}: net.ipv4.conf.{k}.route_localnet={v}" for k, v in values.items()],
    )


def _widen(net: Network, state: NamespaceState, link: Link, held: str, wider: str, dst: str) -> str:
    """The narrow address replaced by the one of the link's network; where ``dst``
    lies beyond that network and the node has no default route, one via the station
    there that forwards (the kernel removed the routes via a gateway with the
    connected route), else those routes said in words."""
    node, version = state.node, ip_interface(wider).version
    parts = [f"ip addr del {held} dev {link.name}", f"ip addr add {wider} dev {link.name}"]
    if ip_address(dst) not in ip_interface(wider).network and not state.has_default(version):
        addresses = tuple(wider if a == held else a for a in link.addresses)
        gateway = net.gateway_with(state, link, addresses, version)
        if gateway is None:
            return net.advice(
                " && ".join(f"{net.run_in(node)}{p}" for p in parts)
                + ", then the routes via a gateway on that network (the kernel removed them "
                "with the connected route)"
            )
        parts.append(f"ip {'-6 ' if version == 6 else ''}route add default via {gateway}")
    return net.advice(" && ".join(f"{net.run_in(node)}{p}" for p in parts))
