"""The pure pieces a diagnosis is made of, over hand-written saved state."""

from __future__ import annotations

import json
from pathlib import Path

from pathtrace.analyze import links, routing
from pathtrace.analyze.causes.routes import routing_drop
from pathtrace.analyze.causes.stalled import stalled
from pathtrace.analyze.network import Network
from pathtrace.model.ruleset import parse_listing
from pathtrace.model.state import (
    BridgePort,
    FdbEntry,
    Link,
    Listener,
    NamespaceState,
    Neighbour,
    RouteEntry,
    Rule,
)
from pathtrace.model.trace import Hop, Packet, Series


def _host() -> NamespaceState:
    port = BridgePort("forwarding")
    return NamespaceState(
        "pt-host",
        "host",
        links=[
            Link(
                "br0",
                2,
                "bridge",
                True,
                True,
                1500,
                None,
                ("192.168.100.1/24",),
                "aa:00:00:00:00:01",
            ),
            Link(
                "veth-host1",
                3,
                "veth",
                True,
                True,
                1500,
                "br0",
                (),
                "aa:00:00:00:00:03",
                2,
                port,
                parent_elsewhere=True,
            ),
            Link(
                "veth-host2",
                4,
                "veth",
                True,
                True,
                1500,
                "br0",
                (),
                "aa:00:00:00:00:04",
                2,
                port,
                parent_elsewhere=True,
            ),
            Link(
                "eth0",
                5,
                "veth",
                True,
                True,
                1500,
                None,
                ("198.51.100.2/24",),
                "aa:00:00:00:00:05",
                2,
                parent_elsewhere=True,
            ),
        ],
        routes=[
            RouteEntry("default", "198.51.100.1", "eth0", None),
            RouteEntry("192.168.100.0/24", None, "br0", "192.168.100.1"),
            RouteEntry("198.51.100.0/24", None, "eth0", "198.51.100.2"),
        ],
    )


def _container(index: int, peer: int, mtu: int = 1500) -> NamespaceState:
    return NamespaceState(
        f"pt-container{index - 1}",
        f"container{index - 1}",
        links=[
            Link(
                f"veth-cont{index - 1}",
                2,
                "veth",
                True,
                True,
                mtu,
                None,
                (f"192.168.100.{index}/24",),
                f"bb:00:00:00:00:0{index}",
                peer,
                parent_elsewhere=True,
            )
        ],
    )


def test_route_get_follows_rules_then_tables() -> None:
    host = _host()
    plain = routing.route_get(host, "8.8.8.8", "192.168.100.2", "br0")
    assert (plain.kind, plain.route and plain.route.gateway) == ("unicast", "198.51.100.1")
    assert routing.route_get(host, "192.168.100.1").kind == "local"
    host.routes.append(RouteEntry("8.8.8.8/32", None, None, None, type="blackhole"))
    black = routing.route_get(host, "8.8.8.8", "192.168.100.2", "br0")
    assert (
        black.kind == "blackhole"
        and routing.delete_command(black) == "ip route del blackhole 8.8.8.8/32"
    )
    host.route_rules[:] = [
        Rule(0, "lookup", 255),
        Rule(100, "prohibit", src="192.168.100.0/24", iif="br0"),
        Rule(32766, "lookup", 254),
    ]
    ruled = routing.route_get(host, "1.1.1.1", "192.168.100.2", "br0")
    assert ruled.kind == "prohibit" and routing.delete_command(ruled) == "ip rule del pref 100"
    # The rule names an input interface: the host's own packets do not match it.
    assert routing.route_get(host, "1.1.1.1").kind == "unicast"
    host.route_rules.insert(1, Rule(50, "lookup", 100, src="192.168.100.3/32"))
    host.routes.append(RouteEntry("default", "198.51.100.9", "eth0", None, table=100))
    other = routing.route_get(host, "1.1.1.1", "192.168.100.3", "br0")
    assert other.route is not None and other.route.gateway == "198.51.100.9"
    assert "rule 50: from 192.168.100.3/32 lookup 100" in other.describe()


