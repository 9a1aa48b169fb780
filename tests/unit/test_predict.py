"""The predicted path over a real saved state (the reference lab's, from an example
bundle), healthy and with single changes made to the state: each change must stop
the prediction where the kernel would, with the cause that names it."""

from __future__ import annotations

import json
from dataclasses import replace
from ipaddress import ip_address
from pathlib import Path

import pytest

from pathtrace.analyze import nfmatch
from pathtrace.analyze.network import Network
from pathtrace.analyze.predict import predict
from pathtrace.analyze.probes import build_probes
from pathtrace.analyze.proof import apply_fix, prove
from pathtrace.analyze.verdict import Judge
from pathtrace.analyze.weigh import weigh
from pathtrace.model.options import RunOptions
from pathtrace.model.prediction import Prediction
from pathtrace.model.result import Setting
from pathtrace.model.ruleset import parse_listing, priority
from pathtrace.model.state import BridgePort, NamespaceState, RouteEntry, TcFilter
from pathtrace.model.trace import Packet, Verdict

EXAMPLE = Path(__file__).parents[2] / "captures/examples/ping-answered/state.json"
PING = Packet("icmp", "192.168.100.2", "8.8.8.8", 7, 1, 64, 84)


def _states() -> dict[str, NamespaceState]:
    saved = json.loads(EXAMPLE.read_text())["namespaces"]
    return {ns: NamespaceState.from_json(data) for ns, data in saved.items()}


def _node(states: dict[str, NamespaceState], node: str) -> NamespaceState:
    return next(s for s in states.values() if s.node == node)


def _predict(states: dict[str, NamespaceState], packet: Packet = PING) -> list[Prediction]:
    return predict(Network(states, None), "container1", packet)


def _stop(predictions: list[Prediction]) -> Prediction:
    stopped = [p for p in predictions if p.outcome != "delivered"]
    assert stopped, [p.describe() for p in predictions]
    return stopped[0]


def test_the_healthy_lab_is_predicted_there_and_back_through_the_masquerade() -> None:
    request, reply = _predict(_states())
    assert (request.outcome, request.node) == ("delivered", "wan")
    assert (reply.outcome, reply.node) == ("delivered", "container1")
    translated = [s.text for s in request.steps if s.action == "translate"]
    assert translated and "192.168.100.2 -> 198.51.100.2" in translated[0]
    assert any("un-SNAT" in s.text for s in reply.steps)


def test_forwarding_off_names_the_global_switch_or_the_interface_s() -> None:
    states = _states()
    host = _node(states, "host")
    for key in list(host.sysctls):
        if key.endswith(".forwarding") or key == "net.ipv4.ip_forward":
            host.sysctls[key] = "0"
    stop = _stop(_predict(states))
    assert (stop.node, stop.code) == ("host", "sysctl.forwarding")
    assert stop.objects == ("sysctl:host/net.ipv4.ip_forward",)
    states = _states()
    _node(states, "host").sysctls["net.ipv4.conf.br0.forwarding"] = "0"
    stop = _stop(_predict(states))
    assert stop.objects == ("sysctl:host/net.ipv4.conf.br0.forwarding",)


def test_a_drop_rule_that_matches_stops_it_and_one_that_does_not_is_passed() -> None:
    states = _states()
    host = _node(states, "host")
    drop = (
        "table ip t { # handle 90\n chain f { # handle 1\n"
        "  type filter hook forward priority filter; policy accept;\n"
        "  ip daddr 8.8.4.4 drop # handle 2\n"
        '  iifname "br0" icmp type echo-request drop # handle 3\n'
        " }\n}\n"
    )
    host.ruleset += drop
    stop = _stop(_predict(states))
    assert (stop.node, stop.code, stop.objects) == ("host", "nf.drop", ("nf:host/ip t f handle 3",))


def test_the_answer_dropped_by_a_rule_for_new_flows_only_is_not_dropped() -> None:
    states = _states()
    host = _node(states, "host")
    host.ruleset += (
        "table ip t { # handle 90\n chain f { # handle 1\n"
        "  type filter hook forward priority filter; policy drop;\n"
        '  ct state established accept # handle 2\n  iifname "br0" accept # handle 3\n'
        " }\n}\n"
    )
    request, reply = _predict(states)
    assert reply.outcome == "delivered", reply.describe()


