"""`lab break SCENARIO`: faults to teach and to test with; `lab fix` undoes any of them.

Each scenario changes the reference lab the way a real host goes wrong. The
fix is `lab up`: it converges the lab back to its description, so it removes
rules a scenario added, restores what one removed, and needs no memory of
which scenario ran.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pathtrace.errors import UsageError
from pathtrace.lab import firewall, lock, record
from pathtrace.lab.topology import Topology
from pathtrace.system import netns, privileges


@dataclass(frozen=True)
class Scenario:
    name: str
    explains: str  # what breaks, in the user's terms
    try_it: str  # a run that shows it
    apply: Callable[[Topology], None]


def _nft(topo: Topology, node: str, script: str) -> None:
    firewall.apply(topo.namespace(node), script)


def _delete_rule(
    topo: Topology, node: str, table: str, chain: str, name: str, family: str = "ip"
) -> None:
    ns = topo.namespace(node)
    rule = firewall.read(ns).rule_named(table, chain, name, family)
    if rule is None:
        raise UsageError(f"the lab has no rule {name} in {node}: run `pathtrace lab fix` first")
    netns.run(ns, ["nft", "delete", "rule", family, table, chain, "handle", str(rule.handle)])


def _no_masquerade(topo: Topology) -> None:
    _delete_rule(topo, "host", "nat", "POSTROUTING", "masquerade")


def _forward_drop(topo: Topology) -> None:
    _nft(
        topo,
        "host",
        "add rule ip filter FORWARD ip saddr 192.168.100.0/24 drop "
        'comment "pathtrace-break forward-drop"\n',
    )


def _ip_forward_off(topo: Topology) -> None:
    netns.write_sysctl(topo.namespace("host"), "net.ipv4.ip_forward", "0")


def _no_default_route(topo: Topology) -> None:
    netns.run(topo.namespace("container1"), ["ip", "route", "del", "default"])


def _port_down(topo: Topology) -> None:
    netns.run(topo.namespace("host"), ["ip", "link", "set", "veth-host1", "down"])


def _dnat_without_forward_accept(topo: Topology) -> None:
    # A host whose FORWARD policy is drop (as Docker sets it) and that lets the
    # containers out, but lost the accept for the published port.
    _delete_rule(topo, "host", "filter", "FORWARD", "forward-dnat-8080")
    _nft(
        topo,
        "host",
        "add rule ip filter FORWARD ct state established,related accept "
        'comment "pathtrace-break established"\n'
        'add rule ip filter FORWARD iifname "br0" accept '
        'comment "pathtrace-break containers-out"\n'
        "chain ip filter FORWARD { policy drop; }\n",
    )


def _small_mtu_with_df(topo: Topology) -> None:
    for node in ("host", "wan"):
        netns.run(topo.namespace(node), ["ip", "link", "set", "eth0", "mtu", "1280"])


def _ttl_expired(topo: Topology) -> None:
    _nft(
        topo,
        "host",
        "table ip pathtrace_break {\n"
        "  chain PREROUTING { type filter hook prerouting priority -150; "
        'ip saddr 192.168.100.0/24 ip ttl set 1 comment "pathtrace-break ttl"; }\n'
        "}\n",
    )


def _udp_port_unreachable(topo: Topology) -> None:
    # wan answers udp only where something listens; this makes sure nothing
    # does on 53 by refusing it in wan's own input, as an absent service would.
    _nft(
        topo,
        "wan",
        "table ip pathtrace_break {\n"
        "  chain INPUT { type filter hook input priority 0; "
        "udp dport 53 reject with icmp type port-unreachable "
        'comment "pathtrace-break udp-53"; }\n}\n',
    )


def _reject_rule(topo: Topology) -> None:
    _nft(
        topo,
        "host",
        "add rule ip filter FORWARD ip daddr 8.8.8.8 reject with icmp type "
        'admin-prohibited comment "pathtrace-break reject"\n',
    )


# -- IPv6 --


def _no_masquerade6(topo: Topology) -> None:
    _delete_rule(topo, "host", "nat", "POSTROUTING", "masquerade6", "ip6")


def _ipv6_forwarding_off(topo: Topology) -> None:
    netns.write_sysctl(topo.namespace("host"), "net.ipv6.conf.all.forwarding", "0")


def _forward_drop6(topo: Topology) -> None:
    _nft(
        topo,
        "host",
        "table ip6 filter {\n"
        "  chain FORWARD { type filter hook forward priority 0; "
        'ip6 saddr fd00:100::/64 drop comment "pathtrace-break forward-drop6"; }\n}\n',
    )


def _no_default_route6(topo: Topology) -> None:
    netns.run(topo.namespace("container1"), ["ip", "-6", "route", "del", "default"])


def _packet_too_big_blocked(topo: Topology) -> None:
    # The uplink's MTU is 1280, and host's own output drops the ICMPv6 that says
    # so: a path MTU black hole.
    _small_mtu_with_df(topo)
    _nft(
        topo,
        "host",
        "table ip6 pathtrace_break {\n"
        "  chain OUTPUT { type filter hook output priority 0; "
        'icmpv6 type packet-too-big drop comment "pathtrace-break ptb"; }\n}\n',
    )


def _neighbour_solicitations_dropped(topo: Topology) -> None:
    # container1 stops answering neighbour discovery: a rule in its own input
    # drops the solicitations (as an over-eager ICMPv6 filter does).
    _nft(
        topo,
        "container1",
        "table ip6 pathtrace_break {\n"
        "  chain INPUT { type filter hook input priority 0; "
        'icmpv6 type nd-neighbor-solicit drop comment "pathtrace-break nd"; }\n}\n',
    )
    for node in ("container2", "host"):  # what they knew of container1 is forgotten
        netns.run(topo.namespace(node), ["ip", "-6", "neigh", "flush", "to", "fd00:100::2"])


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in [
        Scenario(
            "no-masquerade",
            "host forgets the MASQUERADE rule: requests reach wan with "
            "their private source, and wan has no route back",
            "run ping 8.8.8.8",
            _no_masquerade,
        ),
        Scenario(
            "forward-drop",
            "host's FORWARD chain drops what the containers send out",
            "run ping 8.8.8.8",
            _forward_drop,
        ),
        Scenario(
            "ip-forward-off",
            "host stops forwarding (net.ipv4.ip_forward=0)",
            "run ping 8.8.8.8",
            _ip_forward_off,
        ),
        Scenario(
            "no-default-route",
            "container1 loses its default route",
            "run ping 8.8.8.8",
            _no_default_route,
        ),
        Scenario(
            "port-down",
            "bridge port veth-host1 is down: container1 is cut off",
            "run ping 192.168.100.3",
            _port_down,
        ),
        Scenario(
            "dnat-without-forward-accept",
            "FORWARD policy drop without the accept for the "
            "published port: DNAT happens, then FORWARD drops it",
            "run tcp 198.51.100.2:8080 --from wan",
            _dnat_without_forward_accept,
        ),
        Scenario(
            "small-mtu-with-df",
            "the uplink's MTU is 1280: big packets with DF set cannot pass",
            "run ping 8.8.8.8 --size 1400 --df",
            _small_mtu_with_df,
        ),
        Scenario(
            "ttl-expired",
            "a rule on host sets the TTL of the containers' packets to 1",
            "run ping 8.8.8.8",
            _ttl_expired,
        ),
        Scenario(
            "udp-port-unreachable",
            "nothing answers udp port 53 in wan",
            "run udp 8.8.8.8:53",
            _udp_port_unreachable,
        ),
        Scenario(
            "reject-rule",
            "host rejects traffic to 8.8.8.8 with ICMP admin-prohibited",
            "run ping 8.8.8.8",
            _reject_rule,
        ),
        Scenario(
            "no-masquerade6",
            "host forgets the ip6 masquerade (NAT66): requests reach wan from "
            "fd00:100::/64, and wan has no route back",
            "run ping 2001:4860:4860::8888",
            _no_masquerade6,
        ),
        Scenario(
            "ipv6-forwarding-off",
            "host stops forwarding IPv6 (net.ipv6.conf.all.forwarding=0)",
            "run ping 2001:4860:4860::8888",
            _ipv6_forwarding_off,
        ),
        Scenario(
            "forward-drop6",
            "an ip6 FORWARD chain on host drops what the containers send out",
            "run ping 2001:4860:4860::8888",
            _forward_drop6,
        ),
        Scenario(
            "no-default-route6",
            "container1 loses its IPv6 default route",
            "run ping 2001:4860:4860::8888",
            _no_default_route6,
        ),
        Scenario(
            "ptb-blocked",
            "the uplink's MTU is 1280 and host drops its own ICMPv6 packet too big: "
            "a path MTU black hole",
            "run ping 2001:4860:4860::8888 --size 1400",
            _packet_too_big_blocked,
        ),
        Scenario(
            "nd-unanswered",
            "container1 drops neighbour solicitations: nobody on its link can learn its MAC",
            "run ping fd00:100::2 --from container2",
            _neighbour_solicitations_dropped,
        ),
    ]
}


def apply(topo: Topology, name: str) -> Scenario:
    scenario = SCENARIOS.get(name)
    if scenario is None:
        raise UsageError(f"unknown scenario {name!r}: see `pathtrace lab break --list`")
    if not {"host", "container1", "wan"} <= set(topo.nodes):
        raise UsageError("scenarios are written for the reference lab")
    privileges.require("CAP_SYS_ADMIN", "CAP_NET_ADMIN", doing="pathtrace lab break")
    with lock.held(topo.prefix, exclusive=True, doing="lab break"):
        missing = [n for n in topo.nodes if not netns.exists(topo.namespace(n))]
        if missing:
            raise UsageError("the lab is not up: run `pathtrace lab up` first")
        record.require_marked([topo.namespace(n) for n in topo.nodes], topo.prefix)
        scenario.apply(topo)
    return scenario
