"""Answers from real servers, known by their flow: a UDP echo (RFC 862), a UDP
server answering another payload, dnsmasq answering a DNS query through a DNAT,
TCP to a listening and to a closed port, all through a masquerading router; and
a server answering from another address than the one asked.

In a scratch host: c1 - gw - srv, gw masquerades out of vc and publishes
srv's DNS on 10.7.0.254:53 by DNAT (iptables, as the tutorial writes it). Ground
truth beside pathtrace: tcpdump on c1's interface (what came back, from whom),
gw's per-rule counters and conntrack.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests import scratch

pytestmark = pytest.mark.root
SCHEMA = json.loads(
    (Path(__file__).parents[2] / "pathtrace" / "output" / "schema.json").read_text()
)

SERVERS = r"""
import json, subprocess, sys, time

def sh(command):
    subprocess.run(["bash", "-c", command], check=True, capture_output=True)

sh('''set -e
ip netns add c1; ip netns add gw; ip netns add srv
ip link add va type veth peer name vb; ip link set va netns c1; ip link set vb netns gw
ip link add vc type veth peer name vd; ip link set vc netns gw; ip link set vd netns srv
ip -n c1 addr add 10.7.0.1/24 dev va; ip -n gw addr add 10.7.0.254/24 dev vb
ip -n gw addr add 10.8.0.254/24 dev vc; ip -n srv addr add 10.8.0.2/24 dev vd
ip -n srv addr add 10.8.0.3/24 dev vd
for n in c1 gw srv; do ip -n $n link set lo up; done
ip -n c1 link set va up; ip -n gw link set vb up; ip -n gw link set vc up; ip -n srv link set vd up
ip -n c1 route add default via 10.7.0.254; ip -n srv route add default via 10.8.0.254
ip netns exec gw sysctl -qw net.ipv4.ip_forward=1
ip -n c1 addr add fd07::1/64 dev va nodad; ip -n gw addr add fd07::fe/64 dev vb nodad
ip -n gw addr add fd08::fe/64 dev vc nodad; ip -n srv addr add fd08::2/64 dev vd nodad
ip -n c1 route add default via fd07::fe; ip -n srv route add default via fd08::fe
ip netns exec gw sysctl -qw net.ipv6.conf.all.forwarding=1
ip netns exec gw iptables -t nat -A POSTROUTING -o vc -j MASQUERADE
ip netns exec gw iptables -t nat -A PREROUTING -i vb -d 10.7.0.254 -p udp --dport 53 \
  -j DNAT --to-destination 10.8.0.2:53
ip netns exec gw iptables -t nat -A PREROUTING -i vb -d 10.7.0.254 -p tcp --dport 8080 \
  -j DNAT --to-destination 10.8.0.2:81
''')
SERVER = '''
import socket, sys
port, how = int(sys.argv[1]), sys.argv[2]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("10.8.0.2", port))
other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); other.bind(("10.8.0.3", port))
while True:
    data, peer = s.recvfrom(65535)
    if how == "echo": s.sendto(data, peer)
    elif how == "other": s.sendto(b"not your tag", peer)
    else: other.sendto(b"from the other address", peer)
'''
TCP = '''
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.8.0.2", 80)); s.listen(64)
while True: s.accept()[0].close()
'''
SERVER6 = '''
import socket
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); s.bind(("fd08::2", 5300))
while True:
    data, peer = s.recvfrom(65535)
    s.sendto(b"not your tag", peer)
'''
def inside(ns, *argv, **kw):
    return subprocess.Popen(["ip", "netns", "exec", ns, *argv], **kw)
for port, how in ((7, "echo"), (5300, "other"), (5301, "elsewhere")):
    inside("srv", sys.executable, "-c", SERVER, str(port), how)
inside("srv", sys.executable, "-c", TCP)
inside("srv", sys.executable, "-c", SERVER6)
inside("srv", "dnsmasq", "--no-daemon", "--no-resolv", "--no-hosts", "--pid-file=",
       "--user=root", "--listen-address=10.8.0.2", "--bind-interfaces",
       "--address=/example.com/192.0.2.7", stderr=subprocess.DEVNULL)
dump = inside("c1", "tcpdump", "-i", "va", "-n", "-U", "-w", "/tmp/c1.pcap",
              stderr=subprocess.DEVNULL)
