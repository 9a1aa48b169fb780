"""The reference lab on the real kernel: it forwards, NATs, heals and never leaks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pathtrace.lab import status, topology
from pathtrace.system import netns
from tests.conftest import pathtrace

pytestmark = pytest.mark.root


def ping(topo: topology.Topology, node: str, address: str) -> subprocess.CompletedProcess[str]:
    return netns.run(topo.namespace(node), ["ping", "-c", "1", "-W", "2", address], check=False)


def conntrack(topo: topology.Topology) -> str:
    return netns.run(topo.namespace("host"), ["conntrack", "-L"], check=False).stdout


def test_up_matches_description(lab: topology.Topology) -> None:
    report = status.observe(lab)
    assert report.healthy, report.problems
    kinds = {c.kind for n in report.nodes for c in n.checks}
    assert {"namespace", "interface", "addresses", "route", "sysctl", "rule", "master"} <= kinds


def test_container1_reaches_container2_through_br0(lab: topology.Topology) -> None:
    assert ping(lab, "container1", "192.168.100.3").returncode == 0
    fdb = netns.run(lab.namespace("host"), ["bridge", "fdb", "show", "br", "br0"]).stdout
    macs = {}
    for node, ifname in (("container1", "veth-cont1"), ("container2", "veth-cont2")):
        ipr = netns.iproute(lab.namespace(node))
        macs[ifname] = ipr.get_links(ifname=ifname)[0].get("address")
        ipr.close()
    # The bridge learned each container behind its own port.
    assert f"{macs['veth-cont1']} dev veth-host1" in fdb
    assert f"{macs['veth-cont2']} dev veth-host2" in fdb


def test_ping_to_the_internet_is_masqueraded(lab: topology.Topology) -> None:
    sniffer = netns.popen(
        lab.namespace("wan"),
        ["tcpdump", "-n", "-l", "-c", "1", "-i", "eth0", "icmp[icmptype]==8"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for_listening(sniffer)
        assert ping(lab, "container1", "8.8.8.8").returncode == 0
        out, _ = sniffer.communicate(timeout=10)
    finally:
        if sniffer.poll() is None:
            sniffer.kill()
            sniffer.communicate()
    # wan saw the host's uplink address, never the container's.
    assert "198.51.100.2 > 8.8.8.8: ICMP echo request" in out
    assert "192.168.100.2" not in out
    entries = conntrack(lab)
    assert "src=192.168.100.2 dst=8.8.8.8" in entries
    assert "src=8.8.8.8 dst=198.51.100.2" in entries  # the reply tuple: SNAT


def test_wan_reaches_container1_port_80_through_dnat(lab: topology.Topology) -> None:
    # The lab's own service listens on container1:80 (status says it runs).
    assert any(
        c.kind == "services" and c.ok
        for n in status.observe(lab).nodes
        for c in n.checks
        if n.node == "container1"
    )
    client = netns.run(
        lab.namespace("wan"), [sys.executable, "-c", CONNECT, "198.51.100.2", "8080"], check=False
    )
    assert client.returncode == 0, client.stderr
    entries = conntrack(lab)
    assert "dst=198.51.100.2 sport" in entries and "dport=8080" in entries
    # The reply tuple: container1:80 answered wan's own address (DNAT, no SNAT).
    assert "src=192.168.100.2 dst=198.51.100.1 sport=80" in entries


def test_wan_has_no_route_back_to_the_containers(lab: topology.Topology) -> None:
    result = ping(lab, "wan", "192.168.100.2")
    assert result.returncode != 0


def test_no_lab_link_reaches_the_root_namespace(lab: topology.Topology) -> None:
    veths: dict[tuple[str, int], int] = {}
    for node in lab.nodes:
        ipr = netns.iproute(lab.namespace(node))
        try:
            for link in ipr.get_links():
                if link.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND") == "veth":
                    veths[(node, link["index"])] = link.get("link")
        finally:
            ipr.close()
    assert len(veths) == 6
    # Each veth's peer is a veth of another lab namespace that points back at it.
    for (node, index), peer_index in veths.items():
        partners = [
            k for k, v in veths.items() if k[0] != node and k[1] == peer_index and v == index
        ]
        assert partners, f"{node} ifindex {index} has its peer outside the lab"


def test_up_twice_changes_nothing(lab: topology.Topology, topology_file: Path) -> None:
    before = status.observe(lab).to_json()
    again = pathtrace("lab", "up", "--topology", str(topology_file))
    assert again.returncode == 0, again.stderr
    assert "nothing to change" in again.stdout
    assert status.observe(lab).to_json() == before  # rule handles included


def test_up_restores_what_was_broken(lab: topology.Topology, topology_file: Path) -> None:
    host = lab.namespace("host")
    netns.run(host, ["nft", "add", "rule", "ip", "filter", "FORWARD", "drop"])
    netns.run(host, ["ip", "route", "del", "default"])
    netns.run(host, ["ip", "link", "set", "veth-host1", "down"])
    netns.write_sysctl(host, "net.ipv4.ip_forward", "0")
    report = status.observe(lab)
    assert not report.healthy and len(report.problems) == 4, report.problems
    assert pathtrace("lab", "status", "--topology", str(topology_file)).returncode == 1
    assert pathtrace("lab", "up", "--topology", str(topology_file)).returncode == 0
    assert status.observe(lab).healthy
    assert ping(lab, "container1", "8.8.8.8").returncode == 0


def test_status_json(lab: topology.Topology, topology_file: Path) -> None:
    result = pathtrace("lab", "status", "--json", "--topology", str(topology_file))
    assert result.returncode == 0
    data = json.loads(result.stdout)
    assert data["version"] == 1 and data["healthy"] is True
    host = next(n for n in data["nodes"] if n["node"] == "host")
    rule = next(c for c in host["checks"] if c["subject"] == "masquerade")
    assert "masquerade (handle" in rule["actual"]


def test_down_twice(topology_file: Path, prefix: str) -> None:
    assert pathtrace("lab", "up", "--topology", str(topology_file)).returncode == 0
    first = pathtrace("lab", "down", "--topology", str(topology_file))
    assert first.returncode == 0 and "removed 4 namespaces" in first.stdout
    second = pathtrace("lab", "down", "--topology", str(topology_file))
    assert second.returncode == 0 and "no lab to remove" in second.stdout
    assert not [n for n in netns.names() if n.startswith(prefix)]


@pytest.mark.parametrize("namespaces_made", [1, 3])
def test_down_heals_a_killed_up(topology_file: Path, prefix: str, namespaces_made: int) -> None:
    up = subprocess.Popen(
        [sys.executable, "-m", "pathtrace", "lab", "up", "--topology", str(topology_file)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and up.poll() is None:
        if len([n for n in netns.names() if n.startswith(prefix)]) >= namespaces_made:
            break
        time.sleep(0.001)
    os.kill(up.pid, signal.SIGKILL)
    up.wait()
    down = pathtrace("lab", "down", "--topology", str(topology_file))
    assert down.returncode == 0, down.stderr
    assert not [n for n in netns.names() if n.startswith(prefix)]
    # And an `up` after the killed one heals instead of failing.
    assert pathtrace("lab", "up", "--topology", str(topology_file)).returncode == 0
    assert status.observe(topology.load(topology_file)).healthy


def test_not_root_is_one_clear_line(topology_file: Path, prefix: str) -> None:
    result = subprocess.run(
        [
            "setpriv",
            "--bounding-set",
            "-sys_admin,-net_admin",
            "--",
            sys.executable,
            "-m",
            "pathtrace",
            "lab",
            "up",
            "--topology",
            str(topology_file),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 3
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "CAP_SYS_ADMIN" in result.stderr and "root" in result.stderr
    assert not [n for n in netns.names() if n.startswith(prefix)]


def test_name_clash_with_a_foreign_namespace(topology_file: Path, prefix: str) -> None:
    foreign = f"{prefix}container2"
    subprocess.run(["ip", "netns", "add", foreign], check=True)
    try:
        result = pathtrace("lab", "up", "--topology", str(topology_file))
        assert result.returncode == 5
        assert f"namespace {foreign} exists and was not made by pathtrace" in result.stderr
        assert result.stderr.count("\n") == 1
        assert [n for n in netns.names() if n.startswith(prefix)] == [foreign]
        # down leaves it alone too.
        assert pathtrace("lab", "down", "--topology", str(topology_file)).returncode == 0
        assert netns.exists(foreign)
    finally:
        subprocess.run(["ip", "netns", "delete", foreign], check=True)


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (('"192.168.100.3/24"', '"192.168.100.2/24"'), "address clash"),
        (('master = "br0"', 'master = "br1"'), "nodes.host.interfaces.veth-host1.master"),
        (('peer = "wan:eth0"', 'peer = "wan"'), "nodes.host.interfaces.eth0.peer"),
    ],
)
def test_bad_topology_file_leaves_nothing(
    topology_file: Path, prefix: str, edit: tuple[str, str], field: str
) -> None:
    topology_file.write_text(topology_file.read_text().replace(*edit, 1))
    result = pathtrace("lab", "up", "--topology", str(topology_file))
    assert result.returncode == 4
    assert field in result.stderr and "Traceback" not in result.stderr
    assert not [n for n in netns.names() if n.startswith(prefix)]


def _wait_for_listening(sniffer: subprocess.Popen[str]) -> None:
    assert sniffer.stderr is not None
    for line in sniffer.stderr:  # tcpdump says "listening on ..." once armed
        if "listening" in line:
            return
    raise AssertionError("tcpdump did not start")


CONNECT = """
import socket, sys
socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5).close()
"""
