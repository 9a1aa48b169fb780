"""A fuzzer over kernel state: `python -m tests.faults.fuzz [--seed N] [--count M] [-v]`.

On a fresh reference lab each time, one mutation of the live state, made with the
plain tools (ip, bridge, sysctl, nft), then the probes a user would run. Every
mutation knows the object it changed; every probe it breaks is scored:

- named: the verdict's objects (model.cause references) name the mutated object;
- honest: the cause's code is "unknown";
- wrong: it blames something else;
- healed (of the named): the printed fix, run exactly as printed, makes the probe pass.

The catalog is built from the lab's own state (its links, addresses, routes, ARP
entries, bridge ports, nodes that forward), not from a list of known faults; a
seed picks the mutations, so a run is reproducible and a failing seed can become
a corpus entry. Topologies: the reference lab, and a routed path (routed.toml:
two routers, no NAT, no bridge). Needs root.
"""

from __future__ import annotations

import argparse
import random
import re
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, ip_address, ip_network
from pathlib import Path

from pathtrace.lab import build, topology
from pathtrace.model.cause import parse_ref, ref
from pathtrace.model.options import RunOptions
from pathtrace.model.trace import Verdict
from pathtrace.session import Run
from pathtrace.system import netns, observe

# Per topology: its description, and what a user runs on it. The lab: out through
# the NAT, across the bridge, in through the DNAT. Routed: across two routers, both
# ways, and a TCP connection.
Probe = tuple[str, str, int, str]
TOPOLOGIES: dict[str, tuple[Callable[[], str], tuple[Probe, ...]]] = {
    "lab": (
        topology.reference_text,
        (
            ("ping", "8.8.8.8", 0, "container1"),
            ("ping", "192.168.100.3", 0, "container1"),
            ("tcp", "198.51.100.2", 8080, "wan"),
        ),
    ),
    "routed": (
        lambda: (Path(__file__).parent / "routed.toml").read_text(),
        (
            ("ping", "10.2.0.2", 0, "client"),
            ("tcp", "10.2.0.2", 80, "client"),
            ("ping", "10.1.0.2", 0, "server"),
        ),
    ),
}


@dataclass(frozen=True)
class Mutation:
    kind: str  # link, mtu, address, route, rule, sysctl, neigh, bridge, vlan, nf, tc
    node: str
    command: str  # run in the node's namespace (sh)
    # The objects it changed, as verdicts name them (model.cause refs): naming any
    # of them is naming the mutation (an address removed: the address, or its link).
    objects: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"{self.kind} {self.node}: {self.command}"


@dataclass(frozen=True)
class Scored:
    mutation: Mutation
    probe: tuple[str, str, int, str]
    verdict: Verdict
    mark: str  # named, honest, wrong
    healed: bool | None  # None: not named, or no command to run


def _nft_table(hook: str, rule: str) -> str:
    return (
        f"nft add table ip fz && nft add chain ip fz {hook} "
        f"'{{ type filter hook {hook} priority 0; }}' && nft add rule ip fz {hook} {rule}"
    )


def catalog(lab: topology.Topology) -> list[Mutation]:
    """Single mutations of the lab as it is: each link, address, route, neighbour,
    bridge port, forwarding switch and ARP switch, policy rules in front of the
    routes, tc filters, and a drop, a reject and a conntrack-state drop in each
    netfilter hook."""
    found: list[Mutation] = []
    for node in lab.nodes:
        state = observe.state(lab.namespace(node), node)
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
    found += _across_nodes(lab)
    # Netlink lists neighbours (and more) in no fixed order: a seed must pick the same.
    return sorted(set(found), key=lambda m: m.label)


def _across_nodes(lab: topology.Topology) -> list[Mutation]:
    """Mutations that involve two nodes: an address also given to another station of
    its network (a duplicate), a static FDB entry sending a port's MAC out of another
    port of the bridge, an address whose prefix shrank to /32."""
    states = {node: observe.state(lab.namespace(node), node) for node in lab.nodes}
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
                mac = (
                    f"$(ip -n {lab.namespace(peer[0])} -br link show {peer[1]} "
                    "| awk '{print $3}')"
                )
                found.append(
                    Mutation(
                        "bridge",
                        node,
                        f"bridge fdb replace {mac} dev {wrong.name} master static sticky",
                        (ref("port", node, wrong.name),),
                    )
                )
    return found


def _unused_neighbour(gateway: str) -> str:
    """An address beside ``gateway`` on its network that nothing in the lab holds."""
    return str(IPv4Address(gateway) + 50)


def _run(lab: topology.Topology, text: str, probe: tuple[str, str, int, str]) -> Verdict:
    kind, target, port, source = probe
    options = RunOptions(
        kind,  # type: ignore[arg-type]
        IPv4Address(target),
        port,
        source=source,
        count=1,
        timeout=1.0,
    )
    return Run(options, lab, topology_text=text).execute().probes[0].verdict


