"""Events: the raw record decoded into a stable, versioned, serialisable form.

Three layers, as in retis: the C struct (probes/include/pathtrace.h), its
decoding (``decode``, with the layout read from BTF), and ``Event``, which is
what everything after collection works on, live or read back from a file.
"""

from __future__ import annotations

import socket
from dataclasses import asdict, dataclass, field
from typing import Any

from pathtrace.events.context import DecodeContext

EVENT_FORMAT_VERSION = 1

HOOKS = {
    1: "dev_xmit",
    2: "dev_recv",
    3: "drop",
    4: "consume",
    5: "nf_before",
    6: "nf_after",
    7: "veth_xmit",
    8: "br_handle_frame",
    9: "br_forward",
    10: "nat_before",
    11: "nat_after",
}
VIAS = {1: "tp_btf", 2: "netfilter", 3: "fentry", 4: "fexit", 5: "kprobe", 6: "kretprobe"}
TAG_KINDS = {1: "request", 2: "reply", 3: "icmp_error"}
NF_HOOKS = {0: "PREROUTING", 1: "INPUT", 2: "FORWARD", 3: "OUTPUT", 4: "POSTROUTING"}
NAT_TYPES = {0: "SNAT", 1: "DNAT"}
PROTOCOLS = {1: "icmp", 6: "tcp", 17: "udp"}


@dataclass(frozen=True)
class Tuple:
    src: str
    dst: str
    sport: int
    dport: int


@dataclass(frozen=True)
class Conntrack:
    id: str
    original: Tuple
    reply: Tuple
    status: int

    @property
    def snat(self) -> bool:
        return bool(self.status & (1 << 4))

    @property
    def dnat(self) -> bool:
        return bool(self.status & (1 << 5))


@dataclass(frozen=True)
class Event:
    """One observation of one tagged packet by one hook."""

    time_ns: int  # wall clock (UTC), nanoseconds since the epoch
    hook: str
    via: str
    netns: int
    namespace: str
    ifname: str
    ifindex: int
    skb_id: int
    skb: str
    run: int
    index: int
    tag: str  # request, reply, icmp_error
    followed: bool
    protocol: str
    src: str
    dst: str
    sport: int  # ICMP: id
    dport: int  # ICMP: sequence
    ttl: int
    length: int
    mark: int
    ip_id: int
    nf_hook: str | None = None  # netfilter hooks: the chain; NAT hooks: SNAT or DNAT
    icmp_type: int | None = None
    icmp_code: int | None = None
    tcp_flags: int | None = None
    drop_reason: str | None = None
    location: str | None = None
    conntrack: Conntrack | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["v"] = EVENT_FORMAT_VERSION
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Event:
        version = data.get("v")
        if version != EVENT_FORMAT_VERSION:
            raise ValueError(
                f"event format version {version!r}, this pathtrace reads {EVENT_FORMAT_VERSION}"
            )
        body = {k: v for k, v in data.items() if k != "v"}
        ct = body.get("conntrack")
        if ct is not None:
            body["conntrack"] = Conntrack(
                ct["id"], Tuple(**ct["original"]), Tuple(**ct["reply"]), ct["status"]
            )
        return cls(**body)

    @property
    def where(self) -> str:
        return f"{self.namespace}/{self.ifname}" if self.ifname else self.namespace


def _ip(value: int) -> str:
    return socket.inet_ntoa(value.to_bytes(4, "big"))


def decode(raw: dict[str, Any], ctx: DecodeContext) -> Event:
    """The stable form of one raw record (fields as ``EventLayout.unpack`` gives them)."""
    hook = HOOKS.get(raw["hook"], f"hook{raw['hook']}")
    nf_hook = None
    if hook.startswith("nf_"):
        nf_hook = NF_HOOKS.get(raw["nf_hook"])
    elif hook.startswith("nat_") and raw["via"] != 6:
        nf_hook = NAT_TYPES.get(raw["nf_hook"])
    protocol = raw["protocol"]
    ct = None
    if raw["ct"]:
        ct = Conntrack(
            id=f"{raw['ct']:#x}",
            original=Tuple(
                _ip(raw["ct_orig_src"]),
                _ip(raw["ct_orig_dst"]),
                raw["ct_orig_sport"],
                raw["ct_orig_dport"],
            ),
            reply=Tuple(
                _ip(raw["ct_reply_src"]),
                _ip(raw["ct_reply_dst"]),
                raw["ct_reply_sport"],
                raw["ct_reply_dport"],
            ),
            status=raw["ct_status"],
        )
    is_drop = hook == "drop"
    return Event(
        time_ns=ctx.clock.to_wall_ns(raw["time_ns"], raw["clock"]),
        hook=hook,
        via=VIAS.get(raw["via"], str(raw["via"])),
        netns=raw["netns"],
        namespace=ctx.namespace_name(raw["netns"]),
        ifname=raw["ifname"].split(b"\0", 1)[0].decode(errors="replace"),
        ifindex=raw["ifindex"],
        skb_id=raw["skb_id"],
        skb=f"{raw['skb']:#x}",
        run=raw["run"],
        index=raw["index"],
        tag=TAG_KINDS.get(raw["tag_kind"], "unknown"),
        followed=bool(raw["followed"]),
        protocol=PROTOCOLS.get(protocol, str(protocol)),
        src=_ip(raw["saddr"]),
        dst=_ip(raw["daddr"]),
        sport=raw["sport"],
        dport=raw["dport"],
        ttl=raw["ttl"],
        length=raw["len"],
        mark=raw["mark"],
        ip_id=raw["ip_id"],
        nf_hook=nf_hook,
        icmp_type=raw["icmp_type"] if protocol == 1 else None,
        icmp_code=raw["icmp_code"] if protocol == 1 else None,
        tcp_flags=raw["tcp_flags"] if protocol == 6 else None,
        drop_reason=ctx.drop_reason(raw["drop_reason"]) if is_drop else None,
        location=ctx.symbol(raw["location"]) if is_drop else None,
        conntrack=ct,
    )
