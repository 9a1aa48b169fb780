"""Captured packets matched to events, and the disagreements both ways.

A device event (transmit or receive) and a capture of the same packet share
the namespace, the interface, the direction, the tag (probe index and kind)
and, within a few hundred microseconds, the time: both clocks are the wall
clock (events converted from CLOCK_TAI, captures stamped by the kernel).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from pathtrace.capture.sniffer import Captured
from pathtrace.events.event import Event
from pathtrace.inject.tag import MAGIC, MAGIC_REPLY

WINDOW_NS = 20_000_000  # generous: a busy machine delays a capture by milliseconds
_DIRECTION = {"dev_xmit": "out", "dev_recv": "in"}


def classify(frame: bytes, run: int) -> tuple[int, str] | None:
    """(probe index, tag kind) of an Ethernet frame carrying ``run``'s tag, else None."""
    if len(frame) < 34 or frame[12:14] != b"\x08\x00":
        return None
    ip = frame[14:]
    ihl = (ip[0] & 0x0F) * 4
    proto, l4 = ip[9], ip[ihl:]
    run &= 0xFFFFFFFF

    def payload_tag(at: bytes, kind: str) -> tuple[int, str] | None:
        if len(at) < 12:
            return None
        magic, tag_run, index = struct.unpack(">III", at[:12])
        if tag_run != run or magic not in (MAGIC, MAGIC_REPLY):
            return None
        return index, ("reply" if magic == MAGIC_REPLY else kind)

    def seq_tag(value: int, kind: str) -> tuple[int, str] | None:
        value &= 0xFFFFFFFF
        return (value & 0xFFFF, kind) if value >> 16 == run & 0xFFFF else None

    if proto == 1 and len(l4) >= 8:
        if l4[0] in (0, 8):
            return payload_tag(l4[8:], "reply" if l4[0] == 0 else "request")
        if l4[0] in (3, 11, 12) and len(l4) >= 28:
            inner = l4[8:]
            inner_l4 = inner[(inner[0] & 0x0F) * 4 :]
            if inner[9] in (1, 17):
                found = payload_tag(inner_l4[8:], "icmp_error")
                return (found[0], "icmp_error") if found else None
            if inner[9] == 6 and len(inner_l4) >= 8:
                return seq_tag(struct.unpack(">I", inner_l4[4:8])[0], "icmp_error")
        return None
    if proto == 17:
        return payload_tag(l4[8:], "request")
    if proto == 6 and len(l4) >= 14:
        seq, ack = struct.unpack(">II", l4[4:12])
        flags = l4[13]
        if flags & 0x12 == 0x02:
            return seq_tag(seq, "request")
        if flags & 0x12 == 0x12 or flags & 0x14 == 0x14:
            return seq_tag(ack - 1, "reply")
        if flags & 0x04:
            return seq_tag(seq - 1, "request")
    return None


@dataclass
class Correlation:
    """event position -> capture position, and what matched nothing."""

    matched: dict[int, int] = field(default_factory=dict)
    events_without_capture: list[int] = field(default_factory=list)
    captures_without_event: list[int] = field(default_factory=list)
    capture_tags: list[tuple[int, str] | None] = field(default_factory=list)


def correlate(events: list[Event], captures: list[Captured], run: int) -> Correlation:
    result = Correlation()
    result.capture_tags = [classify(c.data, run) for c in captures]
    free: dict[tuple[str, str, str, int, str], list[int]] = {}
    for n, (capture, found) in enumerate(zip(captures, result.capture_tags, strict=True)):
        if found is None:
            continue  # --capture all: not the run's; nothing to match
        key = (capture.namespace, capture.ifname, capture.direction, found[0], found[1])
        free.setdefault(key, []).append(n)
    for position, event in enumerate(events):
        direction = _DIRECTION.get(event.hook)
        if direction is None:
            continue
        key = (event.namespace, event.ifname, direction, event.index, event.tag)
        candidates = free.get(key, [])
        best = min(candidates, key=lambda n: abs(captures[n].time_ns - event.time_ns), default=None)
        if best is not None and abs(captures[best].time_ns - event.time_ns) <= WINDOW_NS:
            candidates.remove(best)
            result.matched[position] = best
        else:
            result.events_without_capture.append(position)
    result.captures_without_event = sorted(n for left in free.values() for n in left)
    return result
