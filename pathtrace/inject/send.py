"""Crafting tagged packets and sending them from inside a namespace.

The socket is made inside the source namespace (a raw socket that takes whole
IP packets: IPv4 with IP_HDRINCL, IPv6 by IPPROTO_RAW), so the packet takes
that namespace's routes, neighbours and firewall, as a container's own would;
the source address is the one that namespace's routing picks for the destination.
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass
from ipaddress import ip_address

from pathtrace.inject import craft
from pathtrace.model import tag
from pathtrace.model.options import Address, Kind
from pathtrace.system import netns


@dataclass(frozen=True)
class Probe:
    kind: Kind
    dst: Address
    port: int = 0
    size: int = 56  # payload bytes, tag included (ping's default)
    ttl: int = 64
    dont_fragment: bool = False
    query: str = "example.com"  # dns: the name asked


IP_MTU = 14  # linux/in.h (Python's socket module does not name it)


class NoRoute(Exception):
    """The source namespace has no route to the target: nothing can be sent."""


def source_address(namespace: str, dst: Address) -> Address:
    """The address ``namespace`` would send from to reach ``dst``."""
    ipr = netns.rtnl(namespace)
    family = socket.AF_INET6 if dst.version == 6 else socket.AF_INET
    try:
        routes = ipr.route_get(str(dst), family)
    except OSError as error:  # ENETUNREACH and kin
        raise NoRoute(error.strerror or str(error)) from None
    finally:
        ipr.close()
    src = routes[0].get("prefsrc") if routes else None
    if not src:
        raise NoRoute("no source address")
    return ip_address(src)


def build(probe: Probe, src: Address, run: int, index: int) -> bytes:
    """The whole IP packet, checksums done."""
    # No IP id in IPv6: the flow label's low bits tell the packets apart (the
    # probes follow a packet by them, as by the IPv4 id).
    ident = (run + index) & 0xFFFF
    dst = probe.dst
    if probe.kind == "ping":
        data = tag.payload(run, index, probe.size)
        protocol, payload = craft.echo(src, dst, run & 0xFFFF, index & 0xFFFF, data)
    elif probe.kind == "udp":
        sport = tag.source_port(run, index)
        protocol, payload = craft.udp(
            src, dst, sport, probe.port, tag.payload(run, index, probe.size)
        )
    elif probe.kind == "dns":
        # A query as resolvers send it: no room for a tag, so the probes know it
        # by its flow (the tracer is told it before it is sent).
        query = craft.dns_query(ident, probe.query)
        protocol, payload = craft.udp(src, dst, tag.source_port(run, index), probe.port, query)
    else:
        seq = tag.tcp_isn(run, index)
        protocol, payload = craft.syn(src, dst, tag.source_port(run, index), probe.port, seq)
    return craft.ip(src, dst, protocol, payload, probe.ttl, ident, probe.dont_fragment)


class Sender:
    """Raw sockets inside ``namespace``; send whole IP packets.

    A raw socket that takes the IP header never fragments: an IPv4 probe larger
    than the way's MTU, DF clear, is cut here into the fragments the kernel makes
    of an application's datagram (the first carries the headers and the tag)."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        with netns.entered(namespace):
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
            # IPPROTO_RAW over IPv6 means the caller writes the IPv6 header.
            self.sock6 = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
        self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)

    def send(self, packet: bytes, dst: Address) -> tuple[int, int] | None:
        """Sends ``packet``; (fragments, MTU) when it had to be cut, else None."""
        if dst.version == 6:
            self.sock6.sendto(packet, (str(dst), 0))
            return None
        try:
            self.sock.sendto(packet, (str(dst), 0))
            return None
        except OSError as error:
            if error.errno != errno.EMSGSIZE or craft.dont_fragment(packet):
                raise
        mtu = self.path_mtu(dst)
        pieces = craft.fragments(packet, mtu)
        for fragment in pieces:
            self.sock.sendto(fragment, (str(dst), 0))
        return len(pieces), mtu

    def path_mtu(self, dst: Address) -> int:
        """The MTU of the way to ``dst`` as the kernel knows it (route, device, or
        what ICMP "fragmentation needed" taught it): a connected UDP socket's IP_MTU."""
        with netns.entered(self.namespace):
            probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            probe.connect((str(dst), 9))  # sends nothing: UDP only picks the route
            return int(probe.getsockopt(socket.IPPROTO_IP, IP_MTU))
        finally:
            probe.close()

    def close(self) -> None:
        self.sock.close()
        self.sock6.close()

    def __enter__(self) -> Sender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