def test_a_drop_policy_that_the_answer_meets_stops_the_reply() -> None:
    states = _states()
    host = _node(states, "host")
    host.ruleset += (
        "table ip t { # handle 90\n chain f { # handle 1\n"
        "  type filter hook forward priority filter; policy drop;\n"
        '  iifname "br0" accept # handle 3\n }\n}\n'
    )
    request, reply = _predict(states)
    assert request.outcome == "delivered"
    assert (reply.outcome, reply.node, reply.code) == ("stopped", "host", "nf.policy")


def test_a_rule_whose_match_is_not_modelled_is_listed_as_unknown_not_obeyed() -> None:
    states = _states()
    host = _node(states, "host")
    host.ruleset += (
        "table ip t { # handle 90\n chain f { # handle 1\n"
        "  type filter hook forward priority filter; policy accept;\n"
        "  ip saddr @blocked drop # handle 2\n }\n}\n"
    )
    request, _ = _predict(states)
    assert request.outcome == "delivered"
    assert any("@blocked" in u for u in request.unknowns)


def test_a_blackhole_route_and_a_down_link_and_a_port_not_forwarding() -> None:
    states = _states()
    container = _node(states, "container1")
    container.links = [
        replace(lk, up=False) if lk.name == "veth-cont1" else lk for lk in container.links
    ]
    stop = _stop(_predict(states))
    assert (stop.node, stop.code) == ("container1", "link.down")

    states = _states()
    host = _node(states, "host")
    host.links = [
        replace(lk, port=BridgePort("disabled")) if lk.name == "veth-host1" else lk
        for lk in host.links
    ]
    stop = _stop(_predict(states))
    assert (stop.node, stop.code, stop.objects) == (
        "host",
        "bridge.port_state",
        ("port:host/veth-host1",),
    )


def test_strict_reverse_path_filtering_needs_the_way_back_on_the_same_interface() -> None:
    states = _states()
    host = _node(states, "host")
    host.sysctls["net.ipv4.conf.br0.rp_filter"] = "1"
    assert _predict(states)[0].outcome == "delivered"  # 192.168.100.0/24 is on br0
    host.routes = [r for r in host.routes if not r.dst.startswith("192.168.100.")]
    stop = _stop(_predict(states))
    assert (stop.node, stop.code) == ("host", "sysctl.rp_filter")


def test_larger_than_the_mtu_is_fragmented_unless_df_and_refused_by_a_smaller_peer() -> None:
    big = replace(PING, length=1400)
    states = _states()
    container = _node(states, "container1")
    container.links = [
        replace(lk, mtu=1300) if lk.name == "veth-cont1" else lk for lk in container.links
    ]
    assert _predict(states, big)[0].outcome == "delivered"
    stop = _stop(predict(Network(states, None), "container1", big, dont_fragment=True))
    assert (stop.node, stop.code) == ("container1", "source.too_big")  # its own stack refuses
    states = _states()
    host = _node(states, "host")
    host.links = [replace(lk, mtu=1300) if lk.name == "eth0" else lk for lk in host.links]
    stop = _stop(predict(Network(states, None), "container1", big, dont_fragment=True))
    assert (stop.node, stop.code, stop.objects) == ("host", "link.mtu", ("link:host/eth0",))


