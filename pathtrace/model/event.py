"""Events: the raw record decoded into a stable, versioned, serialisable form.

Three layers, as in retis: the C struct (probes/include/pathtrace.h), its
decoding (``decode``, with the layout read from BTF), and ``Event``, which is
what everything after collection works on, live or read back from a file.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

EVENT_FORMAT_VERSION = 1


class Hook(StrEnum):
    """``enum pt_hook`` (probes/include/pathtrace.h), in its order: codes from 1."""

    DEV_XMIT = "dev_xmit"  # a device starts transmitting
    DEV_RECV = "dev_recv"  # a device receives (after the driver)
    DROP = "drop"  # kfree_skb: freed as a drop, with a reason
    CONSUME = "consume"  # consume_skb: freed after normal use
    NF_BEFORE = "nf_before"  # netfilter, just before NAT (or filter)
    NF_AFTER = "nf_after"  # netfilter, just after NAT (or filter)
    VETH_XMIT = "veth_xmit"
    BR_HANDLE_FRAME = "br_handle_frame"  # a bridge port receives
    BR_FORWARD = "br_forward"  # the bridge forwards to a port
    NAT_BEFORE = "nat_before"  # nf_nat_manip_pkt entry
    NAT_AFTER = "nat_after"  # nf_nat_manip_pkt exit
    CT_INVALID = "ct_invalid"  # conntrack's message on an invalid packet (in location)


class Via(StrEnum):
    """``enum pt_via``: how the hook was attached."""

    TP_BTF = "tp_btf"
    NETFILTER = "netfilter"
    FENTRY = "fentry"
    FEXIT = "fexit"
    KPROBE = "kprobe"
    KRETPROBE = "kretprobe"


class TagKind(StrEnum):
    """``enum pt_tag_kind``: how a packet carries a run's tag."""

    REQUEST = "request"  # the injected packet itself
    REPLY = "reply"  # the answer that echoes its tag
    ICMP_ERROR = "icmp_error"  # an ICMP error quoting a tagged packet


# The C enums' values: each enum counts from 1 in declaration order (checked
# against the header by tests/probes/test_layout.py).
HOOK_CODES: dict[int, Hook] = dict(enumerate(Hook, start=1))
HOOK_MAX = len(Hook) + 1  # PT_HOOK_MAX: the size of per-hook arrays
VIA_CODES: dict[int, Via] = dict(enumerate(Via, start=1))
TAG_KIND_CODES: dict[int, TagKind] = dict(enumerate(TagKind, start=1))
TAG_KIND_NUMBERS: dict[TagKind, int] = {kind: code for code, kind in TAG_KIND_CODES.items()}
NF_HOOKS = {0: "PREROUTING", 1: "INPUT", 2: "FORWARD", 3: "OUTPUT", 4: "POSTROUTING"}
NAT_TYPES = {0: "SNAT", 1: "DNAT"}
PROTOCOLS = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6"}
# ICMP errors about a packet, by protocol: destination unreachable, time
# exceeded, parameter problem (and ICMPv6's packet too big).
ICMP_ERRORS = {"icmp": (3, 11, 12), "icmpv6": (1, 2, 3, 4)}


@dataclass(frozen=True, slots=True)
class Tuple:
    src: str
    dst: str
    sport: int
    dport: int


@dataclass(frozen=True, slots=True)
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


ENCAP_CODES = {1: "vxlan", 2: "geneve", 3: "ipip", 4: "gre"}  # enum pt_encap
# The link kinds (IFLA_INFO_KIND) that make each encapsulation.
ENCAP_KINDS = {
    "vxlan": ("vxlan",),
    "geneve": ("geneve",),
    "ipip": ("ipip", "sit", "ip6tnl"),
    "gre": ("gre", "gretap", "ip6gre", "ip6gretap"),
}


