"""`pathtrace run` on the real lab: kinds, directions, scenarios, reports, bad input."""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import subprocess
import sys
import time
from ipaddress import IPv4Address
from pathlib import Path

import jsonschema
import pytest

from pathtrace.lab import scenarios, topology
from pathtrace.model.options import RunOptions
from pathtrace.model.result import RunResult
from pathtrace.model.trace import ProbeTrace
from pathtrace.output.json_report import to_json
from pathtrace.output.markdown import markdown, mermaid
from pathtrace.output.text import render
from pathtrace.session import Run
from pathtrace.system import netns
from tests.conftest import pathtrace

pytestmark = pytest.mark.root
SCHEMA = json.loads(
    (Path(__file__).resolve().parents[2] / "pathtrace" / "output" / "schema.json").read_text()
)


def run(lab: topology.Topology, kind: str, target: str, port: int = 0, **kw: object) -> RunResult:
    options = RunOptions(
        kind,
        IPv4Address(target),
        port,
        count=kw.pop("count", 2),  # type: ignore[arg-type]
        **kw,
    )  # type: ignore[arg-type]
    return Run(options, lab).execute()


def hop_texts(probe: ProbeTrace) -> list[str]:
    return [h.text for s in (probe.request, probe.reply, *probe.errors) if s for h in s.hops]


def test_ping_to_the_internet_is_answered_through_masquerade(lab: topology.Topology) -> None:
    result = run(lab, "ping", "8.8.8.8", count=3)
    assert result.delivered and result.answered == 3
    for probe in result.probes:
        assert probe.verdict.outcome == "answered", probe.verdict
        texts = hop_texts(probe)
        assert texts[0] == "container1 sends on veth-cont1"
        assert "br0 delivers it up to host" in texts
        snat = next(h for h in probe.request.hops if h.translation)
        assert snat.translation is not None and snat.translation.kind == "SNAT"
        assert snat.translation.before.startswith("192.168.100.2:icmp/")
        assert snat.translation.after.startswith("198.51.100.2:icmp/")
        assert snat.translation.rule is not None and "masquerade" in snat.translation.rule
        assert "handle" in snat.translation.rule
        assert probe.reply is not None
        back = next(h for h in probe.reply.hops if h.translation)
        assert back.translation is not None and back.translation.kind == "un-SNAT"
        # Each reply belongs to its request: same tag index, same ICMP sequence.
        assert probe.reply.hops[0].packet.dport == probe.index
        assert probe.reply.hops[-1].node == "container1"


def test_an_address_nobody_holds_is_said_so_not_a_forwarding_fault(
    lab: topology.Topology,
) -> None:
    """8.8.8.9 reaches wan (host's default route), which holds no such address and
    has no route for it: forwarding there would not send it anywhere, so turning it
    on is no fix (the state shows wan has no route; no namespace holds it)."""
    (probe,) = run(lab, "ping", "8.8.8.9", count=1).probes
    v = probe.verdict
    assert v.outcome == "dropped" and v.where == "wan/eth0", v
    assert v.code == "route.none" and v.objects == ["route:wan/8.8.8.9"], v
    assert v.cause is not None and v.cause.startswith("no traced namespace holds 8.8.8.9, and wan")
    assert v.fix is not None and "ip_forward" not in v.fix and "sysctl" not in v.fix, v.fix
    assert [p.code for p in v.predicted] == ["route.none"], v.predicted


def test_udp_and_tcp_to_the_internet(lab: topology.Topology) -> None:
    udp = run(lab, "udp", "8.8.8.8", 53)
    assert [p.verdict.outcome for p in udp.probes] == ["answered", "answered"]
    tcp = run(lab, "tcp", "8.8.8.8", 443)
    assert [p.verdict.outcome for p in tcp.probes] == ["answered", "answered"]
    assert any(h.translation and h.translation.kind == "SNAT" for h in tcp.probes[0].request.hops)
    refused = run(lab, "tcp", "8.8.8.8", 444, count=1)
    assert refused.probes[0].verdict.outcome == "rejected"
    assert "RST" in refused.probes[0].verdict.summary
    assert not refused.delivered