def test_ipv6_lookups_take_ipv6_routes_and_rules_only() -> None:
    host = _host()
    host.links[0] = Link("br0", 2, "bridge", True, True, 1500, None, ("fd00:100::1/64",))
    host.routes += [
        RouteEntry("fd00:100::/64", None, "br0", None, family=6),
        RouteEntry("default", "2001:db8::1", "eth0", None, family=6),
    ]
    v6 = routing.route_get(host, "2001:4860:4860::8888", "fd00:100::2", "br0")
    assert v6.route is not None and v6.route.gateway == "2001:db8::1"
    assert routing.route_get(host, "fd00:100::1").kind == "local"
    # An IPv4 rule never decides an IPv6 lookup, nor an IPv6 rule an IPv4 one.
    host.route_rules[:] = [
        Rule(0, "lookup", 255),
        Rule(100, "prohibit", src="192.168.100.0/24"),
        Rule(32766, "lookup", 254),
        Rule(0, "lookup", 255, family=6),
        Rule(90, "unreachable", src="fd00:100::/64", family=6),
        Rule(32766, "lookup", 254, family=6),
    ]
    refused = routing.route_get(host, "2001:4860:4860::8888", "fd00:100::2", "br0")
    assert refused.kind == "unreachable"
    assert routing.delete_command(refused) == "ip -6 rule del pref 90"
    assert routing.route_get(host, "8.8.8.8", "192.168.100.2", "br0").kind == "prohibit"
    assert routing.route_get(host, "8.8.8.8", "198.51.100.2", "eth0").kind == "unicast"
    host.routes.append(
        RouteEntry("2001:db8:dead::/48", None, None, None, type="blackhole", family=6)
    )
    black = routing.route_get(host, "2001:db8:dead::1")
    assert routing.delete_command(black) == "ip -6 route del blackhole 2001:db8:dead::/48"


def test_peers_owners_and_neighbours() -> None:
    host, c1 = _host(), _container(2, 3)
    assert links.peer([host, c1], c1, c1.links[0]) == (host, host.links[1])
    assert links.owner([host, c1], "192.168.100.2") == (c1, c1.links[0])
    c1.neighbours_after = [Neighbour("192.168.100.1", "veth-cont1", None, "INCOMPLETE").describe()]
    entry = links.neighbour(c1, "192.168.100.1", "veth-cont1", after=True)
    assert links.unresolved(entry)
    # The form bundles saved before 2026-11-28 wrote.
    old = Neighbour.parse("192.168.100.1 lladdr aa:bb:cc:dd:ee:ff dev veth-cont1 state 2")
    assert (old.dst, old.dev, old.lladdr) == ("192.168.100.1", "veth-cont1", "aa:bb:cc:dd:ee:ff")


def test_a_veth_peer_is_found_in_the_namespace_netlink_names() -> None:
    """Ifindexes repeat across namespaces: two candidates with the same index pair are
    told apart by IFLA_LINK_NETNSID and the namespace's ids; without them, none."""
    host, c1, c2 = _host(), _container(2, 3), _container(3, 3)
    twin = NamespaceState("pt-twin", "twin", links=[Link(**host.links[1].__dict__)])
    c1.links[0] = Link(**{**c1.links[0].__dict__, "peer_nsid": 7})
    assert links.peer([host, twin, c1], c1, c1.links[0]) is None  # cannot tell
    c1.nsids = {"pt-host": 7, "pt-twin": 8}
    assert links.peer([host, twin, c1], c1, c1.links[0]) == (host, host.links[1])
    # A veth whose peer is in its own namespace (no IFLA_LINK_NETNSID): only there.
    same = Link(**{**c2.links[0].__dict__, "parent_elsewhere": False})
    assert links.peer([host, c2], c2, same) is None