time.sleep(1.0)
cases = {
    "echo": ["udp", "10.8.0.2:7"],
    "other": ["udp", "10.8.0.2:5300"],
    "other6": ["udp", "[fd08::2]:5300"],
    "elsewhere": ["udp", "10.8.0.2:5301"],
    "dns": ["dns", "10.7.0.254", "--query", "example.com"],
    "tcp_open": ["tcp", "10.8.0.2:80"],
    "tcp_closed": ["tcp", "10.8.0.2:81"],
    "dnat_closed": ["tcp", "10.7.0.254:8080"],
}
out = {}
for name, args in cases.items():
    done = subprocess.run([sys.executable, "-m", "pathtrace", "run", *args, "--from", "c1",
                           "-c", "2", "--json"], capture_output=True, text=True, timeout=90)
    out[name] = {"code": done.returncode, "report": json.loads(done.stdout or "null"),
                 "stderr": done.stderr}
time.sleep(1.0)  # tcpdump writes the last answers
dump.terminate(); dump.wait()
out["tcpdump"] = subprocess.run(["tcpdump", "-r", "/tmp/c1.pcap", "-n"],
                                capture_output=True, text=True).stdout
out["counters"] = subprocess.run(["ip", "netns", "exec", "gw", "iptables", "-t", "nat", "-L",
                                  "-n", "-v", "-x"], capture_output=True, text=True).stdout
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def seen() -> dict[str, Any]:
    if shutil.which("dnsmasq") is None:
        pytest.fail("dnsmasq is missing: `make setup` installs dnsmasq-base")
    return scratch.result(SERVERS, timeout=400)  # type: ignore[no-any-return]


def _hops(probe: dict[str, Any], series: str) -> list[dict[str, Any]]:
    return (probe.get(series) or {}).get("hops", [])


def _texts(probe: dict[str, Any], series: str) -> list[str]:
    return [h["text"] for h in _hops(probe, series)]


def _answered(case: dict[str, Any]) -> list[dict[str, Any]]:
    assert case["code"] == 0, case["stderr"]
    probes = case["report"]["probes"]
    assert [p["verdict"]["outcome"] for p in probes] == ["answered", "answered"], probes
    return probes  # type: ignore[no-any-return]


def _back_through_gw(probe: dict[str, Any], port: int) -> None:
    """The answer's way, hop for hop: srv answers, gw un-SNATs (never a rule-less DNAT)
    and routes it to c1, c1 takes it in."""
    reply = _hops(probe, "reply")
    assert [h["node"] for h in reply][0] == "srv" and reply[-1]["node"] == "c1", reply
    kinds = [h["translation"]["kind"] for h in reply if h.get("translation")]
    assert "un-SNAT" in kinds and "DNAT" not in kinds and "SNAT" not in kinds, kinds
    assert reply[0]["packet"]["sport"] == port
    assert reply[-1]["text"].startswith("c1 takes the answer in"), reply[-1]
    request_nodes = [h["node"] for h in _hops(probe, "request")]
    assert request_nodes[0] == "c1" and "gw" in request_nodes and request_nodes[-1] == "srv"


def _answers_in_tcpdump(seen: dict[str, Any], line: str, then: str = "") -> int:
    rows = seen["tcpdump"].splitlines()
    return sum(
        1
        for row in rows
        if (f" IP {line}" in row or f" IP6 {line}" in row) and then in row.split(line, 1)[1]
    )


def test_an_echo_server_answer_is_the_reply_not_the_request_going_on(seen: Any) -> None:
    probes = _answered(seen["echo"])
    for probe in probes:
        _back_through_gw(probe, 7)
        # The echoed tag did not make the answer a request: the request ends at srv.
        assert all(h["node"] != "c1" for h in _hops(probe, "request")[1:])
    assert _answers_in_tcpdump(seen, "10.8.0.2.7 > 10.7.0.1.") == 2


def test_an_answer_with_another_payload_is_known_by_its_flow(seen: Any) -> None:
    for probe in _answered(seen["other"]):
        _back_through_gw(probe, 5300)
        assert "from" not in probe["verdict"]["summary"].split("us", 1)[1]
    assert _answers_in_tcpdump(seen, "10.8.0.2.5300 > 10.7.0.1.") == 2


def test_an_ipv6_answer_with_another_payload_is_known_by_its_flow(seen: Any) -> None:
    for probe in _answered(seen["other6"]):
        reply = _hops(probe, "reply")
        assert [h["node"] for h in reply][0] == "srv" and reply[-1]["node"] == "c1", reply
        assert reply[0]["packet"]["src"] == "fd08::2" and reply[0]["packet"]["sport"] == 5300
    assert _answers_in_tcpdump(seen, "fd08::2.5300 > fd07::1.", "UDP") == 2


