"""The packet at a hop, layer by layer, and what changed since the hop before.

Layers come from the captured frame (scapy's own view) when the capture saw
that hop, else from the event's fields. Library code, so the TUI stays a view.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field

from pathtrace.model import tag
from pathtrace.model.result import RunResult
from pathtrace.model.trace import Hop, Packet
from pathtrace.system import scapy_setup

# What a hop can change in a packet (length: the IP header's, the same at every hop).
FIELDS = ("src", "dst", "sport", "dport", "ttl", "length")


@dataclass(frozen=True)
class PacketView:
    lines: list[str]
    changed: list[str]  # fields that differ from the previous hop's packet
    captured: bool | None
    diff: str = ""  # the changes in one line: "src 192.168.100.2 -> 198.51.100.2, ttl 64 -> 63"
    hex: list[str] = field(default_factory=list)  # the captured frame, 16 bytes a line

    @property
    def layers(self) -> list[tuple[str, list[str]]]:
        """(layer, its field lines), as scapy's show() lists them."""
        found: list[tuple[str, list[str]]] = []
        for line in self.lines:
            if line.startswith("###[") or line.strip().startswith("###["):
                found.append((line.strip().strip("#[] "), []))
            elif found:
                found[-1][1].append(line.strip())
        return found

    def is_changed(self, field_line: str) -> bool:
        """Whether a field line of ``lines`` shows a field that changed."""
        name = field_line.strip().split(" ", 1)[0]
        return any(name in _SHOWN_AS.get(c, (c,)) for c in self.changed)


# How scapy names a field in IPv4 and in IPv6.
_SHOWN_AS = {"length": ("len", "plen"), "ttl": ("ttl", "hlim")}


def frame_of(result: RunResult | None, hop: Hop) -> bytes | None:
    if result is None or result.correlation is None or not hop.events:
        return None
    at = result.correlation.matched.get(hop.events[0])
    return result.captures[at].data if at is not None else None


def label(name: str, packet: Packet) -> str:
    """A field as the packet's own header calls it: IPv6 has a hop limit and a
    payload length; ICMP an id and a sequence number where ports would be."""
    v6 = ":" in packet.src
    icmp = packet.protocol in ("icmp", "icmpv6")
    return {
        "ttl": "hop limit" if v6 else "ttl",
        "length": "plen" if v6 else "len",
        "sport": "id" if icmp else "sport",
        "dport": "seq" if icmp else "dport",
    }.get(name, name)


def view(result: RunResult | None, hop: Hop, previous: Hop | None) -> PacketView:
    """``previous``: the hop before in the same series (None for a series' first:
    a reply is another packet, not the request changed). ``result`` None: a run
    under way, its captures not yet matched to hops (the event's fields only)."""
    changed = [
        f
        for f in FIELDS
        if previous is not None and getattr(previous.packet, f) != getattr(hop.packet, f)
    ]
    diff = ", ".join(
        f"{label(f, hop.packet)} {getattr(previous.packet, f)} -> {getattr(hop.packet, f)}"
        for f in changed
        if previous is not None
    )
    frame = frame_of(result, hop)
    hex_lines: list[str] = []
    if frame is not None:
        # inet and inet6 bind IP, IPv6 (and ICMP, ICMPv6, UDP, TCP) under Ether:
        # without them scapy shows Raw.
        scapy_setup.prepare()
        import scapy.layers.inet  # noqa: F401
        import scapy.layers.inet6  # noqa: F401
        from scapy.layers.l2 import Ether
        from scapy.utils import hexdump

        lines = _readable(
            str(Ether(frame).show(dump=True)).splitlines(), result.run_id if result else 0
        )
        hex_lines = str(hexdump(frame, dump=True)).splitlines()  # Wireshark's bytes pane
    else:
        p = hop.packet
        v6 = ":" in p.src
        icmp = p.protocol in ("icmp", "icmpv6")
        lines = [
            f"###[ {'IPv6' if v6 else 'IP'} (from the event; no capture of this hop) ]###",
            f"  src       = {p.src}",
            f"  dst       = {p.dst}",
            f"  {'hlim' if v6 else 'ttl':<9} = {p.ttl}",
            f"  {'plen' if v6 else 'len':<9} = {p.length}",
            f"###[ {p.protocol.upper()} ]###",
            f"  {'id' if icmp else 'sport':<9} = {p.sport}",
            f"  {'seq' if icmp else 'dport':<9} = {p.dport}",
        ]
    return PacketView(lines, changed, hop.captured, diff, hex_lines)


_BYTES = re.compile(r"^(\s*)(\w+)(\s*)= (b(['\"]).*\5)$")
_EMPTY = re.compile(r"^(\s*)\\?(\w+)(\s*)(?:\\|= ?)$")
_HEX = re.compile(r"^(\s*)(id|seq)(\s*)= 0x([0-9a-f]+)$")


def _readable(lines: list[str], run: int) -> list[str]:
    """scapy's show() as people read it: bytes in hex (not Python's b'...'), a
    pathtrace tag decoded, ICMP's id and sequence in decimal as the NAT text has them."""
    out = []
    layer = ""
    for line in lines:
        if line.lstrip().startswith("###["):
            layer = line.strip().strip("#[] ")
            out.append(line)
            continue
        if (m := _HEX.match(line)) and layer.startswith("ICMP"):
            value = int(m.group(4), 16)
            out.append(f"{m.group(1)}{m.group(2)}{m.group(3)}= {value} ({value:#x})")
            continue
        if m := _EMPTY.match(line):  # an empty list (scapy puts it between backslashes)
            out.append(f"{m.group(1)}{m.group(2)}{m.group(3)}= (none)")
            continue
        m = _BYTES.match(line)
        if m is None:
            out.append(line)
            continue
        try:
            data = ast.literal_eval(m.group(4))
        except (ValueError, SyntaxError):
            out.append(line)
            continue
        indent, name, pad = m.group(1), m.group(2), m.group(3)
        if not data:
            out.append(f"{indent}{name}{pad}= (none)")
            continue
        shown = " ".join(f"{b:02x}" for b in data[:16]) + (" ..." if len(data) > 16 else "")
        out.append(f"{indent}{name}{pad}= {shown} ({len(data)} bytes)")
        said = _tag(data, run)
        if said:
            out.append(f"{indent}{'tag':<{len(name) + len(pad)}}= {said}")
    return out


def _tag(data: bytes, run: int) -> str | None:
    """A pathtrace tag at the payload's start, in words."""
    found = tag.read_payload(data)
    if found is None:
        return None
    magic, tag_run, index = found
    what = "an answer from the lab's echo service" if magic == tag.MAGIC_REPLY else "a probe"
    whose = "this run" if tag_run == run else f"run {tag_run:08x}, not this one"
    return f"pathtrace: {what}, probe {index + 1} of {whose}"
