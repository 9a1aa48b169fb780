"""Captured packets matched to events, and the disagreements both ways.

A device event (transmit or receive) and a capture of the same packet share
the namespace, the interface, the direction, the tag (probe index and kind)
and, within a few hundred microseconds, the time: both clocks are the wall
clock (events converted from CLOCK_TAI, captures stamped by the kernel).
"""

from __future__ import annotations

from pathtrace.model.capture import Captured, Correlation
from pathtrace.model.event import Event, Hook
from pathtrace.model.tag import classify, flows_of

WINDOW_NS = 20_000_000  # generous: a busy machine delays a capture by milliseconds
_DIRECTION: dict[str, str] = {Hook.DEV_XMIT: "out", Hook.DEV_RECV: "in"}


def correlate(events: list[Event], captures: list[Captured], run: int) -> Correlation:
    result = Correlation()
    # UDP probes are known by their flows too, as the probes knew them.
    flows = flows_of(
        [
            (e.index, e.src, e.dst, e.sport, e.dport)
            for e in events
            if e.protocol == "udp" and e.tag == "request"
        ]
    )
    # Tunnel datagrams are looked into on the ports the probes saw the run's use.
    tunnels = {e.outer.dport: e.outer.kind for e in events if e.outer and e.outer.dport}
    result.capture_tags = [classify(c.data, run, flows, tunnels) for c in captures]
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