def test_from_wan_through_the_dnat(lab: topology.Topology) -> None:
    result = run(lab, "tcp", "198.51.100.2", 8080, source="wan")
    for probe in result.probes:
        assert probe.verdict.outcome == "answered"
        assert "container1" in probe.verdict.summary
        dnat = next(h for h in probe.request.hops if h.translation)
        assert dnat.translation is not None and dnat.translation.kind == "DNAT"
        assert dnat.translation.before == "198.51.100.2:8080"
        assert dnat.translation.after == "192.168.100.2:80"
        assert dnat.translation.rule is not None and "dnat-8080" in dnat.translation.rule
        assert probe.reply is not None
        assert any(h.translation and h.translation.kind == "un-DNAT" for h in probe.reply.hops)
    ping = run(lab, "ping", "198.51.100.2", source="wan")
    assert ping.delivered


BREAKS = [
    ("no-masquerade", ("ping", "8.8.8.8", 0, {}), "lost", "wan", "no route back to 192.168.100.2"),
    ("forward-drop", ("ping", "8.8.8.8", 0, {}), "dropped", "host", "FORWARD"),
    ("ip-forward-off", ("ping", "8.8.8.8", 0, {}), "dropped", "host", "ip_forward is 0"),
    ("no-default-route", ("ping", "8.8.8.8", 0, {}), "dropped", "container1", "no default route"),
    ("port-down", ("ping", "192.168.100.3", 0, {}), "lost", "container1", "no carrier"),
    (
        "dnat-without-forward-accept",
        ("tcp", "198.51.100.2", 8080, {"source": "wan"}),
        "dropped",
        "host",
        "policy is drop",
    ),
    (
        "small-mtu-with-df",
        ("ping", "8.8.8.8", 0, {"size": 1400, "dont_fragment": True}),
        "rejected",
        "host",
        "MTU",
    ),
    ("ttl-expired", ("ping", "8.8.8.8", 0, {}), "rejected", "host", "TTL"),
    # wan does listen on 53: the scenario's reject rule answers, and is named.
    ("udp-port-unreachable", ("udp", "8.8.8.8", 53, {}), "rejected", "wan", "udp dport 53"),
    ("reject-rule", ("ping", "8.8.8.8", 0, {}), "rejected", "host", "reject"),
]


@pytest.mark.parametrize(
    ("scenario", "probe", "outcome", "where", "cause"), BREAKS, ids=[b[0] for b in BREAKS]
)
def test_break_is_diagnosed_and_fix_restores(
    lab: topology.Topology,
    topology_file: Path,
    scenario: str,
    probe: tuple,
    outcome: str,
    where: str,
    cause: str,
) -> None:
    kind, target, port, extra = probe
    scenarios.apply(lab, scenario)
    broken = run(lab, kind, target, port, count=1, **extra)
    verdict = broken.probes[0].verdict
    text = f"{verdict.summary} | {verdict.where} | {verdict.cause} | {verdict.fix}"
    assert verdict.outcome == outcome, text
    assert verdict.where is not None and verdict.where.startswith(where), text
    assert cause in f"{verdict.cause} {verdict.fix}", text
    assert not broken.delivered
    # The restore offered beside the fix is this lab's, run exactly as printed (the
    # test lab is not the default one: a bare `lab fix` would act on another).
    restore = re.search(r"\(or `pathtrace (lab fix [^`]*)`\)$", verdict.fix or "")
    assert restore is not None and str(topology_file) in restore.group(1), verdict.fix
    fixed = pathtrace(*shlex.split(restore.group(1)))
    assert fixed.returncode == 0, fixed.stderr
    again = run(lab, kind, target, port, count=1, **extra)
    assert again.delivered, again.probes[0].verdict


def test_reports(lab: topology.Topology) -> None:
    result = run(lab, "ping", "8.8.8.8", count=2)
    data = to_json(result)
    jsonschema.validate(data, SCHEMA, format_checker=jsonschema.FormatChecker())
    json.dumps(data)
    out = io.StringIO()
    render(result, out, width=100)
    lines = out.getvalue().splitlines()
    assert max(len(line.rstrip()) for line in lines) <= 100
    assert "SNAT by rule masquerade" in out.getvalue()
    assert "probe 2: same path" in out.getvalue()
    assert "| request |" in markdown(result)
    diagram = mermaid(result)
    assert diagram.startswith("sequenceDiagram") and "container1->>host" in diagram


