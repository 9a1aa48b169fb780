"""`watch`'s filter in the kernel picks exactly the packets libpcap's does.

The probes interpret the classic BPF that tcpdump compiles (probes/filter.bpf.h).
Packets of every kind the expressions below tell apart (protocols, ports, TCP
flags, TTLs, lengths, fragments, IP options, IPv6) are sent from namespace a,
each its own flow and IP id; the packets the probes picked (their events' IP
ids) must be the ones `tcpdump -r` matches in a raw-IP pcap of the same bytes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.packet import Raw
from scapy.utils import wrpcap

from pathtrace.capture.filter import compile_watch_filter
from pathtrace.kernel.decode import DecodeContext, decode
from pathtrace.kernel.engine import for_watch
from pathtrace.kernel.reach import reach
from pathtrace.system import netns

pytestmark = pytest.mark.root

EXPRESSIONS = [
    "udp port 53",
    "tcp[tcpflags] & tcp-syn != 0 and not tcp[tcpflags] & tcp-ack != 0",
    "host 10.9.0.2 and not icmp",
    "ip[8] < 10",
    "len > 200",
    "icmp[icmptype] = icmp-echo",
    "tcp dst portrange 8000-8100 or udp src port 7",
    "ip[6:2] & 0x1fff != 0 or ip[6] & 0x20 != 0",  # fragments
    "ip6 and udp",
    "udp[8:4] = 0x41424344",  # a payload word past the header
    # Filters the probes test first by the comparisons every match passes
    # (kernel/needs.py): masked addresses, IPv6 words, ports past IPv4's header.
    "net 10.9.0.0/24 and udp port 53",
    "ip6 dst host fd09::2",
    "dst host 10.9.0.3 or udp dst port 9",
]


def _packets() -> list[IP | IPv6]:
    a, b = "10.9.0.1", "10.9.0.2"
    out: list[IP | IPv6] = []
    n = 0

    def ip(**kw: object) -> IP:
        nonlocal n
        n += 1
        return IP(src=a, dst=b, id=1000 + n, **kw)  # type: ignore[arg-type]

    for sport in (53, 1053, 7):
        out.append(ip() / UDP(sport=sport + 40000 if sport != 7 else 7, dport=53) / Raw(b"q" * 20))
    out.append(ip() / UDP(sport=40100, dport=5353) / Raw(b"ABCD" + b"x" * 20))
    out.append(ip(ttl=5) / UDP(sport=40101, dport=9) / Raw(b"x" * 10))
    out.append(ip() / UDP(sport=40102, dport=9) / Raw(b"x" * 300))
    for flags, dport in (("S", 80), ("SA", 81), ("A", 8050), ("S", 8100), ("R", 8101)):
        out.append(ip() / TCP(sport=40200 + len(out), dport=dport, flags=flags))
    out.append(ip(options=b"\x01\x01\x01\x00") / TCP(sport=40300, dport=8001, flags="S"))
    for kind in (8, 0, 13):
        out.append(ip() / ICMP(type=kind, id=500 + len(out)) / Raw(b"p" * 16))
    out.append(ip(flags="MF") / UDP(sport=40400, dport=53) / Raw(b"f" * 32))
    out.append(ip(frag=100) / Raw(b"g" * 40))
    inner = IP(src="10.99.0.1", dst="10.99.0.2", id=77) / UDP(sport=40600, dport=9) / Raw(b"i")
    out.append(ip(proto=47) / Raw(b"\x00\x00\x08\x00" + bytes(inner)))  # GRE
    out.append(IPv6(src="fd09::1", dst="fd09::2", fl=7) / UDP(sport=40500, dport=53) / Raw(b"6"))
    out.append(IPv6(src="fd09::1", dst="fd09::2", fl=8) / TCP(sport=40501, dport=8000))
    # To another host of the network (addresses the filters' comparisons tell apart).
    out.append(IP(src=a, dst="10.9.0.7", id=2000) / UDP(sport=40700, dport=53) / Raw(b"o"))
    out.append(IPv6(src="fd09::1", dst="fd09::7") / TCP(sport=40701, dport=8000))
    out.append(IP(src="10.8.0.1", dst="10.8.0.2", id=2001) / UDP(sport=40702, dport=53) / Raw(b"s"))
    return out


SEND = r"""
import socket, sys
for hexed in sys.argv[1:]:
    data = bytes.fromhex(hexed)
    v6 = data[0] >> 4 == 6
    family = socket.AF_INET6 if v6 else socket.AF_INET
    s = socket.socket(family, socket.SOCK_RAW, socket.IPPROTO_RAW)
    if not v6:
        s.setsockopt(socket.SOL_IP, socket.IP_HDRINCL, 1)
    dst = socket.inet_ntop(family, data[24:40] if v6 else data[16:20])
    s.sendto(data, (dst, 0))
    s.close()