@pytest.mark.parametrize(
    ("text", "packet", "expected"),
    [
        ("ip saddr 10.0.0.0/8 drop", nfmatch.Packet(4, "10.1.2.3", "8.8.8.8", "icmp"), True),
        ("ip saddr != 10.0.0.0/8 drop", nfmatch.Packet(4, "10.1.2.3", "8.8.8.8", "icmp"), False),
        (
            'oifname "veth*" accept',
            nfmatch.Packet(4, "1.1.1.1", "2.2.2.2", "icmp", oif="veth1"),
            True,
        ),
        (
            "tcp dport { 80, 443 } drop",
            nfmatch.Packet(4, "1.1.1.1", "2.2.2.2", "tcp", 5, 443),
            True,
        ),
        ("tcp dport 80-90 drop", nfmatch.Packet(4, "1.1.1.1", "2.2.2.2", "udp", 5, 85), False),
        ("meta l4proto icmp drop", nfmatch.Packet(4, "1.1.1.1", "2.2.2.2", "icmp"), True),
        ("ip6 daddr fd00::/8 drop", nfmatch.Packet(4, "1.1.1.1", "2.2.2.2", "icmp"), False),
        (
            "ct state established,related accept",
            nfmatch.Packet(4, "1.1.1.1", "2.2.2.2", "icmp"),
            False,
        ),
        ("ip dscp cs1 drop", nfmatch.Packet(4, "1.1.1.1", "2.2.2.2", "icmp"), None),
        (
            "ip dscp cs1 ip saddr 9.9.9.9 drop",
            nfmatch.Packet(4, "1.1.1.1", "2.2.2.2", "icmp"),
            False,
        ),
        ("drop", nfmatch.Packet(0, "1.1.1.1", "2.2.2.2", "arp"), True),
        ("ip saddr 1.1.1.1 drop", nfmatch.Packet(0, "1.1.1.1", "2.2.2.2", "arp"), False),
    ],
)
def test_rule_matches(text: str, packet: nfmatch.Packet, expected: bool | None) -> None:
    assert nfmatch.evaluate(text, packet)[0] is expected


def test_rule_statements() -> None:
    packet = nfmatch.Packet(4, "1.1.1.1", "2.2.2.2", "tcp", 5, 80)
    does = nfmatch.evaluate("tcp dport 80 counter dnat to 192.168.100.2:8080", packet)[1]
    assert (does.nat, does.target, does.port) == ("dnat", "192.168.100.2", 8080)
    assert nfmatch.evaluate("notrack", packet)[1].notrack
    assert nfmatch.evaluate("meta mark set 0x2a", packet)[1].mark == 42
    assert nfmatch.evaluate("jump CNI-abc", packet)[1].target == "CNI-abc"
    assert nfmatch.evaluate("reject with icmp type host-prohibited", packet)[1].verdict == "reject"


def test_chain_priorities_are_read_by_name_and_number() -> None:
    assert priority("filter") == 0 and priority("mangle - 5") == -155 and priority("-300") == -300
    assert priority("filter", "bridge") == -200
    listing = (
        "table ip nat { # handle 1\n chain POSTROUTING { # handle 2\n"
        "  type nat hook postrouting priority srcnat; policy accept;\n }\n}\n"
    )
    chain = parse_listing(listing).chains[0]
    assert (chain.type, chain.hook, chain.priority) == ("nat", "postrouting", 100)


def _blackholed() -> tuple[dict[str, NamespaceState], Verdict]:
    states = _states()
    host = _node(states, "host")
    host.routes.append(RouteEntry("8.8.8.8/32", None, None, None, type="blackhole"))
    predicted = _predict(states)
    verdict = Verdict(
        "dropped",
        "dropped in host/br0",
        "host/br0",
        code="route.blackhole",
        objects=["route:host/8.8.8.8/32"],
        predicted=predicted,
    )
    return states, verdict


def _prove(
    states: dict[str, NamespaceState], verdict: Verdict, fix: str
) -> tuple[str | None, bool]:
    net = Network(states, None)
    verdict = replace(verdict, fix=fix)
    changed = apply_fix(net, fix)
    after = predict(Network(changed, None), "container1", PING) if changed else None
    return prove(verdict, after)


def test_a_fix_that_heals_the_state_is_proven_and_one_that_does_not_is_withdrawn() -> None:
    states, verdict = _blackholed()
    assert verdict.predicted[0].code == "route.blackhole"
    run = Network(states, None).run_in("host")
    said, withdraw = _prove(states, verdict, f"{run}ip route del blackhole 8.8.8.8/32")
    assert said is not None and said.startswith("proven") and not withdraw
    said, withdraw = _prove(states, verdict, f"{run}ip route del blackhole 8.8.4.4/32")
    assert withdraw and said is not None and "not printed" in said
    # Words, not a command: nothing is claimed either way.
    assert _prove(states, verdict, "route 8.8.8.8 elsewhere") == (None, False)


