"""Decoding: a raw record (``EventLayout.unpack``) -> the stable ``Event``.

And what decoding needs from the machine: the clock, namespace names, the
kernel's drop reasons and symbols.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from functools import cached_property
from ipaddress import IPv4Address, IPv6Address
from sys import intern
from typing import Any

from pathtrace.kernel.libbpf import KernelBtf
from pathtrace.model.event import (
    ENCAP_CODES,
    HOOK_CODES,
    NAT_TYPES,
    NF_HOOKS,
    PROTOCOLS,
    TAG_KIND_CODES,
    VIA_CODES,
    Conntrack,
    Event,
    Outer,
    Socket,
    Tuple,
)
from pathtrace.system import netns

CLOCK_TAI, CLOCK_BOOTTIME = 1, 2


class KernelClock:
    """Converts the probes' kernel time to wall-clock (UTC) nanoseconds.

    The probes read CLOCK_TAI, which is the wall clock plus the kernel's TAI
    offset: NTP steps and slews move both alike, and suspend does not stop
    it, so one subtraction converts exactly, whenever the event happened.
    Kernels before 6.1 lack the TAI helper; there the probes read BOOTTIME and
    we pin it to the wall clock when tracing starts (a later clock step would
    shift events by the step: said in the run's facts).
    """

    def __init__(self) -> None:
        self.tai_offset_ns = self._offset(time.CLOCK_TAI)
        self.boot_offset_ns = self._offset(time.CLOCK_BOOTTIME)

    @staticmethod
    def _offset(clock: int) -> int:
        # The smallest gap between two reads bounds the error of the offset.
        best = None
        for _ in range(5):
            before = time.clock_gettime_ns(time.CLOCK_REALTIME)
            other = time.clock_gettime_ns(clock)
            after = time.clock_gettime_ns(time.CLOCK_REALTIME)
            if best is None or after - before < best[0]:
                best = (after - before, other - (before + after) // 2)
        assert best is not None
        return best[1]

    def to_wall_ns(self, kernel_ns: int, clock: int) -> int:
        if clock == CLOCK_TAI:
            return kernel_ns - self.tai_offset_ns
        return kernel_ns - self.boot_offset_ns


class DecodeContext:
    def __init__(
        self,
        clock: KernelClock | None = None,
        namespaces: dict[int, str] | None = None,
        drop_reasons: dict[int, str] | None = None,
        notes: Callable[[int], str | None] | None = None,
    ) -> None:
        self.clock = clock or KernelClock()
        # conntrack's messages by address (Tracer.note): ct_invalid events' locations.
        self.note = notes or (lambda _: None)
        self._asked: set[int] = set()
        self.namespaces = namespaces if namespaces is not None else netns.namespace_names()
        if drop_reasons is not None:  # the tracer has them (KernelFacts): no second read
            self._drop_reasons = drop_reasons

    def namespace_name(self, inode: int) -> str:
        if inode not in self.namespaces and inode not in self._asked:
            self._asked.add(inode)  # once each: events from unnamed namespaces are many
            # One made since we started; names given by the run (the host's) stay.
            for number, name in netns.namespace_names().items():
                self.namespaces.setdefault(number, name)
        return self.namespaces.get(inode, f"netns:{inode}" if inode else "")

    @cached_property
    def _drop_reasons(self) -> dict[int, str]:
        btf = KernelBtf()
        try:
            return {
                value: name.removeprefix("SKB_DROP_REASON_")
                for value, name in btf.enum("skb_drop_reason").items()
            }
        finally:
            btf.close()

    def drop_reason(self, value: int) -> str:
        return self._drop_reasons.get(value, str(value))

    def prefetch_symbols(self) -> None:
        """Reads the kernel's symbols in the background (~0.1 s), for drop locations."""
        threading.Thread(target=self.symbols.table, name="pathtrace-kallsyms", daemon=True).start()

    def symbol(self, address: int) -> str | None:
        return self.symbols.name(address) if address else None

    @cached_property
    def symbols(self) -> KernelSymbols:
        return KernelSymbols()


class KernelSymbols:
    """The kernel's text symbols (/proc/kallsyms), to name code addresses.

    The file is read whole (5 MB, ~50 ms in the kernel, outside the interpreter
    lock) but never parsed whole: an address is named by searching the text for
    the lines that share its leading hex digits, a block of 4 KiB first, wider
    only when the block holds no symbol at or below it. A handful of drops costs
    microseconds instead of the 0.1 s that splitting 120,000 lines took."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._text: bytes | None = None
        self._named: dict[int, str] = {}  # a drop repeats at one place: searched once

    def table(self) -> bytes:
        with self._lock:  # a prefetch under way is waited for, not repeated
            if self._text is None:
                try:
                    with open("/proc/kallsyms", "rb") as f:
                        self._text = b"\n" + f.read()
                except OSError:
                    self._text = b""
            return self._text

    def name(self, address: int) -> str:
        if address not in self._named:
            self._named[address] = self._search(address)
        return self._named[address]

    def _search(self, address: int) -> str:
        text = self.table()
        width = text.find(b" ") - 1 if text else 16
        wanted = f"{address:0{width}x}".encode()
        best: tuple[bytes, bytes] | None = None
        for keep in range(width - 3, 0, -1):  # the same 4 KiB, 64 KiB, ... as the address
            prefix = b"\n" + wanted[:keep]
            at = text.find(prefix)
            while at >= 0:
                end = text.find(b"\n", at + 1)
                fields = text[at + 1 : end if end >= 0 else len(text)].split()
                if len(fields) >= 3 and fields[1] in (b"t", b"T") and fields[0] <= wanted:
                    if best is None or fields[0] > best[0]:
                        best = (fields[0], fields[2])
                at = text.find(prefix, at + 1)
            if best is not None:
                break
        start = int(best[0], 16) if best else 0
        if not start:
            return f"{address:#x}"  # kallsyms hides addresses from the unprivileged
        assert best is not None
        return f"{best[1].decode()}+{address - start:#x}"


# skb->_nfct's low bits (enum ip_conntrack_info), and PT_CT_NONE: no entry.
CT_INFO = {
    0: "established",
    1: "related",
    2: "new",
    3: "established reply",
    4: "related reply",
    7: "untracked",
    0x80: "none",
}


def _ip(value: int) -> str:
    return socket.inet_ntoa(value.to_bytes(4, "big"))


def decode(raw: dict[str, Any], ctx: DecodeContext) -> Event:
    """The stable form of one raw record (fields as ``EventLayout.unpack`` gives them)."""
    hook = str(HOOK_CODES.get(raw["hook"], f"hook{raw['hook']}"))
    nf_hook = None
    if hook.startswith("nf_"):
        nf_hook = NF_HOOKS.get(raw["nf_hook"])
    elif hook.startswith("nat_") and raw["via"] != 6:
        nf_hook = NAT_TYPES.get(raw["nf_hook"])
    protocol = raw["protocol"]
    ct = None
    v6 = raw.get("family") == 6
    if raw["ct"] and not v6:  # the probes read IPv4 conntrack tuples only
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
    # Interned: a watch keeps hundreds of thousands of events, each naming the
    # same few hooks, namespaces, devices and addresses.
    return Event(
        time_ns=ctx.clock.to_wall_ns(raw["time_ns"], raw["clock"]),
        hook=intern(hook),
        via=intern(str(VIA_CODES.get(raw["via"], raw["via"]))),
        netns=raw["netns"],
        namespace=intern(ctx.namespace_name(raw["netns"])),
        ifname=intern(raw["ifname"].split(b"\0", 1)[0].decode(errors="replace")),
        ifindex=raw["ifindex"],
        skb_id=raw["skb_id"],
        skb=f"{raw['skb']:#x}",
        run=raw["run"],
        index=raw["index"],
        tag=intern(str(TAG_KIND_CODES.get(raw["tag_kind"], "unknown"))),
        followed=bool(raw["followed"]),
        protocol=intern(PROTOCOLS.get(protocol, str(protocol))),
        src=intern(str(IPv6Address(raw["saddr6"])) if v6 else _ip(raw["saddr"])),
        dst=intern(str(IPv6Address(raw["daddr6"])) if v6 else _ip(raw["daddr"])),
        sport=raw["sport"],
        dport=raw["dport"],
        ttl=raw["ttl"],
        length=raw["len"],
        mark=raw["mark"],
        ip_id=raw["ip_id"],
        nf_hook=nf_hook,
        icmp_type=raw["icmp_type"] if protocol in (1, 58) else None,
        icmp_code=raw["icmp_code"] if protocol in (1, 58) else None,
        tcp_flags=raw["tcp_flags"] if protocol == 6 else None,
        drop_reason=ctx.drop_reason(raw["drop_reason"]) if is_drop else None,
        location=(
            ctx.symbol(raw["location"])
            if is_drop
            else ctx.note(raw["location"])
            if hook == "ct_invalid"
            else None
        ),
        conntrack=ct,
        ct_state=intern(CT_INFO.get(raw["ct_info"], f"ctinfo {raw['ct_info']}")),
        dmac=_mac(raw.get("dmac", b"")),
        smac=_mac(raw.get("smac", b"")),
        outer=_outer(raw),
        socket=_socket(raw, ctx, freed=is_drop or hook == "consume"),
        tcp_seq=raw["tcp_seq"] if protocol == 6 else None,
        tcp_payload=raw["tcp_payload"] if protocol == 6 else None,
    )


def _socket(raw: dict[str, Any], ctx: DecodeContext, freed: bool) -> Socket | None:
    if not raw.get("sk_family"):
        return None
    # Named only where freed: who owns it there is the question (sender or reader).
    destructor = ctx.symbol(raw["sk_destructor"]) if freed else None
    return Socket(
        raw["sk_family"],
        raw["sk_type"],
        raw["sk_protocol"],
        raw["sk_state"],
        ctx.namespace_name(raw["sk_netns"]),
        destructor or "",
    )


def _outer(raw: dict[str, Any]) -> Outer | None:
    kind = ENCAP_CODES.get(raw.get("encap", 0))
    if kind is None:
        return None
    v6 = raw["outer_family"] == 6

    def address(value: bytes) -> str:
        return str(IPv6Address(value)) if v6 else str(IPv4Address(value[:4]))

    return Outer(
        kind,
        address(raw["outer_saddr"]),
        address(raw["outer_daddr"]),
        raw["outer_sport"],
        raw["outer_dport"],
        raw["vni"],
    )


def _mac(value: bytes) -> str:
    return "" if not any(value) else ":".join(f"{b:02x}" for b in value)
