"""The tag an injected packet carries (layout: probes/include/pathtrace.h).

ICMP echo and UDP carry it in the first 12 payload bytes, which NAT never
rewrites and which echo replies and ICMP errors bring back; a TCP SYN carries
it in its initial sequence number, which the SYN-ACK or RST acknowledges.

The one Python home of the format: writing it (``payload``, ``tcp_isn``),
recognising it in a frame (``classify``) and selecting it in a capture
(``capture_filter``, a pcap expression). The kernel's matcher is
probes/common.bpf.h; the lab's standalone responder keeps its own copy of the
two magics; tests check both against this module.
"""

from __future__ import annotations

import ipaddress
import secrets
import struct

MAGIC = 0x50545243  # "PTRC"
MAGIC_REPLY = 0x50545252  # "PTRR": what the lab's echo services answer with
TAG_SIZE = 12


def new_run() -> int:
    """A run id: random, so two runs (or two users) never claim each other's packets."""
    return secrets.randbits(32) or 1


def payload(run: int, index: int, size: int = 0) -> bytes:
    """The tag, padded to ``size`` bytes."""
    tag = struct.pack(">III", MAGIC, run & 0xFFFFFFFF, index)
    return tag + bytes(max(0, size - TAG_SIZE))


def tcp_isn(run: int, index: int) -> int:
    if not 0 <= index <= 0xFFFF:
        raise ValueError("a TCP probe index fits in 16 bits")
    return (run & 0xFFFF) << 16 | index


def source_port(run: int, index: int) -> int:
    """A UDP or TCP probe's source port: a run's own, so that two runs to one
    service do not share a flow (an answer is known by its flow)."""
    return 40000 + ((run & 0xFFFF) + index) % 20000


# UDP probes known by their flow, as the probes know them (pt_flows in
# probes/common.bpf.h): (destination address, source port, destination port)
# of a datagram -> (probe index, "request" or "reply").
Flows = dict[tuple[str, int, int], tuple[int, str]]


def flows_of(requests: list[tuple[int, str, str, int, int]]) -> Flows:
    """The flows of UDP requests seen as (index, src, dst, sport, dport) at their
    hops: each one's own, and its answer's (to the source, from the port asked)."""
    flows: Flows = {}
    for index, src, dst, sport, dport in requests:
        flows.setdefault((dst, sport, dport), (index, "request"))
        flows.setdefault((src, dport, sport), (index, "reply"))
    return flows


def classify(
    frame: bytes, run: int, flows: Flows | None = None, tunnels: dict[int, str] | None = None
) -> tuple[int, str] | None:
    """(probe index, tag kind) of an Ethernet frame carrying ``run``'s tag (or, UDP,
    of one of ``flows``), else None; ``tunnels``: UDP port -> kind (vxlan, geneve)
    of tunnel devices, whose datagrams carry the frame looked into."""
    inner = _inside_tunnel(frame, tunnels) if tunnels is not None else None
    if inner is not None:
        return classify(inner, run, flows)
    found = _by_flow(frame, flows) if flows else None
    if found is not None:
        return found
    if len(frame) >= 54 and frame[12:14] == b"\x86\xdd":
        return _classify6(frame[14:], run & 0xFFFFFFFF)
    if len(frame) < 34 or frame[12:14] != b"\x08\x00":
        return None
    ip = frame[14:]
    ihl = (ip[0] & 0x0F) * 4
    proto, l4 = ip[9], ip[ihl:]
    run &= 0xFFFFFFFF
    if proto == 1 and len(l4) >= 8:
        if l4[0] in (0, 8):
            return _payload_tag(l4[8:], "reply" if l4[0] == 0 else "request", run)
        if l4[0] in (3, 11, 12) and len(l4) >= 28:
            inner = l4[8:]
            inner_l4 = inner[(inner[0] & 0x0F) * 4 :]
            if inner[9] in (1, 17):
                found = _payload_tag(inner_l4[8:], "icmp_error", run)
                return (found[0], "icmp_error") if found else None
            if inner[9] == 6 and len(inner_l4) >= 8:
                return _seq_tag(struct.unpack(">I", inner_l4[4:8])[0], "icmp_error", run)
        return None
    return _classify_l4(proto, l4, run)