def test_fix_commands_change_the_state_as_the_kernel_would() -> None:
    states = _states()
    net = Network(states, None)
    run = net.run_in("host")
    changed = apply_fix(net, f"{run}sysctl -w net.ipv4.ip_forward=0")
    assert changed is not None
    host = next(s for s in changed.values() if s.node == "host")
    assert host.sysctls["net.ipv4.conf.br0.forwarding"] == "0"  # ip_forward sets them all
    changed = apply_fix(net, f"{run}bridge link set dev veth-host1 state 1 isolated on")
    assert changed is not None
    port = next(s for s in changed.values() if s.node == "host").link("veth-host1")
    assert port is not None and port.port is not None
    assert (port.port.state, port.port.isolated) == ("listening", True)
    assert apply_fix(net, f"{run}nft delete rule ip nat POSTROUTING handle 999") is None
    assert states == _states()  # the saved state itself is never changed


def test_bringing_a_veth_up_gives_both_ends_carrier() -> None:
    states = _states()
    host = _node(states, "host")
    container = _node(states, "container1")
    host.links = [replace(lk, up=False) if lk.name == "veth-host1" else lk for lk in host.links]
    container.links = [
        replace(lk, carrier=False) if lk.name == "veth-cont1" else lk for lk in container.links
    ]
    assert _stop(_predict(states)).code == "link.carrier"
    net = Network(states, None)
    changed = apply_fix(net, f"{net.run_in('host')}ip link set veth-host1 up")
    assert changed is not None
    assert _predict(changed)[0].outcome == "delivered"


def test_the_answer_to_a_fragmented_request_is_whole_and_a_small_mtu_stops_it() -> None:
    states = _states()
    container = _node(states, "container1")
    container.links = [
        replace(lk, mtu=68) if lk.name == "veth-cont1" else lk for lk in container.links
    ]
    request, reply = _predict(states)
    assert request.outcome == "delivered"  # sent in fragments of 68 bytes
    assert (reply.outcome, reply.code, reply.node) == ("stopped", "link.mtu", "container1")


def test_a_fix_with_a_placeholder_is_not_applied() -> None:
    net = Network(_states(), None)
    assert apply_fix(net, f"{net.run_in('container1')}ip route add 10.9.0.0/16 via GATEWAY") is None


def _unknown_at(where: str, predicted: list[Prediction]) -> Verdict:
    return Verdict(
        "dropped",
        "dropped",
        where,
        cause="unknown: the kernel gave no reason",
        code="unknown",
        predicted=predicted,
    )


def test_an_unknown_stop_takes_the_prediction_s_cause_only_where_the_run_stopped() -> None:
    states = _states()
    _node(states, "host").sysctls["net.ipv4.conf.br0.forwarding"] = "0"
    predicted = _predict(states)
    verdict = _unknown_at("host/br0", predicted)
    weigh(verdict)
    assert verdict.code == "sysctl.forwarding"
    assert verdict.objects == ["sysctl:host/net.ipv4.conf.br0.forwarding"]
    assert verdict.evidence[0].startswith("the run alone: unknown")
    elsewhere = _unknown_at("wan/eth0", predicted)
    weigh(elsewhere)
    assert elsewhere.code == "unknown"  # a stop in another namespace explains nothing here


def test_a_prediction_that_passes_something_not_modelled_decides_nothing() -> None:
    states = _states()
    host = _node(states, "host")
    host.sysctls["net.ipv4.conf.br0.forwarding"] = "0"
    host.tc.append(TcFilter("veth-host1", "ingress", "bpf", program="prog id 7 direct-action"))
    verdict = _unknown_at("host/br0", _predict(states))
    weigh(verdict)
    assert verdict.code == "unknown"