def test_cli_run_json_and_exit_codes(lab: topology.Topology, topology_file: Path) -> None:
    ok = pathtrace("run", "ping", "8.8.8.8", "-c", "1", "--json", "--topology", str(topology_file))
    assert ok.returncode == 0, ok.stderr
    jsonschema.validate(json.loads(ok.stdout), SCHEMA, format_checker=jsonschema.FormatChecker())
    refused = pathtrace("run", "tcp", "8.8.8.8:444", "-c", "1", "--topology", str(topology_file))
    assert refused.returncode == 1
    plain = pathtrace(
        "run",
        "ping",
        "8.8.8.8",
        "-c",
        "1",
        "--topology",
        str(topology_file),
        env={"NO_COLOR": "1", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
    )
    assert "\x1b[" not in plain.stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["run", "ping", "8.8.8.8", "--from", "container9"], "unknown node 'container9'"),
        (["run", "ping", "8.8.8.888"], "is not an IP address"),
        (["run", "udp", "8.8.8.8"], "needs ADDRESS:PORT"),
        (["run", "tcp", "8.8.8.8:99999"], "is not a port"),
        (["run", "ping", "8.8.8.8", "--ttl", "0"], "--ttl"),
    ],
)
def test_bad_input_is_one_line_exit_2(
    topology_file: Path, prefix: str, args: list[str], says: str
) -> None:
    result = pathtrace(*args, "--topology", str(topology_file))
    assert result.returncode == 2, result.stderr
    assert says in result.stderr and result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr
    assert not [n for n in netns.names() if n.startswith(prefix)]  # nothing left behind