"""


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[str, str]]:
    a, b = f"ptwf-a-{os.getpid()}", f"ptwf-b-{os.getpid()}"
    try:
        subprocess.run(
            ["bash", "-c", f"""set -e
            ip netns add {a}; ip netns add {b}
            ip -n {a} link add ptwf0 type veth peer name ptwf1 netns {b}
            ip -n {a} addr add 10.9.0.1/24 dev ptwf0; ip -n {b} addr add 10.9.0.2/24 dev ptwf1
            ip -n {a} addr add fd09::1/64 dev ptwf0 nodad
            ip -n {b} addr add fd09::2/64 dev ptwf1 nodad
            ip -n {a} link set ptwf0 up; ip -n {b} link set ptwf1 up
            ip -n {a} neigh add 10.9.0.2 lladdr 02:00:00:00:00:02 dev ptwf0
            ip -n {a} neigh add fd09::2 lladdr 02:00:00:00:00:02 dev ptwf0
            ip -n {a} neigh add 10.9.0.7 lladdr 02:00:00:00:00:07 dev ptwf0
            ip -n {a} neigh add fd09::7 lladdr 02:00:00:00:00:07 dev ptwf0
            ip -n {a} route add 10.8.0.0/24 via 10.9.0.7
            """],
            check=True,
        )  # fmt: skip
        yield a, b
    finally:
        for name in (a, b):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_the_probes_pick_what_libpcap_matches(
    pair: tuple[str, str], expression: str, tmp_path: Path
) -> None:
    a, _ = pair
    packets = _packets()
    wrpcap(str(tmp_path / "all.pcap"), packets, linktype=101)  # LINKTYPE_RAW
    matched = subprocess.run(
        ["tcpdump", "-r", str(tmp_path / "all.pcap"), "-w", str(tmp_path / "m.pcap"), expression],
        capture_output=True,
        check=True,
    )
    assert matched.returncode == 0
    from scapy.utils import rdpcap

    expected = {_ident(_as_ip(p)) for p in rdpcap(str(tmp_path / "m.pcap"))}
    tracer = for_watch(1000, 77)
    tracer.namespaces = [a]
    with tracer:
        tracer.watch(compile_watch_filter(expression), [a])
        netns.run(a, [sys.executable, "-c", SEND, *(bytes(p).hex() for p in packets)])
        time.sleep(0.2)
        assert tracer.layout is not None
        ctx = DecodeContext()
        events = [decode(tracer.layout.unpack(r), ctx) for r in tracer.drain()]
        stats = tracer.watch_stats()
    picked = {
        (e.protocol, e.sport) if e.protocol in _L4 and e.sport else ("ip", e.ip_id) for e in events
    }
    assert picked == expected, (expression, sorted(picked), sorted(expected))
    assert stats["matched"] == len(expected), stats
    # Where the filter's paths all compare an address or a port, the packets the
    # protocol gate lets through and that fail every comparison are passed over
    # unrun as they enter (the namespace's own background traffic may add to both).
    gate = reach(compile_watch_filter(expression), udp_tunnels=False)
    passing = [
        raw
        for raw in map(bytes, packets)
        if gate.pick[raw[0] >> 4 == 6][raw[9 - 3 * (raw[0] >> 4 == 6)]]
    ]
    atoms = tracer.watch_atoms
    out = sum(1 for raw in passing if atoms and not any(a.holds(raw) for a in atoms))
    assert stats["ruled_out"] >= out and stats["filtered"] >= len(passing) - out, (out, stats)
    assert not atoms or out, "each filter with atoms has packets failing them"


_L4 = ("tcp", "udp", "icmp", "icmpv6")


def _as_ip(packet: object) -> IP | IPv6:
    raw = bytes(packet)  # type: ignore[call-overload]
    return IPv6(raw) if raw[0] >> 4 == 6 else IP(raw)


def _ident(packet: IP | IPv6) -> tuple[str, int]:
    """How a packet's events name it: its protocol and source port (ICMP: the echo
    id), the packet a GRE header carries for GRE, its IP id for a later fragment."""
    if IP in packet and packet[IP].proto == 47:
        return _ident(IP(bytes(packet[IP].payload)[4:]))
    if IP in packet and packet[IP].frag:
        return ("ip", packet[IP].id)
    for layer, name in ((UDP, "udp"), (TCP, "tcp")):
        if layer in packet:
            return (name, packet[layer].sport)
    if ICMP in packet:
        return ("icmp", packet[ICMP].id)
    return ("ip", packet[IP].id)
