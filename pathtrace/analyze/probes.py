"""Events -> probes: each injected packet's series and verdict.

Live runs and bundles read back both come here, so both give the same hops and
verdicts.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

from pathtrace.analyze.content import with_dns_answers
from pathtrace.analyze.copies import split_copies
from pathtrace.analyze.correlate import correlate
from pathtrace.analyze.hops import HopBuilder
from pathtrace.analyze.verdict import Judge
from pathtrace.analyze.witness import cross_examine
from pathtrace.model.capture import Captured, Correlation
from pathtrace.model.event import ICMP_ERRORS, Event, TagKind
from pathtrace.model.options import RunOptions
from pathtrace.model.result import Setting
from pathtrace.model.state import NamespaceState
from pathtrace.model.trace import Direction, Packet, ProbeTrace, Series


def trace_probes(
    events: list[Event],
    captures: list[Captured] | None,
    setting: Setting,
    lost: int,
    send_errors: dict[int, str],
    capture_on: list[tuple[str, str]] | None = None,
) -> tuple[list[ProbeTrace], Correlation | None]:
    """A finished run's probes, and its events matched to its captures. ``captures``
    is None when nothing was captured; an empty list (interfaces captured, no
    packet came) is still correlated."""
    correlation = correlate(events, captures, setting.run_id) if captures is not None else None
    if correlation is not None and capture_on is not None:
        correlation.interfaces = set(capture_on)
    probes = build_probes(events, setting, lost, send_errors, correlation)
    if captures is not None and correlation is not None:
        probes = cross_examine(probes, captures, correlation, setting.source, setting.states)
        probes = with_dns_answers(probes, captures, correlation, setting.source, setting.run_id)
    return probes, correlation


def build_probes(
    events: list[Event],
    setting: Setting,
    lost: int = 0,
    send_errors: dict[int, str] | None = None,
    correlation: Correlation | None = None,
    only: int | None = None,
) -> list[ProbeTrace]:
    """Events (time order) -> one ProbeTrace per injected packet (also for a live
    view of a run under way, from the events so far); ``only``: that probe alone
    (a live view shows one, and rebuilds it ten times a second)."""
    by_probe: dict[int, list[tuple[int, Event]]] = defaultdict(list)
    for position, event in enumerate(events):
        by_probe[event.index].append((position, event))
    builder = HopBuilder(
        setting.states,
        set(correlation.matched) if correlation else None,
        events,
        correlation.interfaces if correlation else None,
    )
    judge = Judge(
        setting.states,
        setting.source,
        setting.target,
        lost,
        setting.restore,
        setting.dont_fragment,
        asked(setting.options),
        # A live view rebuilds one probe ten times a second: the prediction and the
        # fixes' proofs (a copy of the state each) wait for the run's end.
        predicting=only is None,
    )
    source = setting.states.get(setting.source)
    probes = []
    for index in range(setting.count) if only is None else [only]:
        groups = sort_series(by_probe.get(index, []), setting.source, source)
        request = _build(builder, index, "request", groups["request"], None, setting)
        origin = request.hops[0].time_ns if request.hops else None
        # Every series counts from the request's first hop: +0.0 is the send.
        built = {
            direction: _build(builder, index, direction, found, origin, setting)
            for direction, found in groups.items()
            if found and direction != "request"
        }
        reply = judge.settle_reply(built.get("reply"))
        request = settle_request(request, reply)
        errors = [built[d] for d in ("icmp_error",) if d in built]
        others = [built[d] for d in ("source_rst", "source_icmp_error") if d in built]
        own = [e for _, e in by_probe.get(index, [])]
        verdict = judge.judge(request, reply, errors, own, (send_errors or {}).get(index))
        probes.append(ProbeTrace(index, request, reply, errors, verdict, others))
    return probes


def asked(options: RunOptions | None) -> Packet | None:
    """The probe as asked, before any was sent: what a prediction starts from when
    the source never sent one (its source address is the source's to choose)."""
    if options is None:
        return None
    version = options.target.version
    protocol = {"tcp": "tcp", "udp": "udp", "dns": "udp"}.get(
        options.kind, "icmp" if version == 4 else "icmpv6"
    )
    l4, payload = (20, 0) if options.kind == "tcp" else (8, options.size)
    header = 20 if version == 4 else 40
    target = str(options.target)
    return Packet(protocol, "", target, 0, options.port, options.ttl, header + l4 + payload)


def _build(
    builder: HopBuilder,
    index: int,
    direction: Direction,
    found: list[tuple[int, Event]],
    origin: int | None,
    setting: Setting,
) -> Series:
    """A series' path, with the copies a bridge flooded beside it apart."""
    path, copies = split_copies(found, setting.states)
    series = builder.build(index, direction, path, origin, copies)
    if origin is None and series.hops:
        origin = series.hops[0].time_ns
    series.copies = [builder.build(index, direction, c, origin, copy=True) for c in copies]
    return series


def sort_series(
    events: list[tuple[int, Event]], source: str, state: NamespaceState | None
) -> dict[Direction, list[tuple[int, Event]]]:
    """One probe's events by the packet they saw: the request, its answer, ICMP errors
    about it, and what the source itself sends back (a TCP RST to an answer it never
    asked for, an ICMP error about an answer nobody waits for), which the tag alone
    files under request or ICMP error."""
    groups: dict[Direction, list[tuple[int, Event]]] = {
        "request": [], "reply": [], "icmp_error": [], "source_rst": [], "source_icmp_error": [],
    }  # fmt: skip
    first_of_packet: dict[int, Event] = {}
    for position, e in events:
        if not e.namespace and e.skb_id not in first_of_packet:
            # A copy freed where no device or namespace is known, of an skb never
            # seen on the path: a capture socket's (or a tap's) clone, not a hop.
            continue
        # An event with no skb id (not followed by address) is a packet of its own.
        first = first_of_packet.setdefault(e.skb_id, e) if e.skb_id else e
        if e.tag == TagKind.REQUEST:
            flags = e.tcp_flags or 0
            reset = e.protocol == "tcp" and flags & 0x04 and not flags & 0x02
            groups["source_rst" if reset else "request"].append((position, e))
        elif e.tag == TagKind.REPLY and not _icmp_error(e):
            groups["reply"].append((position, e))
        elif e.tag in (TagKind.ICMP_ERROR, TagKind.REPLY):
            # (Probes before 2026-11-28 filed an error quoting an answer as "reply".)
            # Made by the source and addressed away from it: about the answer.
            from_source = first.namespace == source and not (state and state.owns(first.dst))
            groups["source_icmp_error" if from_source else "icmp_error"].append((position, e))
    return groups


def settle_request(request: Series, reply: Series | None) -> Series:
    """The request's buffer freed where it arrived after the answer had left: said so."""
    if not (reply and reply.hops and request.hops):
        return request
    last = request.hops[-1]
    if last.action != "deliver" or last.time_ns <= reply.hops[0].time_ns:
        return request
    text = f"{last.node} frees it after answering (delivered)"
    return replace(request, hops=[*request.hops[:-1], replace(last, text=text)])


def _icmp_error(e: Event) -> bool:
    return e.icmp_type in ICMP_ERRORS.get(e.protocol, ())
