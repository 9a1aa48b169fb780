"""The fuzzer's catalog: single mutations of a network as it is, each with the
objects it changes (model.cause references), made with the plain tools in one
node's namespace."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, ip_address, ip_network

from pathtrace.model.cause import ref
from pathtrace.model.state import NamespaceState
from pathtrace.system import observe


@dataclass(frozen=True)
class Mutation:
    kind: str  # link, mtu, address, route, rule, sysctl, neigh, bridge, fdb, vlan, nf, tc
    node: str
    command: str  # run in the node's namespace (sh)
    # The objects it changed, as verdicts name them (model.cause refs): naming any
    # of them is naming the mutation (an address removed: the address, or its link).
    objects: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"{self.kind} {self.node}: {self.command}"


def _nft_table(hook: str, rule: str, family: str = "ip") -> str:
    return (
        f"nft add table {family} fz && nft add chain {family} fz {hook} "
        f"'{{ type filter hook {hook} priority 0; }}' && nft add rule {family} fz {hook} {rule}"
    )


def catalog(nodes: dict[str, str]) -> list[Mutation]:
    """Single mutations of a network as it is (``nodes``: each node's namespace):
    each link, address, route, neighbour, bridge port, VXLAN FDB entry, forwarding
    switch and ARP switch, policy rules in front of the routes, tc filters, and a
    drop, a reject and a conntrack-state drop in each netfilter hook."""
    found: list[Mutation] = []
    states = {node: observe.state(namespace, node) for node, namespace in nodes.items()}
    for node, state in states.items():
        for link in state.links:
            if link.kind == "loopback":
                continue
            here = ref("link", node, link.name)
            found.append(Mutation("link", node, f"ip link set {link.name} down", (here,)))
            # The smallest MTU IPv4 allows: frames from a peer with the usual 1500
            # are too big to take in; what leaves is fragmented (or refused with DF).
            found.append(Mutation("mtu", node, f"ip link set dev {link.name} mtu 68", (here,)))
            if link.kind != "bridge":
                found.append(
                    Mutation("link", node, f"ip link set dev {link.name} arp off", (here,))
                )
                # (This kernel has no matchall or gact: a u32 match of every frame,
                # redirected to a device that is down.)
                for direction in ("ingress", "egress"):
                    found.append(
                        Mutation(
                            "tc",
                            node,
                            "ip link add fzsink type veth peer name fzsink-peer && "
                            f"tc qdisc add dev {link.name} clsact && tc filter add dev "
                            f"{link.name} {direction} u32 match u32 0 0 action mirred egress "
                            "redirect dev fzsink",
                            (ref("tc", node, f"{link.name} {direction}"),),
                        )
                    )
            if link.kind == "bridge":
                ports = [p for p in state.links if p.master == link.name]
                # Every port isolated: isolated ports pass frames only to ports that
                # are not. And VLAN filtering on, each port taken out of VLAN 1.
                found.append(
                    Mutation(
                        "bridge",
                        node,
                        " && ".join(f"bridge link set dev {p.name} isolated on" for p in ports),
                        tuple(ref("port", node, p.name) for p in ports),
                    )
                )
                for p in ports:
                    found.append(
                        Mutation(
                            "vlan",
                            node,
                            f"ip link set dev {link.name} type bridge vlan_filtering 1 && "
                            f"bridge vlan del dev {p.name} vid 1",
                            (ref("port", node, p.name), here),
                        )
                    )
            if link.port is not None:
                port = ref("port", node, link.name)
                found.append(
                    Mutation("bridge", node, f"bridge link set dev {link.name} state 0", (port,))
                )
                found.append(
                    Mutation(
                        "bridge",
                        node,
                        f"bridge link set dev {link.name} flood off learning off && "
                        f"ip link set dev {link.name} type bridge_slave fdb_flush",
                        (port,),
                    )
                )
            for address in link.addresses:
                if ":" in address:
                    continue
                found.append(
                    Mutation(
                        "address",
                        node,
                        f"ip addr del {address} dev {link.name}",
                        (here, ref("address", node, address.split("/")[0])),
                    )
                )
        for route in state.routes:
            if (
                route.family == 4
                and route.table == 254
                and (route.gateway or route.dst == "default")
            ):
                found.append(
                    Mutation(
                        "route", node, f"ip route del {route.dst}", (ref("route", node, route.dst),)
                    )
                )
                for kind in ("blackhole", "unreachable", "prohibit"):
                    found.append(
                        Mutation(
                            "route",
                            node,
                            f"ip route replace {kind} {route.dst}",
                            (ref("route", node, route.dst),),
                        )
                    )
                if route.gateway:
                    # The same route through a gateway nobody holds.
                    found.append(
                        Mutation(
                            "route",
                            node,
                            f"ip route replace {route.dst} via {_unused_neighbour(route.gateway)}",
                            (ref("route", node, route.dst),),
                        )
                    )
        for entry in state.neighbour_entries():
            if entry.lladdr and ":" not in entry.dst and not ip_address(entry.dst).is_multicast:
                found.append(
                    Mutation(
                        "neigh",
                        node,
                        f"ip neigh replace {entry.dst} lladdr 02:00:00:00:00:77 "
                        f"dev {entry.dev} nud permanent",
                        (ref("neigh", node, entry.dst),),
                    )
                )
        for entry in state.fdb:
            # A tunnel's own FDB: the entry that sends an inner MAC to its VTEP, deleted.
            if entry.dst is not None:
                found.append(
                    Mutation(
                        "fdb",
                        node,
                        f"bridge fdb del {entry.mac} dev {entry.dev} dst {entry.dst} self",
                        (ref("fdb", node, entry.mac), ref("link", node, entry.dev)),
                    )
                )
        # Policy rules in front of the main table: a refusing action, and a lookup
        # in a table whose only route is a blackhole.
        for action in ("prohibit", "blackhole"):
            found.append(
                Mutation(
                    "rule",
                    node,
                    f"ip rule add to 0.0.0.0/1 {action} pref 90",
                    (ref("rule", node, "pref 90"),),
                )
            )
        found.append(
            Mutation(
                "rule",
                node,
                "ip route add blackhole default table 90 && "
                "ip rule add to 128.0.0.0/1 lookup 90 pref 90",
                (ref("rule", node, "pref 90"),),
            )
        )
        # A mark set by a netfilter rule, and a rule that routes marked packets by a
        # table whose only route is a blackhole (forwarded packets: prerouting;
        # the node's own: a route-type output chain, which routes them again).
        for hook, kind in (("prerouting", "filter"), ("output", "route")):
            found.append(
                Mutation(
                    "rule",
                    node,
                    f"nft add table ip fz && nft add chain ip fz mark{hook} "
                    f"'{{ type {kind} hook {hook} priority -150; }}' && "
                    f"nft add rule ip fz mark{hook} meta mark set 0x77 && "
                    "ip route add blackhole default table 77 && "
                    "ip rule add fwmark 0x77 lookup 77 pref 90",
                    (ref("rule", node, "pref 90"), ref("nf", node, f"ip fz mark{hook}")),
                )
            )
        if state.sysctls.get("net.ipv4.ip_forward") == "1":
            key = "net.ipv4.ip_forward"
            found.append(
                Mutation("sysctl", node, f"sysctl -qw {key}=0", (ref("sysctl", node, key),))
            )
            for link in state.links:  # forwarding off for what comes in on one interface
                if link.kind != "loopback" and link.master is None and link.addresses:
                    key = f"net.ipv4.conf.{link.name}.forwarding"
                    found.append(
                        Mutation("sysctl", node, f"sysctl -qw {key}=0", (ref("sysctl", node, key),))
                    )
        for key, value in (
            ("net.ipv4.conf.all.arp_ignore", "8"),
            ("net.ipv4.icmp_echo_ignore_all", "1"),
        ):
            found.append(
                Mutation("sysctl", node, f"sysctl -qw {key}={value}", (ref("sysctl", node, key),))
            )
        for hook in ("prerouting", "input", "forward", "output", "postrouting"):
            chain = (ref("nf", node, f"ip fz {hook}"),)
            found.append(Mutation("nf", node, _nft_table(hook, "counter drop"), chain))
            if hook in ("input", "forward", "output"):
                found.append(Mutation("nf", node, _nft_table(hook, "counter reject"), chain))
            found.append(Mutation("nf", node, _nft_table(hook, "ct state new counter drop"), chain))
            # The same drop in the inet family (IPv4 and IPv6 alike).
            found.append(
                Mutation(
                    "nf",
                    node,
                    _nft_table(hook, "counter drop", "inet"),
                    (ref("nf", node, f"inet fz {hook}"),),
                )
            )
        found += _iptables_drops(node, "ip")
        if any(link.kind == "bridge" for link in state.links):
            # The bridge family's forward hook: frames switched between ports.
            found.append(
                Mutation(
                    "nf",
                    node,
                    _nft_table("forward", "counter drop", "bridge"),
                    (ref("nf", node, "bridge fz forward"),),
                )
            )
        # Conntrack told to leave packets alone before NAT could see them (raw
        # priority), on the way in and on the node's own way out.
        for hook in ("prerouting", "output"):
            found.append(
                Mutation(
                    "nf",
                    node,
                    f"nft add table ip fz && nft add chain ip fz raw{hook} "
                    f"'{{ type filter hook {hook} priority -300; }}' && "
                    f"nft add rule ip fz raw{hook} counter notrack",
                    (ref("nf", node, f"ip fz raw{hook}"),),
                )
            )
    found += _across_nodes(nodes, states)
    # Netlink lists neighbours (and more) in no fixed order: a seed must pick the same.
    return sorted(set(found), key=lambda m: m.label)


def _across_nodes(nodes: dict[str, str], states: dict[str, NamespaceState]) -> list[Mutation]:
    """Mutations that involve two nodes: an address also given to another station of
    its network (a duplicate), a static FDB entry sending a port's MAC out of another
    port of the bridge, an address whose prefix shrank to /32."""
    found: list[Mutation] = []
    for node, state in states.items():
        for link in state.links:
            for address in link.addresses:
                if ":" in address or link.kind == "loopback":
                    continue
                ip, _, plen = address.partition("/")
                found.append(
                    Mutation(
                        "address",
                        node,
                        f"ip addr del {address} dev {link.name} && "
                        f"ip addr add {ip}/32 dev {link.name}",
                        (ref("address", node, ip), ref("link", node, link.name)),
                    )
                )
                network = ip_network(address, strict=False)
                for other, o_state in states.items():
                    if other == node:
                        continue
                    for o_link in o_state.links:
                        if any(
                            ":" not in a and ip_network(a, strict=False) == network
                            for a in o_link.addresses
                        ):
                            found.append(
                                Mutation(
                                    "address",
                                    other,
                                    f"ip addr add {ip}/{plen} dev {o_link.name} nodad",
                                    (ref("address", other, ip), ref("address", node, ip)),
                                )
                            )
        ports = [link for link in state.links if link.port is not None and link.master]
        for port in ports:
            peer = next(
                (
                    (o_node, o_link.name)
                    for o_node, o_state in states.items()
                    for o_link in o_state.links
                    if o_state is not state
                    and o_link.index == port.peer_index
                    and o_link.peer_index == port.index
                ),
                None,
            )
            wrong = next((p for p in ports if p is not port and p.master == port.master), None)
            if peer is not None and wrong is not None:
                # The MAC as the lab made it this time (veths get new ones when rebuilt).
                mac = f"$({_ip(nodes[peer[0]])} -br link show {peer[1]} | awk '{{print $3}}')"
                found.append(
                    Mutation(
                        "bridge",
                        node,
                        f"bridge fdb replace {mac} dev {wrong.name} master static sticky",
                        (ref("port", node, wrong.name),),
                    )
                )
    return found


def _ip(namespace: str) -> str:
    """`ip` for a namespace, from the shell a mutation runs in (the host's own: a path)."""
    return "ip" if namespace.startswith("/") else f"ip -n {namespace}"


def _unused_neighbour(gateway: str) -> str:
    """An address beside ``gateway`` on its network that nothing in the lab holds."""
    return str(IPv4Address(gateway) + 50)


def _iptables_drops(node: str, family: str) -> list[Mutation]:
    """A drop in each filter chain, through nft (iptables-nft) and through x_tables
    (iptables-legacy); ip6tables' for ``family`` ip6."""
    tool = "ip6tables" if family == "ip6" else "iptables"
    return [
        Mutation(
            "nf",
            node,
            f"{tool}{legacy} -A {chain} -j DROP",
            (ref("nf", node, f"{family} filter {chain}"),),
        )
        for legacy in ("", "-legacy")
        for chain in ("INPUT", "FORWARD", "OUTPUT")
    ]


def catalog6(nodes: dict[str, str]) -> list[Mutation]:
    """IPv6's own single mutations (global and ULA addresses removed or narrowed to
    /128, IPv6 routes deleted, refusing or via a gateway nobody holds, neighbour
    entries pointed at a MAC nobody has, policy rules, IPv6 forwarding off, and a
    drop, a reject and a conntrack-state drop in each hook of the ip6 family, and
    ip6tables through nft and x_tables), with what any family meets (links down,
    tc redirects, bridge ports) taken from ``catalog``."""
    found = [m for m in catalog(nodes) if m.kind in ("link", "tc", "bridge")]
    states = {node: observe.state(namespace, node) for node, namespace in nodes.items()}
    for node, state in states.items():
        for link in state.links:
            for address in link.addresses:
                ip, _, plen = address.partition("/")
                if ":" not in address or link.kind == "loopback" or ip.startswith("fe80"):
                    continue
                here = (ref("address", node, ip), ref("link", node, link.name))
                found.append(
                    Mutation("address", node, f"ip -6 addr del {address} dev {link.name}", here)
                )
                found.append(
                    Mutation(
                        "address",
                        node,
                        f"ip -6 addr del {address} dev {link.name} && "
                        f"ip -6 addr add {ip}/128 dev {link.name} nodad",
                        here,
                    )
                )
        for route in state.routes:
            if route.family != 6 or route.table != 254 or route.type != "unicast":
                continue
            if not (route.gateway or route.dst == "default"):
                continue
            this = (ref("route", node, route.dst),)
            found.append(Mutation("route", node, f"ip -6 route del {route.dst}", this))
            for kind in ("blackhole", "unreachable", "prohibit"):
                found.append(
                    Mutation("route", node, f"ip -6 route replace {kind} {route.dst}", this)
                )
            if route.gateway:
                unused = ip_address(route.gateway) + 0x50
                found.append(
                    Mutation(
                        "route",
                        node,
                        f"ip -6 route replace {route.dst} via {unused} dev {route.dev}",
                        this,
                    )
                )
        for entry in state.neighbour_entries():
            if entry.lladdr and ":" in entry.dst and not ip_address(entry.dst).is_multicast:
                found.append(
                    Mutation(
                        "neigh",
                        node,
                        f"ip -6 neigh replace {entry.dst} lladdr 02:00:00:00:00:77 "
                        f"dev {entry.dev} nud permanent",
                        (ref("neigh", node, entry.dst),),
                    )
                )
        found.append(
            Mutation(
                "rule",
                node,
                "ip -6 rule add to ::/1 prohibit pref 90",
                (ref("rule", node, "pref 90"),),
            )
        )
        found.append(
            Mutation(
                "rule",
                node,
                "ip -6 route add blackhole default table 90 && "
                "ip -6 rule add to 8000::/1 lookup 90 pref 90",
                (ref("rule", node, "pref 90"),),
            )
        )
        key = "net.ipv6.conf.all.forwarding"
        if state.sysctls.get(key) == "1":
            found.append(
                Mutation("sysctl", node, f"sysctl -qw {key}=0", (ref("sysctl", node, key),))
            )
        for hook in ("prerouting", "input", "forward", "output", "postrouting"):
            chain = (ref("nf", node, f"ip6 fz {hook}"),)
            found.append(Mutation("nf", node, _nft_table(hook, "counter drop", "ip6"), chain))
            if hook in ("input", "forward", "output"):
                found.append(Mutation("nf", node, _nft_table(hook, "counter reject", "ip6"), chain))
            found.append(
                Mutation("nf", node, _nft_table(hook, "ct state new counter drop", "ip6"), chain)
            )
        found += _iptables_drops(node, "ip6")
    return sorted(set(found), key=lambda m: m.label)