def same_object(said: str, changed: str) -> bool:
    """A verdict's object reference names the changed one: the same kind and node, and
    the same name, where a route is named by any address or network it covers, an
    address with or without its prefix, and a chain by any of its rules."""
    kind, node, name = parse_ref(said)
    c_kind, c_node, c_name = parse_ref(changed)
    if (kind, node) != (c_kind, c_node):
        return False
    if kind == "route":
        changed_net = ip_network("0.0.0.0/0" if c_name == "default" else c_name, strict=False)
        said_net = ip_network("0.0.0.0/0" if name == "default" else name, strict=False)
        return said_net.version == changed_net.version and (
            said_net.subnet_of(changed_net) or changed_net.subnet_of(said_net)  # type: ignore[arg-type]
        )
    if kind == "address":
        return name.split("/")[0] == c_name.split("/")[0]
    if kind == "nf":
        return name == c_name or name.startswith((f"{c_name} handle ", f"{c_name} rule "))
    return name == c_name


def _named(verdict: Verdict, mutation: Mutation) -> str:
    if any(same_object(o, c) for o in verdict.objects for c in mutation.objects):
        return "named"
    if verdict.code in (None, "unknown"):
        return "honest"
    return "wrong"


# The command a fix starts with, as printed: "ip netns exec NS ..." up to the first
# ", " or " (or `" that begins prose.
_COMMAND = re.compile(r"^(ip netns exec \S+ [^,(]+?)(?:,| \(or `|$)")


def fuzz(
    seed: int, count: int, verbose: bool = False, on: str = "lab", only: str = ""
) -> list[Scored]:
    """``only``: mutations whose label holds this text (to reproduce one)."""
    rng = random.Random(seed)
    prefix = f"ptz{uuid.uuid4().hex[:5]}-"
    describe, probes = TOPOLOGIES[on]
    text = describe().replace('prefix = "pt-"', f'prefix = "{prefix}"', 1)
    lab = topology.parse(text)
    build.up(lab, text)
    try:
        mutations = catalog(lab)
    finally:
        build.down(None, prefix=prefix)
    mutations = [m for m in mutations if only in m.label]
    chosen = rng.sample(mutations, min(count, len(mutations)))
    scored: list[Scored] = []
    for mutation in chosen:
        build.down(None, prefix=prefix)  # fresh: converging leaves what a mutation added
        build.up(lab, text)
        try:
            made = netns.run(
                lab.namespace(mutation.node), ["sh", "-ec", mutation.command], check=False
            )
            if made.returncode != 0:  # this kernel or these tools cannot make it: said
                print(f"not made: {mutation.label}: {made.stderr.strip()}", file=sys.stderr)
                continue
            for probe in probes:
                verdict = _run(lab, text, probe)
                if verdict.outcome in ("answered", "delivered"):
                    continue
                mark = _named(verdict, mutation)
                healed: bool | None = None
                command = _COMMAND.match(verdict.fix or "")
                if mark == "named" and command is not None:
                    subprocess.run(["sh", "-c", command.group(1)], capture_output=True, timeout=20)
                    healed = _run(lab, text, probe).outcome in ("answered", "delivered")
                    build.down(None, prefix=prefix)  # afresh, and make the mutation again
                    build.up(lab, text)
                    netns.run(lab.namespace(mutation.node), ["sh", "-ec", mutation.command])
                elif mark == "named":
                    healed = False
                scored.append(Scored(mutation, probe, verdict, mark, healed))
                if verbose:
                    print(
                        f"{mark:6} healed={healed} | {mutation.label} | {probe[0]} {probe[1]} "
                        f"from {probe[3]}\n  {verdict.outcome} {verdict.where}: {verdict.cause}"
                        f"\n  code: {verdict.code} {verdict.objects}"
                        f"\n  fix: {verdict.fix}",
                        file=sys.stderr,
                    )
        finally:
            build.down(None, prefix=prefix)
    return scored


def summary(scored: list[Scored]) -> str:
    total = len(scored)
    marks = {m: sum(s.mark == m for s in scored) for m in ("named", "honest", "wrong")}
    named = [s for s in scored if s.mark == "named"]
    healed = sum(bool(s.healed) for s in named)
    kinds = sorted({s.mutation.kind for s in scored})
    lines = [f"{'kind':8} {'broken':>6} {'named':>6} {'honest':>6} {'wrong':>6} {'healed':>6}"]
    for kind in kinds:
        these = [s for s in scored if s.mutation.kind == kind]
        lines.append(
            f"{kind:8} {len(these):6} {sum(s.mark == 'named' for s in these):6} "
            f"{sum(s.mark == 'honest' for s in these):6} {sum(s.mark == 'wrong' for s in these):6} "
            f"{sum(bool(s.healed) for s in these):6}"
        )
    lines.append(
        f"{'total':8} {total:6} {marks['named']:6} {marks['honest']:6} {marks['wrong']:6} "
        f"{healed:6}   (named {marks['named'] / max(total, 1):.0%}, "
        f"healed {healed / max(len(named), 1):.0%} of named)"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.faults.fuzz")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--count", type=int, default=20, help="mutations to make")
    parser.add_argument("-v", "--verbose", action="store_true", help="each broken probe")
    parser.add_argument("--topology", choices=sorted(TOPOLOGIES), default="lab")
    parser.add_argument("--only", default="", metavar="TEXT", help="mutations whose label has it")
    args = parser.parse_args(argv)
    scored = fuzz(args.seed, args.count, args.verbose, args.topology, args.only)
    print(f"seed {args.seed}, {args.count} mutations of the {args.topology} topology:")
    print(summary(scored))
    return 1 if any(s.mark == "wrong" for s in scored) else 0


if __name__ == "__main__":
    sys.exit(main())
