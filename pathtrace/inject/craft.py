"""The bytes of a probe: an IPv4 or IPv6 header and an ICMP echo, a UDP datagram,
a DNS query or a TCP SYN, checksums included.

Written out here rather than with scapy, whose import alone takes longer than a
three-probe run should (0.4 s here); these are the few fixed headers a probe
has, and the tests hold them byte for byte to what scapy builds.
"""

from __future__ import annotations

import struct
from ipaddress import IPv6Address

from pathtrace.model.options import Address

ICMP, TCP, UDP, ICMPV6 = 1, 6, 17, 58
DF = 0x4000
SYN = 0x02
WINDOW = 64240


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071)."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return int(~total & 0xFFFF)


def _pseudo(src: Address, dst: Address, protocol: int, length: int) -> bytes:
    if isinstance(dst, IPv6Address):
        return src.packed + dst.packed + struct.pack("!IxxxB", length, protocol)
    return src.packed + dst.packed + struct.pack("!xBH", protocol, length)


def _with_checksum(segment: bytes, at: int, pseudo: bytes, zero_is_ffff: bool) -> bytes:
    value = checksum(pseudo + segment)
    if value == 0 and zero_is_ffff:
        value = 0xFFFF  # UDP: 0 would mean "no checksum"
    return segment[:at] + struct.pack("!H", value) + segment[at + 2 :]


def ip(
    src: Address,
    dst: Address,
    protocol: int,
    payload: bytes,
    ttl: int,
    ident: int,
    dont_fragment: bool = False,
) -> bytes:
    """The IP packet carrying ``payload``; ``ident`` is the IPv4 id or the IPv6
    flow label (the probes tell packets apart by it)."""
    if isinstance(dst, IPv6Address):
        first = 6 << 28 | (ident & 0xFFFFF)
        return struct.pack("!IHBB", first, len(payload), protocol, ttl) + (
            src.packed + dst.packed + payload
        )
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(payload),
        ident & 0xFFFF,
        DF if dont_fragment else 0,
        ttl,
        protocol,
        0,
        src.packed,
        dst.packed,
    )
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    return header + payload


def dont_fragment(packet: bytes) -> bool:
    """Whether an IPv4 packet has DF set."""
    return bool(struct.unpack_from("!H", packet, 6)[0] & DF)


def fragments(packet: bytes, mtu: int) -> list[bytes]:
    """An IPv4 packet (no options) cut as the kernel cuts one for a link of ``mtu``
    bytes: the same id, MF on all but the last, offsets in 8-byte units."""
    header, payload = packet[:20], packet[20:]
    step = max(8, (mtu - 20) // 8 * 8)
    found = []
    for start in range(0, len(payload), step):
        chunk = payload[start : start + step]
        more = start + step < len(payload)
        flags = (0x2000 if more else 0) | (start // 8)
        piece = bytearray(header)
        struct.pack_into("!H", piece, 2, 20 + len(chunk))
        struct.pack_into("!H", piece, 6, flags)
        struct.pack_into("!H", piece, 10, 0)
        struct.pack_into("!H", piece, 10, checksum(bytes(piece)))
        found.append(bytes(piece) + chunk)
    return found


def echo(src: Address, dst: Address, ident: int, seq: int, data: bytes) -> tuple[int, bytes]:
    """(protocol, ICMP or ICMPv6 echo request)."""
    if isinstance(dst, IPv6Address):
        message = struct.pack("!BBHHH", 128, 0, 0, ident, seq) + data
        return ICMPV6, _with_checksum(message, 2, _pseudo(src, dst, ICMPV6, len(message)), False)
    message = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + data
    return ICMP, _with_checksum(message, 2, b"", False)


def udp(src: Address, dst: Address, sport: int, dport: int, data: bytes) -> tuple[int, bytes]:
    datagram = struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data
    return UDP, _with_checksum(datagram, 6, _pseudo(src, dst, UDP, len(datagram)), True)


def syn(src: Address, dst: Address, sport: int, dport: int, seq: int) -> tuple[int, bytes]:
    segment = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, SYN, WINDOW, 0, 0)
    return TCP, _with_checksum(segment, 16, _pseudo(src, dst, TCP, len(segment)), False)


class BadName(ValueError):
    """A DNS name that cannot be put in a query (an empty or over-long label)."""


def dns_query(ident: int, name: str) -> bytes:
    """A recursive query for the A record of ``name``."""
    try:
        labels = [label.encode("ascii") for label in name.rstrip(".").split(".")] if name else []
    except UnicodeEncodeError:
        labels = []
    if not labels or any(not 0 < len(label) < 64 for label in labels):
        raise BadName(f"{name!r} is not a DNS name (ASCII labels of 1 to 63 characters)")
    qname = b"".join(bytes([len(label)]) + label for label in labels) + b"\0"
    if len(qname) > 255:
        raise BadName(f"{name!r} is longer than a DNS name may be (255 bytes)")
    return struct.pack("!HHHHHH", ident & 0xFFFF, 0x0100, 1, 0, 0, 0) + qname + b"\0\x01\0\x01"