def test_not_root_is_exit_3(topology_file: Path) -> None:
    result = subprocess.run(
        [
            "setpriv",
            "--bounding-set",
            "-sys_admin,-net_admin,-bpf",
            "--",
            sys.executable,
            "-m",
            "pathtrace",
            "run",
            "ping",
            "8.8.8.8",
            "--topology",
            str(topology_file),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 3 and "root" in result.stderr
    assert result.stderr.count("\n") == 1


def test_a_topology_made_with_plain_ip_commands(prefix: str) -> None:
    """The tutorial's way (ip netns, veth, an address each), never in the root namespace."""
    a, b = f"{prefix}ta", f"{prefix}tb"
    script = f"""
    set -e
    ip netns add {a}; ip netns add {b}
    ip -n {a} link add veth-a type veth peer name veth-b netns {b}
    ip -n {a} addr add 10.77.0.1/24 dev veth-a; ip -n {b} addr add 10.77.0.2/24 dev veth-b
    ip -n {a} link set veth-a up; ip -n {b} link set veth-b up
    ip -n {a} link set lo up; ip -n {b} link set lo up
    """
    subprocess.run(["bash", "-c", script], check=True)
    try:
        result = Run(
            RunOptions("ping", IPv4Address("10.77.0.2"), source=a, count=1), None
        ).execute()
        assert result.probes[0].verdict.outcome == "answered"
        assert result.source_namespace == a
        nodes = {h.node for h in result.probes[0].request.hops}
        assert {a, b} <= nodes
        # --from also takes a pid living in the namespace.
        sleeper = netns.popen(a, ["sleep", "30"])
        try:
            # nsenter enters the namespace, then execs: wait until the pid is inside.
            inside = netns.inode(a)
            deadline = time.monotonic() + 5
            while os.stat(f"/proc/{sleeper.pid}/ns/net").st_ino != inside:
                assert time.monotonic() < deadline, "the process never entered the namespace"
                time.sleep(0.01)
            by_pid = Run(
                RunOptions("ping", IPv4Address("10.77.0.2"), source=str(sleeper.pid), count=1), None
            ).execute()
            assert by_pid.probes[0].verdict.outcome == "answered"
        finally:
            sleeper.kill()
            sleeper.wait()
    finally:
        subprocess.run(["ip", "netns", "delete", a], check=False)
        subprocess.run(["ip", "netns", "delete", b], check=False)


def test_bridged_traffic_dropped_by_ip_forward_chain_names_br_netfilter(
    lab: topology.Topology,
) -> None:
    host = lab.namespace("host")
    netns.run(
        host,
        ["nft", "add", "rule", "ip", "filter", "FORWARD", "ip", "daddr", "192.168.100.3", "drop"],
    )
    verdict = run(lab, "ping", "192.168.100.3", count=1).probes[0].verdict
    assert verdict.outcome == "dropped" and verdict.where == "host/veth-host2"
    assert verdict.cause is not None
    assert "ip daddr 192.168.100.3 drop" in verdict.cause
    assert "bridge-nf-call-iptables=1" in verdict.cause


def test_a_routed_topology_with_plain_firewall_commands(prefix: str) -> None:
    """client -> router (MASQUERADE by plain nft, no pathtrace comment) -> server."""
    c, r, s = f"{prefix}c", f"{prefix}r", f"{prefix}s"
    script = f"""
    set -e
    for n in {c} {r} {s}; do ip netns add $n; ip -n $n link set lo up; done
    ip -n {c} link add eth0 type veth peer name in0 netns {r}
    ip -n {r} link add out0 type veth peer name eth0 netns {s}
    ip -n {c} addr add 10.88.0.2/24 dev eth0; ip -n {c} link set eth0 up
    ip -n {r} addr add 10.88.0.1/24 dev in0; ip -n {r} link set in0 up
    ip -n {r} addr add 203.0.113.1/24 dev out0; ip -n {r} link set out0 up
    ip -n {s} addr add 203.0.113.9/24 dev eth0; ip -n {s} link set eth0 up
    ip -n {c} route add default via 10.88.0.1
    ip netns exec {r} sysctl -qw net.ipv4.ip_forward=1
    ip netns exec {r} nft add table ip nat
    ip netns exec {r} nft add chain ip nat post '{{ type nat hook postrouting priority 100; }}'
    ip netns exec {r} nft add rule ip nat post oifname out0 masquerade
    """
    subprocess.run(["bash", "-c", script], check=True)
    try:
        result = Run(
            RunOptions("ping", IPv4Address("203.0.113.9"), source=c, count=1), None
        ).execute()
        probe = result.probes[0]
        assert probe.verdict.outcome == "answered", probe.verdict
        snat = next(h for h in probe.request.hops if h.translation)
        assert snat.node == r and snat.translation is not None
        assert snat.translation.before.startswith("10.88.0.2:icmp/")
        assert snat.translation.after.startswith("203.0.113.1:icmp/")
        rule = snat.translation.rule or ""
        assert "handle" in rule and 'oifname "out0" masquerade' in rule, rule
    finally:
        for n in (c, r, s):
            subprocess.run(["ip", "netns", "delete", n], check=False)


def test_the_hosts_own_namespace_is_never_a_source(topology_file: Path) -> None:
    result = pathtrace(
        "run", "ping", "10.0.0.1", "--from", str(os.getpid()), "--topology", str(topology_file)
    )
    assert result.returncode == 2
    assert "host's own network namespace" in result.stderr
    with pytest.raises(Exception, match="host's own network namespace"):
        Run(RunOptions("ping", IPv4Address("10.0.0.1"), source="/proc/self/ns/net"), None).execute()


def test_events_reach_live_views_while_probes_still_go_out(lab: topology.Topology) -> None:
    run = Run(RunOptions("ping", IPv4Address("192.168.100.3"), count=20, interval=0.05), lab)
    marks: dict[str, float] = {}
    run.on_armed = lambda setting: marks.setdefault("armed", time.monotonic())
    run.on_event = lambda event: marks.setdefault("first event", time.monotonic())
    assert run.execute().delivered
    # 20 probes 50 ms apart take a second to send; the first hops come long before.
    assert marks["first event"] - marks["armed"] < 0.5, marks


@pytest.mark.parametrize(
    ("kind", "target", "port", "source", "others"),
    [
        ("ping", "8.8.8.8", 0, "container1", set()),
        ("udp", "8.8.8.8", 53, "container1", {"source_icmp_error"}),  # nobody waits for it
        ("udp", "8.8.8.8", 54, "container1", set()),  # port unreachable: an ICMP error
        ("tcp", "8.8.8.8", 443, "container1", {"source_rst"}),
        ("tcp", "198.51.100.2", 8080, "wan", {"source_rst"}),  # through the DNAT
        ("ping", "192.168.100.3", 0, "container1", set()),  # bridged
    ],
)
def test_every_series_is_in_time_order_and_holds_one_packet(
    lab: topology.Topology, kind: str, target: str, port: int, source: str, others: set[str]
) -> None:
    result = run(lab, kind, target, port, source=source, count=2)
    events = result.events
    for probe in result.probes:
        assert probe.request.hops[0].offset_us == 0  # a probe starts at +0.0
        for series in probe.series:
            times = [h.time_ns for h in series.hops]
            assert times == sorted(times), (series.direction, [h.text for h in series.hops])
        # The request series: the injected packet alone (its SYN, its echo request).
        mine = {events[p].skb_id for h in probe.request.hops for p in h.events}
        flags = {events[p].tcp_flags for h in probe.request.hops for p in h.events}
        assert len(mine) == 1, [h.text for h in probe.request.hops]
        if kind == "tcp":
            assert flags == {0x02}
        assert {s.direction for s in probe.others} == others
        if probe.verdict.outcome == "answered":
            assert probe.reply is not None  # answered in what its answer's last hop says
            shown = f"{probe.reply.hops[-1].offset_us:.0f}"
            assert f"in {shown} us" in probe.verdict.summary, probe.verdict.summary
        for series in probe.series:
            # A hop shows the packet's own length (the IP header's): one per series.
            assert len({h.packet.length for h in series.hops}) == 1, series.direction


def test_a_flooded_frame_is_one_path_and_its_copies(lab: topology.Topology, prefix: str) -> None:
    """A third port on br0 and an FDB that knows nothing (ageing 0: it never keeps
    what it learns): the bridge floods; the copy dropped by the third namespace as
    not its MAC is no hop of the path and no verdict; with learning back on, the
    same ping is forwarded by the FDB."""
    host, extra = lab.namespace("host"), f"{prefix}extra"
    script = f"""
    set -e
    ip netns add {extra}
    ip -n {host} link add veth-host9 type veth peer name eth0 netns {extra}
    ip -n {host} link set veth-host9 master br0 up
    ip -n {extra} addr add 192.168.100.9/24 dev eth0; ip -n {extra} link set eth0 up
    ip -n {host} link set br0 type bridge ageing_time 0
    """
    subprocess.run(["bash", "-c", script], check=True)
    try:
        probe = run(lab, "ping", "192.168.100.3", count=1).probes[0]
        assert probe.verdict.outcome == "answered", probe.verdict
        assert probe.reply is not None
        # The reply's MAC was learned from the request, and aged out at once.
        for series, port, why in (
            (probe.request, "veth-host1", "is not in its FDB"),
            (probe.reply, "veth-host2", "was gone: aged out or flushed"),
        ):
            flood = next(h for h in series.hops if h.action == "bridge-forward")
            assert flood.text.startswith(f"br0 floods it from {port} out of"), flood.text
            assert why in flood.text and "copies out of veth-host9" in flood.text
            assert [h.node for h in series.hops].count(extra) == 0  # the copy is apart
            (copy,) = series.copies
            assert copy.hops[0].text == "br0 floods a copy out of veth-host9"
            assert copy.hops[-1].node == extra and copy.hops[-1].drop_reason == "OTHERHOST"
        assert "copy: br0 floods a copy out of veth-host9" in _text(probe)
        # Learning kept again: the reply's MAC was learned from the request.
        netns.run(host, ["ip", "link", "set", "br0", "type", "bridge", "ageing_time", "30000"])
        learned = run(lab, "ping", "192.168.100.3", count=2).probes[-1]
        assert learned.verdict.outcome == "answered"
        for series in (learned.request, learned.reply):
            assert series is not None and not series.copies
            hop = next(h for h in series.hops if h.action == "bridge-forward")
            assert hop.text.startswith("br0 forwards it from veth-host") and "(FDB: " in hop.text
    finally:
        subprocess.run(["ip", "netns", "delete", extra], check=False)


def _text(probe: ProbeTrace) -> str:
    return "\n".join(
        f"copy: {h.text}"
        for s in (probe.request, probe.reply)
        if s
        for c in s.copies
        for h in c.hops
    )


def test_a_path_to_a_named_namespace_is_that_namespace(
    lab: topology.Topology, topology_file: Path
) -> None:
    """--from /run/netns/NAME or /proc/PID/ns/net of a lab node: traced and named as the node."""
    holder = netns.popen(lab.namespace("container1"), ["sleep", "30"])
    try:
        for source in (netns.path(lab.namespace("container1")), f"/proc/{holder.pid}/ns/net"):
            done = pathtrace(
                "run", "ping", "8.8.8.8", "-c", "1", "--json", "--from", source,
                "--topology", str(topology_file),
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            report = json.loads(done.stdout)
            assert report["run"]["source_namespace"] == lab.namespace("container1")
            assert "netns:" not in json.dumps(report["namespaces"])
            first = report["probes"][0]["request"]["hops"][0]
            assert first["node"] == "container1", first
    finally:
        holder.kill()
        holder.wait()
