"""The plain netlink reader (system/rtnl.py) against iproute2's own answers, on
a lab with a policy rule, a blackhole route in another table, a static
neighbour, a clsact qdisc and listeners: what `ip -j` and `ss` print is what it
reads."""

from __future__ import annotations

import json
import socket
import subprocess

import pytest

from pathtrace.lab import topology
from pathtrace.system import netns

pytestmark = pytest.mark.root


def _ip(ns: str, *args: str) -> list[dict[str, object]]:
    out = subprocess.run(
        ["ip", "-n", ns, "-j", *args], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out or "[]")


def test_reads_what_iproute2_shows(lab: topology.Topology) -> None:
    host = lab.namespace("host")
    for command in (
        "ip rule add to 10.99.0.0/16 lookup 77 pref 500",
        "ip route add blackhole 10.99.0.0/16 table 77",
        "ip neigh replace 192.168.100.77 lladdr 02:00:00:00:00:77 dev br0 nud permanent",
        "tc qdisc add dev eth0 clsact",
    ):
        netns.run(host, ["sh", "-c", command])
    with netns.rtnl(host) as r:
        links = {m.get("ifname"): m for m in r.get_links()}
        assert set(links) == {str(x["ifname"]) for x in _ip(host, "link")}
        for shown in _ip(host, "-d", "link"):
            mine = links[str(shown["ifname"])]
            assert mine["index"] == shown["ifindex"]
            assert mine.get("mtu") == shown["mtu"]
            kind = (shown.get("linkinfo") or {}).get("info_kind")  # type: ignore[union-attr]
            assert mine.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND") == kind
        addresses = {(m["index"], m.get("address"), m["prefixlen"]) for m in r.get_addr()}
        shown_addresses = {
            (x["ifindex"], a["local"], a["prefixlen"])
            for x in _ip(host, "addr")
            for a in x["addr_info"]  # type: ignore[attr-defined]
        }
        assert addresses == shown_addresses
        blackholes = [
            m for m in r.get_routes(socket.AF_INET, table=77) if m.get("dst") == "10.99.0.0"
        ]
        assert [m["type"] for m in blackholes] == [6]  # RTN_BLACKHOLE
        main = {(m.get("dst"), m["dst_len"]) for m in r.get_routes(socket.AF_INET, table=254)}
        shown_main = {
            (
                str(x["dst"]).split("/")[0] if x["dst"] != "default" else None,
                int(str(x["dst"]).split("/")[1])
                if "/" in str(x["dst"])
                else (0 if x["dst"] == "default" else 32),
            )
            for x in _ip(host, "route", "show", "table", "main")
        }
        assert main == shown_main
        rules = {m.get("FRA_PRIORITY") or 0 for m in r.get_rules(socket.AF_INET)}
        assert rules == {x["priority"] for x in _ip(host, "rule")}
        neighbours = {(m.get("dst"), m.get("lladdr")) for m in r.get_neighbours(socket.AF_INET)}
        assert ("192.168.100.77", "02:00:00:00:00:77") in neighbours
        assert (links["eth0"]["index"], "clsact") in r.qdisc_kinds()
        answer = r.route_get("8.8.8.8", socket.AF_INET)
        assert answer[0].get("RTA_OIF") == links["eth0"]["index"]
        with pytest.raises(OSError):
            r.route_get("10.99.1.1", socket.AF_INET)  # the blackhole refuses it


def test_listening_sockets_as_ss_shows_them(lab: topology.Topology) -> None:
    node = lab.namespace("container1")  # serves :80 (the reference lab)
    with netns.sock_diag(node) as diag:
        mine = {
            f"{'[' + a + ']' if ':' in a else a}:{p}"
            for family in (socket.AF_INET, socket.AF_INET6)
            for a, p in diag.sockets(family, socket.IPPROTO_TCP, 1 << 10)
        }
    out = subprocess.run(
        ["ip", "netns", "exec", node, "ss", "-Hltn"], check=True, capture_output=True, text=True
    ).stdout
    shown = {line.split()[3].replace("*", "0.0.0.0") for line in out.splitlines()}
    assert mine == shown and mine