def test_a_named_stop_the_state_does_not_explain_is_said() -> None:
    verdict = replace(_unknown_at("host/br0", _predict(_states())), code="nf.drop")
    weigh(verdict)
    assert verdict.code == "nf.drop"
    assert "predicts it gets through" in verdict.evidence[-1]


def test_a_probe_never_sent_is_predicted_from_what_was_asked() -> None:
    states = _states()
    container = _node(states, "container1")
    container.routes.append(RouteEntry("8.8.8.8/32", None, None, None, type="blackhole"))
    options = RunOptions("ping", ip_address("8.8.8.8"), count=1)
    source = next(ns for ns, s in states.items() if s.node == "container1")
    setting = Setting(1, source, "8.8.8.8", 1, states, None, False, options)
    verdict = build_probes([], setting, send_errors={0: "Invalid argument"})[0].verdict
    stop = _stop(verdict.predicted)
    assert (stop.node, stop.code, stop.objects) == (
        "container1",
        "route.blackhole",
        ("route:container1/8.8.8.8/32",),
    )


def test_an_address_fix_brings_its_connected_route_and_a_tc_fix_its_filter_away() -> None:
    states = _states()
    host = _node(states, "host")
    host.links = [
        replace(lk, addresses=("192.168.100.1/32",)) if lk.name == "br0" else lk
        for lk in host.links
    ]
    host.routes = [r for r in host.routes if r.dst != "192.168.100.0/24"]
    assert _stop(_predict(states)).outcome == "stopped"
    net = Network(states, None)
    run = net.run_in("host")
    fix = f"{run}ip addr del 192.168.100.1/32 dev br0 && {run}ip addr add 192.168.100.1/24 dev br0"
    changed = apply_fix(net, fix)
    assert changed is not None
    assert [p.outcome for p in _predict(changed)] == ["delivered", "delivered"]
    host.tc.append(
        TcFilter("veth-host1", "ingress", "u32", every=True, actions=("redirect dev nowhere",))
    )
    changed = apply_fix(net, f"{run}tc filter del dev veth-host1 ingress")
    assert changed is not None
    assert not _node(changed, "host").tc


def _remedied(states: dict[str, NamespaceState], verdict: Verdict) -> Verdict:
    source = next(ns for ns, s in states.items() if s.node == "container1")
    judge = Judge(states, source, "8.8.8.8", 0)
    judge._remedy(verdict, PING)
    return verdict


def test_a_verdict_without_a_fix_gets_one_read_off_the_stop_and_proven() -> None:
    states = _states()
    _node(states, "host").sysctls["net.ipv4.conf.br0.forwarding"] = "0"
    verdict = _unknown_at("host/br0", _predict(states))
    weigh(verdict)
    _remedied(states, verdict)
    assert verdict.fix is not None and verdict.fix.endswith(
        "sysctl -w net.ipv4.conf.br0.forwarding=1"
    )
    assert verdict.proof is not None and verdict.proof.startswith("proven")

    states, blackholed = _blackholed()
    _remedied(states, blackholed)
    assert blackholed.fix is not None and blackholed.fix.endswith(
        "ip route del blackhole 8.8.8.8/32"
    )


def test_no_fix_is_offered_that_the_prediction_does_not_heal() -> None:
    states = _states()
    host = _node(states, "host")
    host.sysctls["net.ipv4.conf.br0.forwarding"] = "0"
    host.routes = [r for r in host.routes if r.dst != "default"]  # a second fault behind
    verdict = _unknown_at("host/br0", _predict(states))
    weigh(verdict)
    assert verdict.code == "sysctl.forwarding"
    assert _remedied(states, verdict).fix is None