def test_a_dns_query_through_a_dnat_is_answered_by_dnsmasq(seen: Any) -> None:
    # The report keeps its contract, formats checked (the target, the new fields).
    jsonschema.validate(seen["dns"]["report"], SCHEMA, format_checker=jsonschema.FormatChecker())
    jsonschema.validate(seen["other6"]["report"], SCHEMA, format_checker=jsonschema.FormatChecker())
    for probe in _answered(seen["dns"]):
        request = _hops(probe, "request")
        dnat = [t for h in request if (t := h.get("translation")) and t["kind"] == "DNAT"]
        assert dnat and dnat[0]["after"] == "10.8.0.2:53", dnat
        assert "dnat to 10.8.0.2:53" in dnat[0]["rule"]
        reply = _hops(probe, "reply")
        kinds = [h["translation"]["kind"] for h in reply if h.get("translation")]
        assert kinds == ["un-SNAT", "un-DNAT"], kinds
        assert reply[-1]["packet"]["src"] == "10.7.0.254"  # as the client asked
        assert probe["verdict"]["where"] == "srv"
        # What dnsmasq answered, read from the answer the capture saw arrive.
        assert probe["verdict"]["summary"].endswith(": DNS NOERROR, example.com. A 192.0.2.7")
    # tcpdump saw dnsmasq's answers (A 192.0.2.7) arrive from the address asked.
    assert _answers_in_tcpdump(seen, "10.7.0.254.53 > 10.7.0.1.", " A 192.0.2.7") == 2
    dnat_line = next(r for r in seen["counters"].splitlines() if "DNAT" in r and "udp" in r)
    assert int(dnat_line.split()[0]) >= 2  # the rule the report cites counted them


def test_tcp_to_a_listening_port_is_answered_and_to_a_closed_one_refused(seen: Any) -> None:
    for probe in _answered(seen["tcp_open"]):
        _back_through_gw(probe, 80)
        assert _hops(probe, "reply")[0]["text"]  # the SYN-ACK's way
    closed = seen["tcp_closed"]
    assert closed["code"] == 1, closed["stderr"]
    for probe in closed["report"]["probes"]:
        assert probe["verdict"]["outcome"] == "rejected", probe["verdict"]
        assert probe["verdict"]["where"] == "srv"
    assert _answers_in_tcpdump(seen, "10.8.0.2.81 > 10.7.0.1.") == 2  # the RSTs


def test_a_dnat_to_a_port_nobody_listens_on_names_the_rule_not_only_the_service(
    seen: Any,
) -> None:
    case = seen["dnat_closed"]
    assert case["code"] == 1, case["stderr"]
    for probe in case["report"]["probes"]:
        verdict = probe["verdict"]
        assert verdict["outcome"] == "rejected" and verdict["where"] == "srv", verdict
        # dnsmasq listens on tcp 53 too: every listening port of that address is named.
        assert (
            "sends it to port 81, while the service there listens on 10.8.0.2:53, "
            in (verdict["cause"])
        ), verdict
        assert verdict["cause"].endswith("10.8.0.2:80"), verdict
        assert verdict["fix"].startswith("make the DNAT (rule handle"), verdict
        assert "translate to a port that listens (10.8.0.2:53, 10.8.0.2:80)" in verdict["fix"]


def test_an_answer_from_another_address_is_said_and_not_taken_as_the_reply(seen: Any) -> None:
    # srv answers from 10.8.0.3: gw's conntrack has no entry for that flow, so
    # nothing un-SNATs it; it is addressed to gw, which has no socket for it.
    case = seen["elsewhere"]
    assert _answers_in_tcpdump(seen, "10.8.0.3.5301 >") == 0
    for probe in case["report"]["probes"]:
        reply = _hops(probe, "reply")
        assert reply and reply[0]["packet"]["src"] == "10.8.0.3", probe
        assert all(h["node"] != "c1" for h in reply), reply
        verdict = probe["verdict"]
        assert verdict["outcome"] == "dropped" and verdict["where"] == "gw/vc", verdict
        assert verdict["summary"].startswith(
            "srv answered from 10.8.0.3:5301, not 10.8.0.2:5301 it was sent to, so gw did not "
            "translate the answer back"
        ), verdict
        assert "from 10.8.0.2:5301, but srv sent it from 10.8.0.3:5301" in verdict["cause"]
        assert "listener" not in (verdict["fix"] or "")  # not gw's missing service
        # The NO_SOCKET error gw sent went to the answer's sender, and is shown as such.
        errors = probe["errors"]
        assert errors and errors[0]["hops"][0]["packet"]["dst"] == "10.8.0.3", errors
