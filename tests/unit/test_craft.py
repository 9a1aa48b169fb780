"""Probes are written out by hand (pathtrace/inject/craft.py); scapy, which
knows these headers, must build the very same bytes."""

from __future__ import annotations

from ipaddress import ip_address
from typing import Any

import pytest

from pathtrace.inject import craft, send
from pathtrace.model import tag
from pathtrace.system import scapy_setup

RUN = 0x1234ABCD


def _by_scapy(probe: send.Probe, src: Any, run: int, index: int) -> bytes:
    scapy_setup.prepare()
    from scapy.layers.dns import DNS, DNSQR
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
    from scapy.packet import Raw

    ip: Any
    if probe.dst.version == 6:
        ip = IPv6(src=str(src), dst=str(probe.dst), hlim=probe.ttl, fl=(run + index) & 0xFFFF)
    else:
        ip = IP(
            src=str(src),
            dst=str(probe.dst),
            ttl=probe.ttl,
            flags="DF" if probe.dont_fragment else 0,
            id=(run + index) & 0xFFFF,
        )
    data = Raw(tag.payload(run, index, probe.size))
    sport = tag.source_port(run, index)
    if probe.kind == "ping" and probe.dst.version == 6:
        payload = tag.payload(run, index, probe.size)
        return bytes(ip / ICMPv6EchoRequest(id=run & 0xFFFF, seq=index, data=payload))
    if probe.kind == "ping":
        return bytes(ip / ICMP(type=8, id=run & 0xFFFF, seq=index) / data)
    if probe.kind == "udp":
        return bytes(ip / UDP(sport=sport, dport=probe.port) / data)
    if probe.kind == "dns":
        query = DNS(id=(run + index) & 0xFFFF, rd=1, qd=DNSQR(qname=probe.query, qtype="A"))
        return bytes(ip / UDP(sport=sport, dport=probe.port) / query)
    seq = tag.tcp_isn(run, index)
    return bytes(ip / TCP(sport=sport, dport=probe.port, flags="S", seq=seq, window=64240))


PAIRS = [("10.22.0.2", "8.8.8.8"), ("fd00:100::2", "2001:4860:4860::8888")]


@pytest.mark.parametrize("kind", ["ping", "udp", "dns", "tcp"])
@pytest.mark.parametrize("pair", PAIRS, ids=["v4", "v6"])
@pytest.mark.parametrize(
    ("index", "size", "ttl", "df"),
    [(0, 56, 64, False), (7, 12, 1, True), (65535, 1400, 255, False), (3, 0, 2, True)],
)
def test_same_bytes_as_scapy(
    kind: str, pair: tuple[str, str], index: int, size: int, ttl: int, df: bool
) -> None:
    src, dst = (ip_address(a) for a in pair)
    query = "a.very-long-label-for-a-test.example.com." if index == 7 else "example.com"
    probe = send.Probe(kind, dst, 53 if kind == "dns" else 8080, size, ttl, df, query)  # type: ignore[arg-type]
    assert send.build(probe, src, RUN, index) == _by_scapy(probe, src, RUN, index)


def test_udp_checksum_of_zero_is_sent_as_ffff() -> None:
    """RFC 768: a computed 0 goes out as 0xffff (0 means "not computed")."""
    src, dst = ip_address("10.0.0.1"), ip_address("10.0.0.2")
    for sport in range(1, 65536):  # find a datagram whose sum is 0
        protocol, datagram = craft.udp(src, dst, sport, 9, b"")
        body = datagram[:6] + b"\0\0"
        if craft.checksum(craft._pseudo(src, dst, protocol, 8) + body) == 0:
            assert datagram[6:8] == b"\xff\xff"
            return
    pytest.fail("no datagram with a zero checksum found")


@pytest.mark.parametrize("name", ["", "a..b", "x" * 64 + ".com"])
def test_names_a_query_cannot_carry(name: str) -> None:
    with pytest.raises(craft.BadName):
        craft.dns_query(1, name)


@pytest.mark.parametrize(("size", "mtu"), [(1400, 576), (56, 68), (3000, 1500), (100, 121)])
def test_fragments_as_scapy_cuts_them(size: int, mtu: int) -> None:
    scapy_setup.prepare()
    from scapy.layers.inet import IP, fragment

    src, dst = ip_address("10.22.0.2"), ip_address("8.8.8.8")
    packet = send.build(send.Probe("ping", dst, 0, size), src, RUN, 3)
    mine = craft.fragments(packet, mtu)
    theirs = [bytes(f) for f in fragment(IP(packet), fragsize=(mtu - 20) // 8 * 8)]
    assert mine == theirs
    assert all(len(f) <= mtu for f in mine)
    assert b"".join(f[20:] for f in mine) == packet[20:]


def test_df_is_read_from_the_header() -> None:
    src, dst = ip_address("10.22.0.2"), ip_address("8.8.8.8")
    assert craft.dont_fragment(send.build(send.Probe("ping", dst, dont_fragment=True), src, 1, 0))
    assert not craft.dont_fragment(send.build(send.Probe("ping", dst), src, 1, 0))