def test_bridge_blocks_says_which_switch() -> None:
    host = _host()
    p1, p2 = host.links[1], host.links[2]
    assert links.bridge_blocks(host, p1, p2, None) is None
    isolated = BridgePort("forwarding", isolated=True)
    a, b = (Link(**{**p.__dict__, "port": isolated}) for p in (p1, p2))
    blocked = links.bridge_blocks(host, a, b, None)
    assert blocked is not None and "isolated" in blocked.why and "isolated off" in blocked.fix
    quiet = Link(**{**p2.__dict__, "port": BridgePort("forwarding", learning=False, flood=False)})
    unknown = links.bridge_blocks(host, p1, quiet, "bb:00:00:00:00:03")
    assert unknown is not None and "no FDB entry" in unknown.why
    host.fdb = [FdbEntry.parse("bb:00:00:00:00:03 dev veth-host1 master br0 static")]
    wrong = links.bridge_blocks(host, p1, p2, "bb:00:00:00:00:03")
    assert (
        wrong is not None and wrong.fix == "bridge fdb del bb:00:00:00:00:03 dev veth-host1 master"
    )


def test_veth_mtu_against_the_peer() -> None:
    host, c1 = _host(), _container(2, 3, mtu=9000)
    big = links.veth_mtu([host, c1], c1, c1.links[0], 3028)
    assert big is not None and (big.mtu, big.peer_mtu, big.receiver) == (
        9000,
        1500,
        "host/veth-host1",
    )
    assert links.veth_mtu([host, c1], c1, c1.links[0], 1400) is None


def test_a_listener_takes_its_own_address_and_its_familys_wildcard() -> None:
    assert Listener.parse("tcp 0.0.0.0:80").takes("192.168.100.2")
    assert Listener.parse("tcp 192.168.100.2:80").takes("192.168.100.2")
    assert Listener.parse("tcp [::]:80").takes("fd00:100::2")
    assert Listener.parse("tcp [fd00:100::2]:80").takes("fd00:100::2")
    assert not Listener.parse("tcp 127.0.0.1:80").takes("192.168.100.2")
    assert not Listener.parse("tcp 0.0.0.0%lo:80").takes("192.168.100.2")  # bound to a device too
    # IPv6's wildcard takes IPv4 unless IPV6_V6ONLY, which is not read: it may.
    assert Listener.parse("tcp [::]:80").takes("192.168.100.2")
    assert not Listener.parse("tcp 0.0.0.0:80").takes("fd00:100::2")


def test_listeners_read_back_as_bundles_keep_them() -> None:
    for text in ("tcp 127.0.0.1:9000", "udp [::]:53", "tcp [fd00:100::2]:80"):
        assert Listener.parse(text).describe() == text
    assert Listener.parse("udp [::]:53") == Listener("udp", "::", 53)


def test_fdb_entries_read_back_as_bundles_keep_them() -> None:
    # Bundles keep each entry as `bridge fdb` words; they read back to the same record.
    for text, entry in (
        ("aa:bb:cc:dd:ee:01 dev veth-host1 master br0 reachable",
         FdbEntry("aa:bb:cc:dd:ee:01", "veth-host1", master="br0", state="reachable")),
        ("02:00:00:00:01:01 dev flannel.1 dst 172.30.0.2 self permanent",
         FdbEntry("02:00:00:00:01:01", "flannel.1", dst="172.30.0.2", state="permanent")),
        ("aa:bb:cc:dd:ee:02 dev veth-host2 master br0",
         FdbEntry("aa:bb:cc:dd:ee:02", "veth-host2", master="br0")),
    ):  # fmt: skip
        assert FdbEntry.parse(text) == entry
        assert FdbEntry.parse(entry.describe()) == entry
    state = NamespaceState("ns", "host", fdb=[FdbEntry.parse("aa:bb:cc:dd:ee:01 dev p master b x")])
    assert NamespaceState.from_json(state.to_json()).fdb == state.fdb
    assert state.to_json()["fdb"] == ["aa:bb:cc:dd:ee:01 dev p master b x"]


