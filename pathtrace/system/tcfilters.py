"""tc filters on clsact hooks, read from netlink (RTM_GETTFILTER) as typed records.

Only what the analysis asks of a filter is decoded: its kind, protocol and
preference; whether it takes every frame (matchall, a u32 of keys that mask
nothing); u32's keys; a bpf filter's program; and its actions (gact's verdict,
mirred's redirect or mirror and the device). The layouts are the kernel's uapi
(linux/pkt_cls.h, tc_act/tc_mirred.h, tc_act/tc_gact.h).
"""

from __future__ import annotations

import struct

from pathtrace.model.state import TcFilter
from pathtrace.system.rtnl import RawFilter, Rtnl, attributes

PARENTS = {"ingress": 0xFFFFFFF2, "egress": 0xFFFFFFF3}  # clsact's minor handles
ETHERTYPES = {0x0003: "all", 0x0800: "ip", 0x86DD: "ipv6", 0x0806: "arp", 0x8100: "802.1Q"}
# The attribute that holds a classifier's actions, by kind.
_ACTIONS = {"u32": 7, "matchall": 2, "bpf": 1, "flower": 3}
_U32_SEL = 5
_BPF_NAME, _BPF_FLAGS, _BPF_ID = 7, 8, 11
_ACT_KIND, _ACT_OPTIONS = 1, 2
_PARMS = 2  # TCA_GACT_PARMS, TCA_MIRRED_PARMS
_GEN = struct.Struct("=IIiii")  # tc_gen: index, capab, action, refcnt, bindcnt
_TC_ACT = {0: "pass", 2: "drop", 1: "reclassify", 3: "pipe", 4: "stolen", 8: "trap"}
_MIRRED = {1: "redirect", 2: "mirror", 3: "ingress redirect", 4: "ingress mirror"}


def clsact_filters(ipr: Rtnl, clsact: dict[int, str], names: dict[int, str]) -> list[TcFilter]:
    """Every filter on the clsact hooks of ``clsact`` (ifindex: name); ``names``
    names the devices a redirect sends to."""
    found = []
    for index, dev in clsact.items():
        for direction, parent in PARENTS.items():
            for raw in ipr.filters(index, parent):
                record = _record(raw, dev, direction, names)
                if record is not None:
                    found.append(record)
    return found


def _record(raw: RawFilter, dev: str, direction: str, names: dict[int, str]) -> TcFilter | None:
    options = dict(attributes(raw.options))
    if not options or (raw.kind == "u32" and _U32_SEL not in options):
        return None  # a classifier's head or a u32 hash table: no match, no action
    (protocol,) = struct.unpack("!H", struct.pack("=H", raw.info & 0xFFFF))
    every: bool | None = None
    matches: tuple[str, ...] = ()
    program = ""
    if raw.kind == "matchall":
        every = True
    elif raw.kind == "u32":
        matches = _u32_keys(options[_U32_SEL])
        every = all(m.split()[0].endswith("/00000000") for m in matches)
    elif raw.kind == "bpf":
        program = _program(options)
    actions = _actions(options.get(_ACTIONS.get(raw.kind, -1), b""), names)
    return TcFilter(
        dev,
        direction,
        raw.kind,
        ETHERTYPES.get(protocol, f"{protocol:#06x}"),
        raw.info >> 16,
        every,
        matches,
        actions,
        program,
    )


def _u32_keys(sel: bytes) -> tuple[str, ...]:
    """tc_u32_sel (16 bytes: flags, offshift, nkeys, offmask, off, offoff, hoff,
    hmask) then nkeys tc_u32_key (mask and value in network order, off, offmask)."""
    if len(sel) < 16:
        return ()
    nkeys = sel[2]
    keys = []
    for i in range(nkeys):
        at = 16 + 16 * i
        if at + 16 > len(sel):
            break
        mask, value, off, _ = struct.unpack_from("!II", sel, at) + struct.unpack_from(
            "=ii", sel, at + 8
        )
        keys.append(f"{value:08x}/{mask:08x} at {off}")
    return tuple(keys)


def _program(options: dict[int, bytes]) -> str:
    name = options.get(_BPF_NAME, b"").split(b"\0", 1)[0].decode(errors="replace")
    words = [name or "bpf"]
    if _BPF_ID in options:
        words.append(f"id {struct.unpack('=I', options[_BPF_ID][:4])[0]}")
    if _BPF_FLAGS in options and struct.unpack("=I", options[_BPF_FLAGS][:4])[0] & 1:
        words.append("direct-action")
    return " ".join(words)


def _actions(nested: bytes, names: dict[int, str]) -> tuple[str, ...]:
    """Each TCA_ACT_PRIO_n in order: gact's verdict, mirred's redirect or mirror."""
    found: list[tuple[int, str]] = []
    for order, action in attributes(nested):
        parts = dict(attributes(action))
        kind = parts.get(_ACT_KIND, b"").split(b"\0", 1)[0].decode(errors="replace")
        parms = dict(attributes(parts.get(_ACT_OPTIONS, b""))).get(_PARMS, b"")
        if kind == "gact" and len(parms) >= _GEN.size:
            code = _GEN.unpack_from(parms)[2]
            found.append((order, _TC_ACT.get(code, f"action {code}")))
        elif kind == "mirred" and len(parms) >= _GEN.size + 8:
            eaction, ifindex = struct.unpack_from("=iI", parms, _GEN.size)
            how = _MIRRED.get(eaction, f"mirred {eaction}")
            found.append((order, f"{how} dev {names.get(ifindex, ifindex)}"))
        else:
            found.append((order, kind or "action"))
    return tuple(what for _, what in sorted(found))