def test_a_port_brought_up_forwards_again_and_arp_on_flushes_the_noarp_entries() -> None:
    states = _states()
    host = _node(states, "host")
    container = _node(states, "container1")
    host.links = [
        replace(lk, up=False, carrier=False, port=BridgePort("disabled"))
        if lk.name == "veth-host1"
        else lk
        for lk in host.links
    ]
    container.links = [
        replace(lk, carrier=False) if lk.name == "veth-cont1" else lk for lk in container.links
    ]
    net = Network(states, None)
    changed = apply_fix(net, f"{net.run_in('host')}ip link set veth-host1 up")
    assert changed is not None
    assert [p.outcome for p in _predict(changed)] == ["delivered", "delivered"]

    states = _states()
    container = _node(states, "container1")
    mac = next(lk.mac for lk in container.links if lk.name == "veth-cont1")
    container.links = [
        replace(lk, noarp=True) if lk.name == "veth-cont1" else lk for lk in container.links
    ]
    container.neighbours = [f"192.168.100.1 dev veth-cont1 lladdr {mac} NOARP"]
    assert _stop(_predict(states)).code == "link.noarp"
    net = Network(states, None)
    changed = apply_fix(net, f"{net.run_in('container1')}ip link set dev veth-cont1 arp on")
    assert changed is not None
    assert [p.outcome for p in _predict(changed)] == ["delivered", "delivered"]


def test_fib_address_type_local_is_read_from_the_namespace_s_addresses() -> None:
    mine = nfmatch.Packet(4, "10.0.0.9", "10.0.0.1", "tcp", 5, 8080, local=("10.0.0.1",))
    assert nfmatch.evaluate("fib daddr type local counter jump HOSTPORT", mine)[0] is True
    other = replace(mine, dst="10.0.0.2")
    assert nfmatch.evaluate("fib daddr type local counter jump HOSTPORT", other)[0] is False
    assert nfmatch.evaluate("fib daddr type broadcast drop", mine)[0] is None


def test_ip_takes_the_family_from_the_address_it_is_given() -> None:
    states = _states()
    container = _node(states, "container1")
    container.routes = [r for r in container.routes if r.gateway != "fd00:100::1"]
    net = Network(states, None)
    changed = apply_fix(net, f"{net.run_in('container1')}ip route add default via fd00:100::1")
    assert changed is not None
    added = [r for r in _node(changed, "container1").routes if r.gateway == "fd00:100::1"]
    assert [r.family for r in added] == [6]


def test_the_live_view_s_rebuilds_predict_nothing_and_the_run_s_end_does() -> None:
    states = _states()
    options = RunOptions("ping", ip_address("8.8.8.8"), count=1)
    source = next(ns for ns, s in states.items() if s.node == "container1")
    setting = Setting(1, source, "8.8.8.8", 1, states, None, False, options)
    errors = {0: "Invalid argument"}
    assert build_probes([], setting, send_errors=errors, only=0)[0].verdict.predicted == []
    assert build_probes([], setting, send_errors=errors)[0].verdict.predicted


def test_a_filter_that_takes_every_frame_is_run() -> None:
    """A u32 of nothing with a drop, or a redirect to a device that is down, stops
    the prediction there; one of the other family's protocol is passed by; a
    mirror copies and lets it go on."""
    dropping = TcFilter("veth-host1", "ingress", "u32", every=True, actions=("drop",))
    for added, code in (
        (dropping, "tc.drop"),
        (replace(dropping, actions=("redirect dev veth-host1",)), None),
        (replace(dropping, actions=("redirect dev gone",)), "tc.redirect"),
    ):
        states = _states()
        _node(states, "host").tc.append(added)
        stop = _stop(_predict(states))
        if code is None:  # redirected to a device that is up: not followed
            assert stop.outcome == "unknown" and stop.node == "host"
        else:
            assert (stop.outcome, stop.node, stop.code) == ("stopped", "host", code)
            assert stop.objects == ("tc:host/veth-host1 ingress",)
    for harmless in (
        replace(dropping, protocol="ipv6"),
        replace(dropping, actions=("mirror dev veth-host1",)),
    ):
        states = _states()
        _node(states, "host").tc.append(harmless)
        assert [p.outcome for p in _predict(states)] == ["delivered", "delivered"]
    states = _states()
    _node(states, "host").tc.append(replace(dropping, every=False, matches=("0a/ff at 16",)))
    predicted = _predict(states)
    assert [p.outcome for p in predicted] == ["delivered", "delivered"]
    assert any("not run" in u for p in predicted for u in p.unknowns)
