"""IPv6 through the whole pipeline, on the dual-stack reference lab: every probe
kind from container1 and from wan, NAT66 both ways with its rule, ICMPv6
errors, captures, JSON, bundles, and the IPv6 break scenarios."""

from __future__ import annotations

import json
from ipaddress import IPv6Address
from pathlib import Path

import jsonschema
import pytest

from pathtrace.lab import topology
from pathtrace.model.options import RunOptions
from pathtrace.model.result import RunResult
from pathtrace.output import bundle
from pathtrace.output.json_report import to_json
from pathtrace.session import Run
from pathtrace.system import netns
from tests.conftest import pathtrace

pytestmark = pytest.mark.root
SCHEMA = json.loads(
    (Path(__file__).resolve().parents[2] / "pathtrace" / "output" / "schema.json").read_text()
)
GOOGLE6 = "2001:4860:4860::8888"


def run(lab: topology.Topology, kind: str, target: str, **kw: object) -> RunResult:
    options = RunOptions.parse(kind, target, **{"count": 2, **kw})
    return Run(options, lab).execute()


def test_ping6_through_nat66_is_answered_with_its_rule(lab: topology.Topology) -> None:
    result = run(lab, "ping", GOOGLE6)
    for probe in result.probes:
        assert probe.verdict.outcome == "answered", probe.verdict
        request, reply = probe.request, probe.reply
        assert reply is not None
        assert request.hops[0].packet.src == "fd00:100::2"
        assert request.hops[0].packet.protocol == "icmpv6"
        snat = next(h for h in request.hops if h.translation)
        assert snat.node == "host" and snat.translation is not None
        assert snat.translation.kind == "SNAT"
        assert snat.translation.before.startswith("[fd00:100::2]:icmpv6/")
        assert snat.translation.after.startswith("[2001:db8::2]:icmpv6/")
        # The ip6 table's rule, not IPv4's masquerade beside it.
        assert "rule masquerade6 (nat POSTROUTING" in (snat.translation.rule or "")
        assert any(h.translation and h.translation.kind == "un-SNAT" for h in reply.hops)
        assert reply.hops[-1].node == "container1"
        # Every device hop is in the capture (IPv6 frames, the IPv6 filter).
        seen = [h.captured for s in (request, reply) for h in s.hops if h.captured is not None]
        assert seen and all(seen), [(h.node, h.interface, h.captured) for h in request.hops]
    report = to_json(result)
    jsonschema.validate(report, SCHEMA, format_checker=jsonschema.FormatChecker())
    assert report["run"]["probe"]["target"] == GOOGLE6


def test_udp6_and_tcp6_to_the_internet(lab: topology.Topology) -> None:
    udp = run(lab, "udp", f"[{GOOGLE6}]:53")
    assert all(p.verdict.outcome == "answered" for p in udp.probes), udp.probes[0].verdict
    tcp = run(lab, "tcp", "[2606:4700:4700::1111]:443")
    assert all(p.verdict.outcome == "answered" for p in tcp.probes), tcp.probes[0].verdict
    hop = tcp.probes[0].request.hops[0]
    assert hop.packet.describe().startswith("[fd00:100::2]:")
    assert tcp.probes[0].reply is not None
    assert tcp.probes[0].reply.hops[0].packet.src == "2606:4700:4700::1111"


def test_from_wan_through_the_dnat66(lab: topology.Topology) -> None:
    result = run(lab, "tcp", "[2001:db8::2]:8080", source="wan", count=1)
    probe = result.probes[0]
    assert probe.verdict.outcome == "answered", probe.verdict
    dnat = next(h for h in probe.request.hops if h.translation)
    assert dnat.translation is not None and dnat.translation.kind == "DNAT"
    assert dnat.translation.after == "[fd00:100::2]:80"
    assert "rule dnat6-8080" in (dnat.translation.rule or "")
    assert probe.verdict.where == "container1"


def test_from_wan_ping6_and_udp6_to_a_closed_port(lab: topology.Topology) -> None:
    ping = run(lab, "ping", "2001:db8::2", source="wan", count=1).probes[0]
    assert ping.verdict.outcome == "answered" and ping.verdict.where == "host", ping.verdict
    closed = run(lab, "udp", "[2001:db8::2]:9", source="wan", count=1).probes[0]
    assert closed.verdict.outcome == "rejected", closed.verdict
    assert "port unreachable" in closed.verdict.summary
    assert closed.verdict.cause == "nothing listens on udp port 9 in host", closed.verdict
    assert closed.errors[0].hops[0].packet.protocol == "icmpv6"


def test_bridged_ping6_and_a_bundle_read_back(lab: topology.Topology, tmp_path: Path) -> None:
    result = run(lab, "ping", "fd00:100::3")
    probe = result.probes[-1]
    assert probe.verdict.outcome == "answered"
    texts = [h.text for h in probe.request.hops]
    assert any(t.startswith("br0 forwards it from veth-host1 to veth-host2") for t in texts), texts
    assert not any(h.translation for h in probe.request.hops)
    bundle.save(result, tmp_path / "b")
    loaded, _ = bundle.load(tmp_path / "b")
    assert [p.verdict for p in loaded.probes] == [p.verdict for p in result.probes]
    assert loaded.options.target == IPv6Address("fd00:100::3")
    # The pcapng holds the IPv6 frames; tshark reads them as ICMPv6 echo.
    shown = pathtrace("bundle", "show", str(tmp_path / "b"))
    assert shown.returncode == 0 and "fd00:100::2 > fd00:100::3 icmpv6" in shown.stdout