def test_a_packet_freed_by_failed_resolution_names_the_gateway_nobody_holds() -> None:
    # The answer's only hop is the kernel's NEIGH_FAILED drop on the way out: the
    # route it took and the neighbour entry it waited on explain it.
    pod = _container(3, 9)
    pod.routes = [
        RouteEntry("default", "192.168.100.51", "veth-cont2", None),
        RouteEntry("192.168.100.0/24", None, "veth-cont2", "192.168.100.3"),
    ]
    pod.neighbours_after = ["192.168.100.51 dev veth-cont2 INCOMPLETE"]
    net = Network({"pt-container2": pod, "pt-host": _host()}, None)
    packet = Packet("tcp", "192.168.100.3", "198.51.100.1", 80, 40000, 64, 60)
    drop = Hop(0, 0.0, 0.0, "container2", "veth-cont2", "drop", "", (), packet,
               drop_reason="NEIGH_FAILED")  # fmt: skip
    found = stalled(net, Series(1, "reply", [drop]), drop)
    assert found is not None
    place, finding = found
    assert place == "container2/veth-cont2" and finding.code == "neigh.failed"
    assert "neigh:container2/192.168.100.51" in finding.objects
    assert "route:container2/default" in finding.objects


def test_an_ip6_table_is_never_given_iptables_lines() -> None:
    # iptables-save lists IPv4 only: the same table and chain in ip6 is another rule,
    # and its delete command must not remove the IPv4 one.
    listing = (
        "table ip filter { # handle 1\n\tchain FORWARD { # handle 1\n"
        "\t\ttype filter hook forward priority filter; policy accept;\n"
        "\t\tip daddr 10.0.0.2 accept # handle 2\n\t}\n}\n"
        "table ip6 filter { # handle 2\n\tchain FORWARD { # handle 1\n"
        "\t\ttype filter hook forward priority filter; policy accept;\n"
        "\t\tcounter packets 0 bytes 0 drop # handle 2\n\t}\n}\n"
    )
    save = "*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -d 10.0.0.2/32 -j ACCEPT\nCOMMIT\n"
    rules = parse_listing(listing, save).rules
    six = next(r for r in rules if r.family == "ip6")
    four = next(r for r in rules if r.family == "ip")
    assert (
        six.iptables is None and six.delete_command == "nft delete rule ip6 filter FORWARD handle 2"
    )
    assert four.iptables == "-A FORWARD -d 10.0.0.2/32 -j ACCEPT"


def test_an_answer_a_namespace_sends_is_not_asked_to_be_forwarded() -> None:
    # The answer is container1's own packet (its source address, never received
    # there): that container1 does not forward IPv6 is no reason for its loss.
    example = Path(__file__).parents[2] / "captures/examples/ping6-nat66/state.json"
    states = {
        ns: NamespaceState.from_json(s)
        for ns, s in json.loads(example.read_text())["namespaces"].items()
    }
    net = Network(states, None)
    answer = Packet("tcp", "fd00:100::2", "2001:db8::1", 80, 40000, 64, 60)
    drop = Hop(0, 0.0, 0.0, "container1", "veth-cont1", "drop", "", (), answer,
               drop_reason="NOT_SPECIFIED")  # fmt: skip
    found = routing_drop(net, Series(1, "reply", [drop]), drop, "veth-cont1", "x", "wan")
    assert found is None or found[1].code != "sysctl.forwarding", found
    # The same packet arriving there from elsewhere is one container1 must forward.
    came = Hop(0, 0.0, 0.0, "container1", "veth-cont1", "receive", "", (), answer)
    forwarded = routing_drop(net, Series(1, "reply", [came, drop]), drop, "veth-cont1", "x", "wan")
    assert forwarded is not None and forwarded[1].code == "sysctl.forwarding"