def _inside_tunnel(frame: bytes, tunnels: dict[int, str]) -> bytes | None:
    """The Ethernet frame (made up, for an inner IP packet) a tunnel packet carries:
    IPIP, GRE, or VXLAN and Geneve on the UDP ports of ``tunnels``, as the probes
    read them."""
    if frame[12:14] == b"\x08\x00" and len(frame) >= 34:
        proto, l4 = frame[23], frame[14 + (frame[14] & 0x0F) * 4 :]
    elif frame[12:14] == b"\x86\xdd" and len(frame) >= 54:
        proto, l4 = frame[20], frame[54:]
    else:
        return None
    if proto in (4, 41) and l4:
        return _as_frame(l4)
    if proto == 47 and len(l4) >= 4:
        flags, inner = struct.unpack(">HH", l4[:4])
        skip = 4 + 4 * sum(bool(flags & bit) for bit in (0x8000, 0x2000, 0x1000))
        if flags & 0x0007:
            return None
        if inner == 0x6558:
            return l4[skip:]
        return _as_frame(l4[skip:]) if inner in (0x0800, 0x86DD) else None
    if proto != 17 or len(l4) < 16:
        return None
    kind = tunnels.get(struct.unpack(">H", l4[2:4])[0])
    if kind == "vxlan" and l4[8] & 0x08:
        return l4[16:]
    if kind == "geneve" and l4[10:12] == b"\x65\x58":
        return l4[16 + (l4[8] & 0x3F) * 4 :]
    return None


def _as_frame(ip: bytes) -> bytes:
    """An IP packet behind a made-up Ethernet header: what ``classify`` reads."""
    return bytes(12) + (b"\x86\xdd" if ip[0] >> 4 == 6 else b"\x08\x00") + ip


def _by_flow(frame: bytes, flows: Flows) -> tuple[int, str] | None:
    """A UDP datagram (or an ICMP error quoting one) of a known flow."""
    ip = frame[14:]
    if frame[12:14] == b"\x08\x00" and len(ip) >= 28:
        proto, l4 = ip[9], ip[(ip[0] & 0x0F) * 4 :]
        dst = str(ipaddress.IPv4Address(ip[16:20]))
        quoted = proto == 1 and len(l4) >= 36 and l4[0] in (3, 11, 12)
        if quoted:
            inner = l4[8:]
            proto, l4 = inner[9], inner[(inner[0] & 0x0F) * 4 :]
            dst = str(ipaddress.IPv4Address(inner[16:20]))
    elif frame[12:14] == b"\x86\xdd" and len(ip) >= 48:
        proto, l4 = ip[6], ip[40:]
        dst = str(ipaddress.IPv6Address(ip[24:40]))
        quoted = proto == 58 and len(l4) >= 56 and 1 <= l4[0] <= 4
        if quoted:
            inner = l4[8:]
            proto, l4 = inner[6], inner[40:]
            dst = str(ipaddress.IPv6Address(inner[24:40]))
    else:
        return None
    if proto != 17 or len(l4) < 4:
        return None
    sport, dport = struct.unpack(">HH", l4[:4])
    found = flows.get((dst, sport, dport))
    if found is None:
        return None
    return (found[0], "icmp_error") if quoted else found


def read_payload(at: bytes) -> tuple[int, int, int] | None:
    """(magic, run, index) of a tag at the payload's start, or None."""
    if len(at) < 12:
        return None
    magic, tag_run, index = struct.unpack(">III", at[:12])
    return (magic, tag_run, index) if magic in (MAGIC, MAGIC_REPLY) else None


def _payload_tag(at: bytes, kind: str, run: int) -> tuple[int, str] | None:
    found = read_payload(at)
    if found is None or found[1] != run:
        return None
    magic, _, index = found
    return index, ("reply" if magic == MAGIC_REPLY else kind)


def _seq_tag(value: int, kind: str, run: int) -> tuple[int, str] | None:
    value &= 0xFFFFFFFF
    return (value & 0xFFFF, kind) if value >> 16 == run & 0xFFFF else None


def _classify6(ip: bytes, run: int) -> tuple[int, str] | None:
    """An IPv6 packet (no extension headers: the probes add none)."""
    proto, l4 = ip[6], ip[40:]
    if proto == 58 and len(l4) >= 8:
        if l4[0] in (128, 129):
            return _payload_tag(l4[8:], "reply" if l4[0] == 129 else "request", run)
        if 1 <= l4[0] <= 4 and len(l4) >= 48:
            inner = l4[8:]
            inner_l4 = inner[40:]
            if inner[6] in (58, 17):
                found = _payload_tag(inner_l4[8:], "icmp_error", run)
                return (found[0], "icmp_error") if found else None
            if inner[6] == 6 and len(inner_l4) >= 8:
                return _seq_tag(struct.unpack(">I", inner_l4[4:8])[0], "icmp_error", run)
        return None
    return _classify_l4(proto, l4, run)


def _classify_l4(proto: int, l4: bytes, run: int) -> tuple[int, str] | None:
    """UDP and TCP, the same over IPv4 and IPv6."""
    if proto == 17:
        return _payload_tag(l4[8:], "request", run)
    if proto == 6 and len(l4) >= 14:
        seq, ack = struct.unpack(">II", l4[4:12])
        flags = l4[13]
        if flags & 0x12 == 0x02:
            return _seq_tag(seq, "request", run)
        if flags & 0x12 == 0x12 or flags & 0x14 == 0x14:
            return _seq_tag(ack - 1, "reply", run)
        if flags & 0x04:
            return _seq_tag(seq - 1, "request", run)
    return None


