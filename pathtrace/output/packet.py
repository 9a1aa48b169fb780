"""The packet at a hop, layer by layer, and what changed since the hop before.

Layers come from the captured frame (scapy's own view) when the capture saw
that hop, else from the event's fields. Library code, so the TUI stays a view.
"""

from __future__ import annotations

from dataclasses import dataclass

from pathtrace.model.result import RunResult
from pathtrace.model.trace import Hop
from pathtrace.system import scapy_setup

# What a hop can change in a packet (length: the IP header's, the same at every hop).
FIELDS = ("src", "dst", "sport", "dport", "ttl", "length")


@dataclass(frozen=True)
class PacketView:
    lines: list[str]
    changed: list[str]  # fields that differ from the previous hop's packet
    captured: bool | None
    diff: str = ""  # the changes in one line: "src 192.168.100.2 -> 198.51.100.2, ttl 64 -> 63"

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


def frame_of(result: RunResult, hop: Hop) -> bytes | None:
    if result.correlation is None or not hop.events:
        return None
    at = result.correlation.matched.get(hop.events[0])
    return result.captures[at].data if at is not None else None


def view(result: RunResult, hop: Hop, previous: Hop | None) -> PacketView:
    changed = [
        f
        for f in FIELDS
        if previous is not None and getattr(previous.packet, f) != getattr(hop.packet, f)
    ]
    diff = ", ".join(
        f"{f} {getattr(previous.packet, f)} -> {getattr(hop.packet, f)}"
        for f in changed
        if previous is not None
    )
    frame = frame_of(result, hop)
    if frame is not None:
        # inet and inet6 bind IP, IPv6 (and ICMP, ICMPv6, UDP, TCP) under Ether:
        # without them scapy shows Raw.
        scapy_setup.prepare()
        import scapy.layers.inet  # noqa: F401
        import scapy.layers.inet6  # noqa: F401
        from scapy.layers.l2 import Ether

        lines = str(Ether(frame).show(dump=True)).splitlines()
    else:
        p = hop.packet
        v6 = ":" in p.src
        icmp = p.protocol in ("icmp", "icmpv6")
        lines = [
            f"###[ {'IPv6' if v6 else 'IP'} (from the event; no capture of this hop) ]###",
            f"  src       = {p.src}",
            f"  dst       = {p.dst}",
            f"  {'hlim' if v6 else 'ttl':<9} = {p.ttl}",
            f"  len       = {p.length}",
            f"###[ {p.protocol.upper()} ]###",
            f"  {'id' if icmp else 'sport':<9} = {p.sport}",
            f"  {'seq' if icmp else 'dport':<9} = {p.dport}",
        ]
    return PacketView(lines, changed, hop.captured, diff)
