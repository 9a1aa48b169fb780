"""Crafting tagged packets with scapy and sending them from inside a namespace.

The socket is made inside the source namespace (a raw socket that takes whole
IP packets: IPv4 with IP_HDRINCL, IPv6 by IPPROTO_RAW), so the packet takes
that namespace's routes, neighbours and firewall, as a container's own would;
the source address is the one that namespace's routing picks for the destination.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from ipaddress import ip_address
from typing import Any

from pathtrace.model import tag
from pathtrace.model.options import Address, Kind
from pathtrace.system import netns, scapy_setup


@dataclass(frozen=True)
class Probe:
    kind: Kind
    dst: Address
    port: int = 0
    size: int = 56  # payload bytes, tag included (ping's default)
    ttl: int = 64
    dont_fragment: bool = False
    query: str = "example.com"  # dns: the name asked


class NoRoute(Exception):
    """The source namespace has no route to the target: nothing can be sent."""


def source_address(namespace: str, dst: Address) -> Address:
    """The address ``namespace`` would send from to reach ``dst``."""
    ipr = netns.iproute(namespace)
    family = socket.AF_INET6 if dst.version == 6 else socket.AF_INET
    try:
        routes = ipr.route("get", dst=str(dst), family=family)
    except Exception as error:  # pyroute2 raises NetlinkError(ENETUNREACH) and kin
        raise NoRoute(str(error)) from None
    finally:
        ipr.close()
    src = routes[0].get("prefsrc") if routes else None
    if not src:
        raise NoRoute("no source address")
    return ip_address(src)


def build(probe: Probe, src: Address, run: int, index: int) -> bytes:
    """The whole IP packet, checksums done by scapy."""
    scapy_setup.prepare()
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
    from scapy.packet import Raw

    ip: Any
    if probe.dst.version == 6:
        # No IP id in IPv6: the flow label's low bits tell the packets apart
        # (the probes follow a packet by them, as by the IPv4 id).
        ip = IPv6(src=str(src), dst=str(probe.dst), hlim=probe.ttl, fl=(run + index) & 0xFFFF)
    else:
        ip = IP(
            src=str(src),
            dst=str(probe.dst),
            ttl=probe.ttl,
            flags="DF" if probe.dont_fragment else 0,
            id=(run + index) & 0xFFFF,
        )
    packet: Any
    if probe.kind == "ping" and probe.dst.version == 6:
        packet = ip / ICMPv6EchoRequest(
            id=run & 0xFFFF, seq=index & 0xFFFF, data=tag.payload(run, index, probe.size)
        )
    elif probe.kind == "ping":
        packet = (
            ip
            / ICMP(type=8, id=run & 0xFFFF, seq=index & 0xFFFF)
            / Raw(tag.payload(run, index, probe.size))
        )
    elif probe.kind == "udp":
        packet = (
            ip
            / UDP(sport=tag.source_port(run, index), dport=probe.port)
            / Raw(tag.payload(run, index, probe.size))
        )
    elif probe.kind == "dns":
        # A query as resolvers send it: no room for a tag, so the probes know it
        # by its flow (the tracer is told it before it is sent).
        from scapy.layers.dns import DNS, DNSQR

        packet = (
            ip
            / UDP(sport=tag.source_port(run, index), dport=probe.port)
            / DNS(id=(run + index) & 0xFFFF, rd=1, qd=DNSQR(qname=probe.query, qtype="A"))
        )
    else:
        packet = ip / TCP(
            sport=tag.source_port(run, index),
            dport=probe.port,
            flags="S",
            seq=tag.tcp_isn(run, index),
            window=64240,
        )
    return bytes(packet)


class Sender:
    """Raw sockets inside ``namespace``; send whole IP packets."""

    def __init__(self, namespace: str) -> None:
        with netns.entered(namespace):
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
            # IPPROTO_RAW over IPv6 means the caller writes the IPv6 header.
            self.sock6 = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
        self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)

    def send(self, packet: bytes, dst: Address) -> None:
        if dst.version == 6:
            self.sock6.sendto(packet, (str(dst), 0))
        else:
            self.sock.sendto(packet, (str(dst), 0))

    def close(self) -> None:
        self.sock.close()
        self.sock6.close()

    def __enter__(self) -> Sender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
