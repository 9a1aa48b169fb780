"""The packet at a hop, layer by layer, and what changed since the hop before.

Layers come from the captured frame (scapy's own view) when the capture saw
that hop, else from the event's fields. Library code, so the TUI stays a view.
"""

from __future__ import annotations

from dataclasses import dataclass

from pathtrace.model.result import RunResult
from pathtrace.model.trace import Hop

# skb->len is left out: it counts the Ethernet header at device hooks only.
FIELDS = ("src", "dst", "sport", "dport", "ttl")


@dataclass(frozen=True)
class PacketView:
    lines: list[str]
    changed: list[str]  # fields that differ from the previous hop's packet
    captured: bool | None


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
    frame = frame_of(result, hop)
    if frame is not None:
        # inet binds IP (and ICMP, UDP, TCP) under Ether: without it scapy shows Raw.
        import scapy.layers.inet  # noqa: F401
        from scapy.layers.l2 import Ether

        lines = str(Ether(frame).show(dump=True)).splitlines()
    else:
        p = hop.packet
        lines = [
            "###[ IP (from the event; no capture of this hop) ]###",
            f"  src       = {p.src}",
            f"  dst       = {p.dst}",
            f"  ttl       = {p.ttl}",
            f"  len       = {p.length}",
            f"###[ {p.protocol.upper()} ]###",
            f"  {'id' if p.protocol == 'icmp' else 'sport':<9} = {p.sport}",
            f"  {'seq' if p.protocol == 'icmp' else 'dport':<9} = {p.dport}",
        ]
    return PacketView(lines, changed, hop.captured)
