"""A link that lost its address, on the saved reference lab's state: the fix gives
it back where the other stations on its link say which address it was (their
neighbour tables, else the one gateway they route through on it that nobody
holds, said as an assumption); where they say nothing, no command is made up."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from pathtrace.analyze.causes.routes import no_route
from pathtrace.analyze.network import Network
from pathtrace.model.state import NamespaceState

EXAMPLE = Path(__file__).parents[2] / "captures/examples/ping-answered/state.json"


def _states() -> dict[str, NamespaceState]:
    saved = json.loads(EXAMPLE.read_text())["namespaces"]
    return {ns: NamespaceState.from_json(data) for ns, data in saved.items()}


def _without_address(states: dict[str, NamespaceState], node: str, link: str) -> NamespaceState:
    """``node`` after `ip addr del` of ``link``'s IPv4 address: its routes through it gone."""
    ns, state = next((ns, s) for ns, s in states.items() if s.node == node)
    links = [
        replace(k, addresses=[a for a in k.addresses if ":" in a]) if k.name == link else k
        for k in state.links
    ]
    routes = [r for r in state.routes if not (r.family == 4 and r.dev == link)]
    states[ns] = replace(state, links=links, routes=routes)
    return states[ns]


def _forget_neighbours(states: dict[str, NamespaceState]) -> None:
    for ns, state in states.items():
        states[ns] = replace(state, neighbours=[], neighbours_after=[])


def test_the_neighbour_tables_say_which_address_it_was() -> None:
    states = _states()
    wan = _without_address(states, "wan", "eth0")
    found = no_route(Network(states, None), wan, "198.51.100.2")
    assert found.fix is not None and found.fix.endswith("ip addr add 198.51.100.1/24 dev eth0")
    assert "assumes" not in found.cause  # host's table gives eth0's MAC that address


def test_the_gateway_nobody_holds_is_the_address_assumed_back() -> None:
    states = _states()
    _forget_neighbours(states)
    wan = _without_address(states, "wan", "eth0")
    found = no_route(Network(states, None), wan, "198.51.100.2")
    assert found.code == "link.no_address", found
    assert found.fix is not None and found.fix.endswith("ip addr add 198.51.100.1/24 dev eth0")
    assert "the fix below assumes eth0 held 198.51.100.1: host's route default via " in found.cause


def test_a_gateway_someone_holds_is_not_assumed() -> None:
    states = _states()
    _forget_neighbours(states)
    wan = _without_address(states, "wan", "eth0")
    # host routes through itself: no address nobody holds, nothing to assume.
    ns, host = next((ns, s) for ns, s in states.items() if s.node == "host")
    states[ns] = replace(
        host,
        routes=[
            replace(r, gateway="198.51.100.2") if r.dst == "default" else r for r in host.routes
        ],
    )
    found = no_route(Network(states, None), wan, "198.51.100.2")
    assert found.fix is not None and "ip addr add" not in found.fix, found.fix
    assert "assumes" not in found.cause
