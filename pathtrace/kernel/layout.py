"""The layout of ``struct pt_event``, read from a probe object's BTF.

probes/include/pathtrace.h is the one source of truth. Python names the
fields it uses (``FIELDS``) and takes their offsets and sizes from the
compiled object, so a change to the C struct cannot silently misread events:
``EventLayout.from_btf`` fails when a field is missing or has changed size.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from pathtrace.errors import ProbesMissing
from pathtrace.kernel import libbpf

# The fields user space reads, with the size each must have in the C struct.
FIELDS: dict[str, int] = {
    "time_ns": 8,
    "skb": 8,
    "skb_id": 8,
    "location": 8,
    "ct": 8,
    "netns": 4,
    "ifindex": 4,
    "len": 4,
    "mark": 4,
    "drop_reason": 4,
    "run": 4,
    "index": 4,
    "saddr": 4,
    "daddr": 4,
    "ct_orig_src": 4,
    "ct_orig_dst": 4,
    "ct_reply_src": 4,
    "ct_reply_dst": 4,
    "ct_status": 4,
    "ct_orig_sport": 2,
    "ct_orig_dport": 2,
    "ct_reply_sport": 2,
    "ct_reply_dport": 2,
    "sport": 2,
    "dport": 2,
    "ip_id": 2,
    "hook": 2,
    "via": 1,
    "nf_hook": 1,
    "protocol": 1,
    "ttl": 1,
    "icmp_type": 1,
    "icmp_code": 1,
    "tcp_flags": 1,
    "tag_kind": 1,
    "followed": 1,
    "pkt_type": 1,
    "clock": 1,
    "dmac": 6,
    "smac": 6,
    "family": 1,
    "ct_info": 1,
    "ifname": 16,
    "saddr6": 16,
    "daddr6": 16,
    "encap": 1,
    "outer_family": 1,
    "outer_sport": 2,
    "outer_dport": 2,
    "vni": 4,
    "outer_saddr": 16,
    "outer_daddr": 16,
    "sk_destructor": 8,
    "sk_netns": 4,
    "sk_family": 2,
    "sk_type": 2,
    "sk_protocol": 2,
    "sk_state": 2,
    "tcp_seq": 4,
    "tcp_payload": 2,
}
# Kept in network byte order by the kernel: decoded as big-endian.
NETWORK_ORDER = {
    "saddr",
    "daddr",
    "ct_orig_src",
    "ct_orig_dst",
    "ct_reply_src",
    "ct_reply_dst",
    "ct_orig_sport",
    "ct_orig_dport",
    "ct_reply_sport",
    "ct_reply_dport",
    "sport",
    "dport",
    "ip_id",
    "outer_sport",
    "outer_dport",
}
_INT = {1: "B", 2: "H", 4: "I", 8: "Q"}
BYTE_FIELDS = {
    "ifname",
    "dmac",
    "smac",
    "saddr6",
    "daddr6",
    "outer_saddr",
    "outer_daddr",
}  # read as they are, not as numbers


@dataclass(frozen=True)
class EventLayout:
    size: int
    names: tuple[str, ...]
    codec: struct.Struct

    @classmethod
    def from_members(cls, size: int, members: list[tuple[str, int, int]]) -> EventLayout:
        found = {name: (offset, width) for name, offset, width in members}
        for name, width in FIELDS.items():
            if name not in found:
                raise LayoutError(f"struct pt_event has no field {name}")
            if found[name][1] != width:
                raise LayoutError(
                    f"struct pt_event field {name} is {found[name][1]} bytes, expected {width}"
                )
        fmt, names, at = "<", [], 0
        for name, (offset, width) in sorted(
            ((n, found[n]) for n in FIELDS), key=lambda item: item[1][0]
        ):
            if offset < at:
                raise LayoutError(f"struct pt_event field {name} overlaps another")
            fmt += "x" * (offset - at)
            fmt += f"{width}s" if name in BYTE_FIELDS else _INT[width]
            names.append(name)
            at = offset + width
        fmt += "x" * (size - at)
        codec = struct.Struct(fmt)
        if codec.size != size:
            raise LayoutError(f"decoded size {codec.size} != struct pt_event size {size}")
        return cls(size, tuple(names), codec)

    @classmethod
    def from_btf(cls, btf: int) -> EventLayout:

        try:
            size, members = libbpf.struct_members(btf, "pt_event")
        except KeyError:
            raise LayoutError("the probe object has no struct pt_event in its BTF") from None
        return cls.from_members(size, members)

    def unpack(self, data: bytes) -> dict[str, int | bytes]:
        values = dict(zip(self.names, self.codec.unpack_from(data), strict=True))
        for name in NETWORK_ORDER:
            value = values[name]
            assert isinstance(value, int)
            width = FIELDS[name]
            values[name] = int.from_bytes(value.to_bytes(width, "little"), "big")
        return values


class LayoutError(ProbesMissing):
    """The probe objects do not carry the event this pathtrace reads: rebuild them."""

    def __init__(self, problem: str) -> None:
        super().__init__(
            f"{problem}: the probe objects do not match this pathtrace; run `make probes`"
        )
