"""The gateway a missing route's fix goes via: the one traced namespace on a
shared subnet that holds the destination or forwards and reaches it."""

from __future__ import annotations

from pathtrace.analyze.network import Network
from pathtrace.model.state import Link, NamespaceState, RouteEntry


def _node(
    name: str, addresses: dict[str, str], routes: list[RouteEntry], forwards: bool
) -> NamespaceState:
    links = [
        Link(ifname, i + 2, "veth", True, True, 1500, None, (address,), f"aa:00:00:00:0{i}:00")
        for i, (ifname, address) in enumerate(addresses.items())
    ]
    state = NamespaceState(f"ns-{name}", name, links=links, routes=routes)
    state.sysctls = {"net.ipv4.ip_forward": "1" if forwards else "0"}
    return state


def _routed(*, r3: bool = False, r2_back_via_r1: bool = False) -> Network:
    r1 = _node("r1", {"eth0": "10.1.0.1/24", "eth1": "10.12.0.1/24"}, [], True)
    r2_routes = [RouteEntry("10.2.0.0/24", None, "eth1", "10.2.0.1")]
    if r2_back_via_r1:
        r2_routes = [RouteEntry("10.2.0.0/24", "10.12.0.1", "eth0", None)]
        r2 = _node("r2", {"eth0": "10.12.0.2/24"}, r2_routes, True)
    else:
        r2 = _node("r2", {"eth0": "10.12.0.2/24", "eth1": "10.2.0.1/24"}, r2_routes, True)
    server = _node("server", {"eth0": "10.2.0.2/24"}, [], False)
    nodes = [r1, r2, server]
    if r3:  # a second router on the same subnet that also reaches 10.2.0.0/24
        nodes.append(
            _node(
                "r3",
                {"eth0": "10.12.0.3/24"},
                [RouteEntry("10.2.0.0/24", "10.12.0.2", "eth0", None)],
                True,
            )
        )
    return Network({s.namespace: s for s in nodes}, None)


def test_the_router_that_reaches_the_network() -> None:
    assert _routed().next_hop("r1", "10.2.0.2") == ("10.12.0.2", "10.2.0.0/24")


def test_the_owner_one_router_further_is_reached_through_that_router() -> None:
    net = _routed()
    assert net.next_hop("r1", "10.2.0.2") == ("10.12.0.2", "10.2.0.0/24")
    assert net.route_to("r2", "10.2.0.2") == "10.2.0.0/24 dev eth1"


def test_two_candidates_are_no_answer() -> None:
    assert _routed(r3=True).next_hop("r1", "10.2.0.2") is None


def test_a_router_whose_way_goes_back_through_the_node_is_no_next_hop() -> None:
    assert _routed(r2_back_via_r1=True).next_hop("r1", "10.2.0.2") is None


def test_nothing_on_a_shared_subnet_reaches_it() -> None:
    assert _routed().next_hop("r1", "10.9.0.1") is None


def test_a_route_to_an_own_network_is_a_connected_one() -> None:
    net = _routed()
    assert net.next_hop("r1", "10.12.0.2") is None  # no gateway for its own network
    assert net.route_to("r1", "10.12.0.2") == "10.12.0.0/24 dev eth1"
    assert net.route_to("r1", "10.2.0.2") == "10.2.0.0/24 via 10.12.0.2"
    assert net.route_to("r1", "10.9.0.1") is None