def test_hop_limit_exceeded_is_an_icmpv6_error_explained(lab: topology.Topology) -> None:
    probe = run(lab, "ping", GOOGLE6, ttl=1, count=1).probes[0]
    assert probe.verdict.outcome == "rejected", probe.verdict
    assert "hop limit exceeded" in probe.verdict.summary
    assert probe.errors and probe.errors[0].hops[0].node == "host"
    assert probe.errors[0].hops[0].packet.protocol == "icmpv6"


def test_packet_too_big_names_the_link_mtu(lab: topology.Topology) -> None:
    """IPv6 routers never fragment: the host answers a 1400-byte probe for a
    1280-byte uplink with Packet Too Big, and the verdict says which link."""
    host = lab.namespace("host")
    netns.run(host, ["ip", "link", "set", "eth0", "mtu", "1280"])
    netns.run(lab.namespace("wan"), ["ip", "link", "set", "eth0", "mtu", "1280"])
    probe = run(lab, "ping", GOOGLE6, size=1400, count=1).probes[0]
    assert probe.verdict.outcome == "rejected", probe.verdict
    assert "packet too big" in probe.verdict.summary
    assert probe.verdict.cause is not None and "MTU is 1280" in probe.verdict.cause
    assert probe.verdict.cause is not None and "eth0" in probe.verdict.cause


def test_cli_takes_bracketed_ipv6_and_refuses_bad_ones(
    lab: topology.Topology, topology_file: Path
) -> None:
    done = pathtrace(
        "run", "udp", f"[{GOOGLE6}]:53", "-c", "1", "--json", "--topology", str(topology_file)
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["probes"][0]["request"]["hops"][0]["packet"]["dst"] == GOOGLE6
    bad = pathtrace("run", "udp", f"{GOOGLE6}:53", "--topology", str(topology_file))
    assert bad.returncode == 2 and "[ADDRESS]:PORT" in bad.stderr and bad.stderr.count("\n") == 1


BREAKS6 = [
    ("no-masquerade6", ("ping", GOOGLE6, {}), "lost", "wan", "no route back to fd00:100::2"),
    (
        "ipv6-forwarding-off",
        ("ping", GOOGLE6, {}),
        "dropped",
        "host/br0",
        "net.ipv6.conf.all.forwarding is 0",
    ),
    ("forward-drop6", ("ping", GOOGLE6, {}), "dropped", "host/br0", "ip6 saddr fd00:100::/64 drop"),
    ("no-default-route6", ("ping", GOOGLE6, {}), "dropped", "container1", "no default route"),
    (
        "ptb-blocked",
        ("ping", GOOGLE6, {"size": 1400}),
        "dropped",
        "host (OUTPUT, before any device)",
        "MTU is 1280",
    ),
    (
        "nd-unanswered",
        ("ping", "fd00:100::2", {"source": "container2"}),
        "lost",
        "container2/veth-cont2",
        "(neighbour solicitation) and got no answer",
    ),
]


@pytest.mark.parametrize(
    ("scenario", "probe", "outcome", "where", "cause"), BREAKS6, ids=[b[0] for b in BREAKS6]
)
def test_ipv6_break_is_diagnosed_and_fix_restores(
    lab: topology.Topology,
    topology_file: Path,
    scenario: str,
    probe: tuple[str, str, dict[str, object]],
    outcome: str,
    where: str,
    cause: str,
) -> None:
    kind, target, extra = probe
    broke = pathtrace("lab", "break", scenario, "--topology", str(topology_file))
    assert broke.returncode == 0, broke.stderr
    probe = run(lab, kind, target, count=1, **extra).probes[0]
    verdict = probe.verdict
    assert verdict.outcome == outcome, verdict
    if scenario == "ptb-blocked":  # the error, dropped before any device, is still host's
        assert [h.node for h in probe.errors[0].hops] == ["host"], probe.errors
    assert verdict.where == where, verdict
    assert verdict.cause is not None and cause in verdict.cause, verdict.cause
    assert verdict.fix, verdict  # a command for that node, beside `lab fix`
    fixed = pathtrace("lab", "fix", "--topology", str(topology_file))
    assert fixed.returncode == 0, fixed.stderr
    again = run(lab, kind, target, count=1, **extra).probes[0].verdict
    assert again.outcome == "answered", again


def test_an_ipv6_policy_rule_is_the_cause_it_is(lab: topology.Topology) -> None:
    netns.run(
        lab.namespace("host"),
        ["ip", "-6", "rule", "add", "from", "fd00:100::/64", "blackhole", "pref", "90"],
    )
    verdict = run(lab, "ping", GOOGLE6, count=1).probes[0].verdict
    assert verdict.outcome == "dropped" and verdict.where == "host/br0", verdict
    assert verdict.cause is not None and "rule 90: from fd00:100::/64 blackhole" in verdict.cause
    assert verdict.fix is not None and "ip -6 rule del pref 90" in verdict.fix
