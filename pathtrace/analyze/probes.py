"""Events -> probes: each injected packet's series and verdict.

Live runs and bundles read back both come here, so both give the same hops and
verdicts.
"""

from __future__ import annotations

from collections import defaultdict

from pathtrace.analyze.correlate import correlate
from pathtrace.analyze.hops import HopBuilder
from pathtrace.analyze.verdict import Judge
from pathtrace.model.capture import Captured, Correlation
from pathtrace.model.event import Event
from pathtrace.model.result import Setting
from pathtrace.model.trace import ProbeTrace


def trace_probes(
    events: list[Event],
    captures: list[Captured] | None,
    setting: Setting,
    lost: int,
    send_errors: dict[int, str],
) -> tuple[list[ProbeTrace], Correlation | None]:
    """A finished run's probes, and its events matched to its captures. ``captures``
    is None when nothing was captured; an empty list (interfaces captured, no
    packet came) is still correlated."""
    correlation = correlate(events, captures, setting.run_id) if captures is not None else None
    return build_probes(events, setting, lost, send_errors, correlation), correlation


def build_probes(
    events: list[Event],
    setting: Setting,
    lost: int = 0,
    send_errors: dict[int, str] | None = None,
    correlation: Correlation | None = None,
) -> list[ProbeTrace]:
    """Events (time order) -> one ProbeTrace per injected packet (also for a live
    view of a run under way, from the events so far)."""
    by_probe: dict[int, dict[str, list[tuple[int, Event]]]] = defaultdict(lambda: defaultdict(list))
    for position, event in enumerate(events):
        by_probe[event.index][event.tag].append((position, event))
    builder = HopBuilder(setting.states, set(correlation.matched) if correlation else None)
    judge = Judge(setting.states, setting.source, setting.target, lost, setting.restore)
    probes = []
    for index in range(setting.count):
        groups = by_probe.get(index, {})
        request = builder.build(index, "request", groups.get("request", []))
        origin = request.hops[0].time_ns if request.hops else None
        reply = judge.settle_reply(
            builder.build(index, "reply", groups["reply"], origin) if groups.get("reply") else None
        )
        errors = (
            [builder.build(index, "icmp_error", groups["icmp_error"], origin)]
            if groups.get("icmp_error")
            else []
        )
        own = [e for group in groups.values() for _, e in group]
        verdict = judge.judge(request, reply, errors, own, (send_errors or {}).get(index))
        probes.append(ProbeTrace(index, request, reply, errors, verdict))
    return probes
