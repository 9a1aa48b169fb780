"""The saved states a verdict reasons over, and how its fixes are written.

``Network`` answers questions about the traced namespaces by node name and
turns a command into one a person can paste: ``ip netns exec NS CMD`` (or
``nsenter``), with the lab's own restore command offered beside it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from ipaddress import IPv4Interface, IPv6Interface, ip_address, ip_interface

from pathtrace.analyze import links, routing
from pathtrace.model.state import Link, NamespaceState


class Network:
    def __init__(self, states: dict[str, NamespaceState], restore: str | None) -> None:
        self.states = states
        self.all = list(states.values())
        self.restore = restore

    def state(self, node: str) -> NamespaceState | None:
        return next((s for s in self.all if s.node == node), None)

    def link(self, node: str, name: str | None) -> Link | None:
        state = self.state(node)
        return state.link(name) if state and name else None

    def run_in(self, node: str) -> str:
        """How a command is run in ``node``'s namespace from a shell on the host."""
        state = self.state(node)
        namespace = state.namespace if state else node
        if not namespace or (node == "host" and namespace.startswith("/")):
            return ""  # the namespace pathtrace runs in: the shell is already there
        if namespace.startswith("/proc/"):
            return f"nsenter -t {namespace.split('/')[2]} -n "
        if namespace.startswith("/"):
            return f"nsenter --net={namespace} "
        return f"ip netns exec {namespace} "

    def command(self, node: str, command: str) -> str:
        """A concrete command for ``node``; the lab's restore offered beside it."""
        text = f"{self.run_in(node)}{command}"
        return f"{text} (or `{self.restore}`)" if self.restore else text

    def advice(self, text: str) -> str:
        """Advice that is not one command, with the lab's restore beside it."""
        return f"{text} (or `{self.restore}`)" if self.restore else text

    def peer_words(self, node: str, link: Link) -> str:
        """ "veth-host1 in host": a veth's other end, as a person finds it."""
        state = self.state(node)
        found = links.peer(self.all, state, link) if state else None
        if found is None:
            return "its peer"
        return f"{found[1].name} in {found[0].node}"

    def lookup(
        self, node: str, dst: str, src: str | None = None, iif: str | None = None, mark: int = 0
    ) -> routing.Lookup | None:
        state = self.state(node)
        return routing.route_get(state, dst, src, iif, mark) if state else None

    def next_hop(self, node: str, dst: str) -> tuple[str, str] | None:
        """(a gateway, a prefix) for a route ``node`` lacks to ``dst``: the address,
        on one of ``node``'s own subnets, of the one traced namespace that holds
        ``dst`` or forwards and whose own lookup reaches it (not back through
        ``node``); the prefix is that namespace's route (its connected network), or
        ``dst`` alone behind a default route. None when no namespace, or more than
        one, qualifies: a fix then says GATEWAY rather than guess."""
        state = self.state(node)
        if state is None:
            return None
        version = ip_interface(dst).version
        mine = [
            ip_interface(a)
            for link in state.links
            if link.kind != "loopback"
            for a in link.addresses
            if ip_interface(a).version == version
        ]
        if any(ip_interface(dst).ip in m.network for m in mine):
            return None  # on a network of its own: a connected route, no gateway
        key = "net.ipv6.conf.all.forwarding" if version == 6 else "net.ipv4.ip_forward"
        found: dict[str, str] = {}
        for other in self.all:
            if other is state:
                continue
            owns = other.owns(dst)
            if not owns and other.sysctls.get(key) != "1":
                continue
            shared = [
                ip_interface(a)
                for link in other.links
                for a in link.addresses
                if any(_on_link(ip_interface(a), m) for m in mine)
            ]
            if not shared:
                continue
            prefix = dst
            if not owns:
                lookup = routing.route_get(other, dst)
                route = lookup.route
                if lookup.refused or route is None:
                    continue
                if route.gateway and any(str(m.ip) == route.gateway for m in mine):
                    continue  # its way there is back through ``node``
                prefix = route.dst if route.dst != "default" else dst
            else:
                held = next(
                    (
                        ip_interface(a)
                        for link in other.links
                        for a in link.addresses
                        if ip_interface(a).ip == ip_interface(dst).ip
                    ),
                    None,
                )
                if held is not None and held.network.prefixlen < held.max_prefixlen:
                    prefix = str(held.network)
            found.setdefault(str(shared[0].ip), prefix)
        if len(found) != 1:
            return None
        gateway, prefix = next(iter(found.items()))
        return gateway, prefix

    def tunnel_route(self, node: str, dst: str) -> TunnelRoute | None:
        """The route an overlay would have ``node`` use to ``dst``: through its own
        VXLAN device, to the traced node whose connected network holds ``dst`` and
        whose VXLAN device (local address) is a VTEP this device's FDB sends a MAC
        to; via the neighbour this device maps to that MAC (else that node's device
        address), onlink, as flannel writes it. None where no such node is."""
        state = self.state(node)
        if state is None or ":" in dst:
            return None
        target = ip_address(dst)
        for link in state.links:
            if link.kind != "vxlan" or not link.up:
                continue
            for entry in state.fdb:
                if entry.dev != link.name or entry.dst is None:
                    continue
                mac, vtep = entry.mac, entry.dst
                for other in self.all:
                    if other is state:
                        continue
                    device = next(
                        (o for o in other.links if o.kind == "vxlan" and o.detail("local") == vtep),
                        None,
                    )
                    network = next(
                        (
                            ip_interface(a).network
                            for o in other.links
                            if o.kind != "loopback" and o is not device
                            for a in o.addresses
                            if ip_interface(a).version == 4
                            and target in ip_interface(a).network
                            and ip_interface(a).network.prefixlen < 32
                        ),
                        None,
                    )
                    if device is None or network is None:
                        continue
                    told = next(
                        (
                            n.dst
                            for n in state.neighbour_entries()
                            if n.dev == link.name and (n.lladdr or "").lower() == mac.lower()
                        ),
                        None,
                    )
                    gateway = told or next(
                        (a.split("/")[0] for a in device.addresses if ":" not in a), None
                    )
                    if gateway is None:
                        continue
                    return TunnelRoute(
                        link.name,
                        f"{network} via {gateway} dev {link.name} onlink",
                        f"{link.name} ({link.describe_kind()}) reaches {other.node}'s VTEP "
                        f"{vtep} (its FDB sends {mac} there), and {other.node} holds "
                        f"{network}; no route goes through {link.name} to it",
                        [
                            f"{node}: fdb {entry.describe()}",
                            f"{other.node}: {device.name} local {vtep}",
                            f"{other.node}: holds {network}",
                        ],
                    )
        return None

    def route_to(self, node: str, dst: str) -> str | None:
        """What `ip route add` needs for ``node`` to reach ``dst``: its connected
        network on the link that holds an address there (a connected route gone), or
        a prefix via ``next_hop``; None when neither is known."""
        state = self.state(node)
        if state is None:
            return None
        for link in state.links:
            for a in link.addresses:
                held = ip_interface(a)
                if link.kind != "loopback" and ip_interface(dst).ip in held.network:
                    return f"{held.network} dev {link.name}"
        hop = self.next_hop(node, dst)
        return f"{hop[1]} via {hop[0]}" if hop is not None else None

    def gateway_with(
        self, state: NamespaceState, link: Link, addresses: tuple[str, ...], version: int
    ) -> str | None:
        """``gateway_for`` on the states with ``link`` of ``state`` holding ``addresses``
        (a fix that gives a link its address back, or a wider one)."""
        restored = replace(
            state,
            links=[replace(k, addresses=addresses) if k is link else k for k in state.links],
        )
        others = {ns: s for ns, s in self.states.items() if s is not state}
        return Network({**others, state.namespace: restored}, None).gateway_for(state.node, version)

    def gateway_for(self, node: str, version: int = 4) -> str | None:
        """The address, on one of ``node``'s own subnets, of a traced namespace that
        forwards: what a default route there would go via."""
        state = self.state(node)
        if state is None:
            return None
        mine = [
            ip_interface(a)
            for link in state.links
            if link.kind != "loopback"
            for a in link.addresses
            if ip_interface(a).version == version
        ]
        for other in self.all:
            key = "net.ipv6.conf.all.forwarding" if version == 6 else "net.ipv4.ip_forward"
            if other is state or other.sysctls.get(key) != "1":
                continue
            for link in other.links:
                for a in link.addresses:
                    address = ip_interface(a)
                    if any(_on_link(address, m) for m in mine):
                        return str(address.ip)
        return None


@dataclass(frozen=True)
class TunnelRoute:
    device: str
    route: str  # as `ip route add` takes it
    why: str
    evidence: list[str]


def _on_link(address: IPv4Interface | IPv6Interface, mine: IPv4Interface | IPv6Interface) -> bool:
    """``address`` is a station on ``mine``'s network as both see it: each inside the
    other's prefix (a /32 that merely falls inside the network, as a VXLAN device's
    own, is not reached on that link)."""
    return (
        address.version == mine.version
        and address.ip != mine.ip
        and address.ip in mine.network
        and mine.ip in address.network
    )