@dataclass(frozen=True, slots=True)
class Outer:
    """The headers around a tagged packet inside a tunnel, where a hook saw it so."""

    kind: str  # vxlan, geneve
    src: str
    dst: str
    sport: int
    dport: int
    vni: int

    def describe(self) -> str:
        if self.kind == "ipip":
            return f"IP in IP, {self.src} -> {self.dst}"
        if self.kind == "gre":
            key = f" key {self.vni}" if self.vni else ""
            return f"GRE{key}, {self.src} -> {self.dst}"
        src, dst = (f"[{a}]" if ":" in a else a for a in (self.src, self.dst))
        name = {"vxlan": "VXLAN", "geneve": "Geneve"}.get(self.kind, self.kind)
        return f"{name} VNI {self.vni}, {src}:{self.sport} -> {dst}:{self.dport}"


_FAMILIES = {2: "AF_INET", 10: "AF_INET6", 17: "AF_PACKET", 16: "AF_NETLINK", 1: "AF_UNIX"}
_TYPES = {1: "stream", 2: "datagram", 3: "raw", 5: "seqpacket", 10: "packet"}
_IP_PROTOCOLS = {1: "ICMP", 6: "TCP", 17: "UDP", 58: "ICMPv6", 132: "SCTP", 255: "IPPROTO_RAW"}
_MINI = {6: "TCP time-wait socket", 12: "TCP request socket"}  # by sk_state


@dataclass(frozen=True, slots=True)
class Socket:
    """The socket an sk_buff belonged to where a hook saw it (struct sock's own
    fields: family, type, protocol, state, namespace), and the sk_buff's destructor,
    which says whether the socket sent it or has it in its receive queue."""

    family: int
    type: int  # 0: a mini socket, which has none
    protocol: int  # AF_PACKET: the ethertype, network order
    state: int
    namespace: str  # the socket's own
    destructor: str = ""  # its symbol; read where the sk_buff is freed only

    @property
    def inet(self) -> bool:
        return self.family in (2, 10)

    @property
    def receiving(self) -> bool:
        """In a receive queue: skb_set_owner_r() made the socket its owner."""
        return self.destructor in ("sock_rfree", "sock_rfree+0x0")

    def describe(self) -> str:
        family = _FAMILIES.get(self.family, f"family {self.family}")
        if not self.type:
            return f"a {_MINI.get(self.state, 'mini socket')} ({family})"
        kind = _TYPES.get(self.type, f"type {self.type}")
        if not self.inet:
            return f"a {kind} socket ({family})"
        proto = _IP_PROTOCOLS.get(self.protocol, f"protocol {self.protocol}")
        return f"a {kind} {proto} socket ({family})"


@dataclass(frozen=True, slots=True)
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
    length: int  # the IP header's total length (bundles before 2026-11-28: skb->len)
    mark: int
    ip_id: int
    nf_hook: str | None = None  # netfilter hooks: the chain; NAT hooks: SNAT or DNAT
    icmp_type: int | None = None
    icmp_code: int | None = None
    tcp_flags: int | None = None
    drop_reason: str | None = None
    location: str | None = None  # drop: the kernel function; ct_invalid: conntrack's message
    conntrack: Conntrack | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # Device and bridge hooks: the frame's Ethernet addresses ("" where none is
    # set, and in bundles saved before 2026-11-28).
    dmac: str = ""
    smac: str = ""
    outer: Outer | None = None  # inside a tunnel's datagram here: its outer headers
    # The socket it belonged to here (None: none; bundles before 2026-11-29 lack it).
    socket: Socket | None = None
    # TCP: the sequence number and the payload's length (None: not TCP, or a bundle
    # from before 2026-11-29); `run` reads them for handshake segments only.
    tcp_seq: int | None = None
    tcp_payload: int | None = None
    # What conntrack made of the sk_buff here (skb->_nfct): "new", "established",
    # "related", "established reply", "related reply", "untracked", or "none" (no
    # entry: not seen by conntrack yet, or found INVALID); None in bundles before
    # 2026-11-30.
    ct_state: str | None = None

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
        outer = body.get("outer")
        if outer is not None:
            body["outer"] = Outer(**outer)
        if body.get("socket") is not None:
            body["socket"] = Socket(**body["socket"])
        return cls(**body)

    @property
    def where(self) -> str:
        return f"{self.namespace}/{self.ifname}" if self.ifname else self.namespace