def capture_filter(
    run: int,
    udp_port: int | None = None,
    tunnel_ports: tuple[int, ...] = (),
    ip_tunnels: bool = False,
) -> str:
    """The pcap expression that keeps what the probes' tag matcher keeps: tagged ICMP
    echo and UDP (request or answer), the handshake segments of a tagged TCP probe,
    and ICMP errors quoting a tagged packet (quoted IP header without options);
    with ``udp_port``, every datagram to or from it (UDP probes known by their flow:
    which of them are the run's is decided after, by ``classify``); with
    ``tunnel_ports``, every datagram to a tunnel device's port (VXLAN, Geneve); with
    ``ip_tunnels``, every IPIP and GRE packet."""
    if tunnel_ports:
        ports = " or ".join(f"udp dst port {p}" for p in tunnel_ports)
        return f"({ports}) or ({capture_filter(run, udp_port, ip_tunnels=ip_tunnels)})"
    if ip_tunnels:
        carried = "ip proto 4 or ip proto 41 or ip proto 47 or ip6 proto 41 or ip6 proto 47"
        return f"({carried}) or ({capture_filter(run, udp_port)})"
    if udp_port is not None:
        p = udp_port
        errors = (
            "(icmp and (icmp[0] = 3 or icmp[0] = 11 or icmp[0] = 12) and icmp[17] = 17 "
            f"and (icmp[28:2] = {p} or icmp[30:2] = {p}))"
        )
        errors6 = (
            "(ip6 and ip6[6] = 58 and ip6[40] >= 1 and ip6[40] <= 4 and ip6[54] = 17 "
            f"and (ip6[88:2] = {p} or ip6[90:2] = {p}))"
        )
        return f"(udp port {p}) or {errors} or {errors6} or ({capture_filter(run)})"
    run &= 0xFFFFFFFF
    run16 = run & 0xFFFF
    magic = f"(icmp[8:4] = {MAGIC:#x} or icmp[8:4] = {MAGIC_REPLY:#x})"
    icmp = f"(icmp and (icmp[0] = 8 or icmp[0] = 0) and {magic} and icmp[12:4] = {run:#x})"
    udp = (
        f"(udp and (udp[8:4] = {MAGIC:#x} or udp[8:4] = {MAGIC_REPLY:#x}) and udp[12:4] = {run:#x})"
    )
    tcp = (
        "(tcp and ("
        f"(tcp[13] & 0x12 = 0x02 and tcp[4:2] = {run16:#x}) or "
        f"(tcp[13] & 0x12 = 0x12 and (tcp[8:4] - 1) >> 16 = {run16:#x}) or "
        f"(tcp[13] & 0x14 = 0x14 and (tcp[8:4] - 1) >> 16 = {run16:#x}) or "
        f"(tcp[13] & 0x14 = 0x04 and (tcp[4:4] - 1) >> 16 = {run16:#x})))"
    )
    error = (
        "(icmp and (icmp[0] = 3 or icmp[0] = 11 or icmp[0] = 12) and ("
        f"((icmp[36:4] = {MAGIC:#x} or icmp[36:4] = {MAGIC_REPLY:#x}) "
        f"and icmp[40:4] = {run:#x}) or "
        f"(icmp[17] = 6 and icmp[32:2] = {run16:#x})))"
    )
    return f"(ip and ({icmp} or {udp} or {tcp} or {error})) or {_filter6(run)}"


def _filter6(run: int) -> str:
    """The same over IPv6, by offsets from the fixed header (libpcap has no icmp6[],
    tcp[] or udp[] for IPv6; the probes carry no extension headers)."""
    run16 = run & 0xFFFF

    def tagged(at: int) -> str:
        magic = f"(ip6[{at}:4] = {MAGIC:#x} or ip6[{at}:4] = {MAGIC_REPLY:#x})"
        return f"{magic} and ip6[{at + 4}:4] = {run:#x}"

    echo = f"(ip6[6] = 58 and (ip6[40] = 128 or ip6[40] = 129) and {tagged(48)})"
    udp = f"(ip6[6] = 17 and {tagged(48)})"
    tcp = (
        "(ip6[6] = 6 and ("
        f"(ip6[53] & 0x12 = 0x02 and ip6[44:2] = {run16:#x}) or "
        f"(ip6[53] & 0x12 = 0x12 and (ip6[48:4] - 1) >> 16 = {run16:#x}) or "
        f"(ip6[53] & 0x14 = 0x14 and (ip6[48:4] - 1) >> 16 = {run16:#x}) or "
        f"(ip6[53] & 0x14 = 0x04 and (ip6[44:4] - 1) >> 16 = {run16:#x})))"
    )
    # An ICMPv6 error: the quoted IPv6 header at 48, its L4 header at 88.
    error = (
        "(ip6[6] = 58 and ip6[40] >= 1 and ip6[40] <= 4 and ("
        f"({tagged(96)}) or (ip6[54] = 6 and ip6[92:2] = {run16:#x})))"
    )
    return f"(ip6 and ({echo} or {udp} or {tcp} or {error}))"
