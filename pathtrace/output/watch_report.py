"""`watch`'s report: text for people, markdown for tickets, JSON for programs.

Each flow: who talked to whom, how many packets each way, the first packet's
and the first answer's paths hop by hop, translations, resets and ICMP errors,
conntrack's view, every place with its count and median latency, the verdict.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import IO, Any

from pathtrace.model.flow import Flow, WatchResult
from pathtrace.model.trace import Series

WATCH_FORMAT = "pathtrace-watch/1"


def to_json(result: WatchResult) -> dict[str, Any]:
    return _head(result) | {
        "flows": [_flow_json(f) for f in result.flows],
        "events": [e.to_json() for e in result.events],
    }


def write_json(result: WatchResult, out: IO[str], **more: Any) -> None:
    """``to_json``'s document (with ``more`` keys), written a flow and an event at a
    time: a watch of 10,000 flows keeps ~175,000 events, whose dicts built all at
    once took ~350 MB. A flow is indented as ``json.dump(indent=1)`` would; an
    event is one line."""
    text = json.dumps(_head(result) | more, indent=1)
    out.write(text[: text.rindex("}")].rstrip())
    out.write(',\n "flows": [')
    for i, flow in enumerate(result.flows):
        nested = json.dumps(_flow_json(flow), indent=1).replace("\n", "\n  ")
        out.write(("," if i else "") + "\n  " + nested)
    out.write("\n ]" if result.flows else "]")
    out.write(',\n "events": [')
    for i, event in enumerate(result.events):
        out.write(("," if i else "") + "\n  " + json.dumps(event.to_json()))
    out.write("\n ]" if result.events else "]")
    out.write("\n}")


def _head(result: WatchResult) -> dict[str, Any]:
    return {
        "format": WATCH_FORMAT,
        "expression": result.expression,
        "started": result.started,
        "kernel": result.kernel,
        "version": result.version,
        "namespaces": result.namespaces,
        "filtered_in": result.filtered_in,
        "flow_limit": result.flow_limit,
        "ended": result.ended,
        "seconds": result.seconds,
        "stats": result.stats,
        "sampling": [step.to_json() for step in result.sampling],
        "lost": result.lost,
        "notes": result.notes,
        "hooks": result.hooks,
    }


def _flow_json(flow: Flow) -> dict[str, Any]:
    data = asdict(flow)
    data["number"] = flow.number
    return data


def text(result: WatchResult) -> str:
    lines = [
        f"watched {result.expression!r} for {result.seconds:.1f} s "
        f"(ended: {result.ended}), picked in {', '.join(result.filtered_in) or 'nothing'}",
        f"{len(result.flows)} flows; the filter ran on {result.stats.get('filtered', 0)} "
        f"packets and matched {result.stats.get('matched', 0)}",
    ]
    lines += [f"note: {n}" for n in result.notes]
    for flow in result.flows:
        lines += ["", *flow_text(flow)]
    if not result.flows:
        lines += ["", "no packet matched the filter in the watched namespaces"]
    return "\n".join(lines)


def flow_text(flow: Flow) -> list[str]:
    counts = ", ".join(f"{n} {d}" for d, n in flow.counts.items())
    out = [
        f"flow {flow.number}: {flow.protocol} {flow.client} > {flow.server}, "
        f"first seen at {flow.source} ({counts})",
        f"  verdict: {flow.verdict.outcome}: {flow.verdict.summary}",
    ]
    if flow.verdict.where:
        out.append(f"    where: {flow.verdict.where}")
    if flow.verdict.cause:
        out.append(f"    cause: {flow.verdict.cause}")
    if flow.verdict.fix:
        out.append(f"    fix: {flow.verdict.fix}")
    out += [f"    evidence: {e}" for e in flow.verdict.evidence]
    for series in _shown(flow):
        out.append(f"  {series.title} (packet {flow.packets.index(series) + 1}):")
        for hop in series.hops:
            out.append(
                f"    +{hop.offset_us:>9.1f} us  {hop.node:<10} {hop.interface:<10} {hop.text}"
            )
    out += [f"  NAT: {t}" for t in flow.translations]
    out += [f"  RST sent by {r}" for r in flow.resets]
    out += [f"  retransmission: {r}" for r in flow.retransmissions]
    out += [f"  ICMP error from {e}" for e in flow.icmp_errors]
    if flow.conntrack:
        out.append(f"  conntrack: {flow.conntrack}")
    out += [f"  conntrack INVALID: {i}" for i in flow.invalid]
    if flow.unanswered:
        out.append(f"  {flow.unanswered} requests after the last answer: their answers never came")
    if flow.not_kept:
        out.append(
            f"  {flow.not_kept} later sk_buffs seen, counted only (--packets-kept): "
            "the counts and places above are of the first ones"
        )
    if flow.copies:
        out.append(
            f"  ({flow.copies} sk_buffs seen only when freed, copies: not counted as packets)"
        )
    if flow.places:
        out.append("  per place (packets, median us since the previous hop):")
        for p in flow.places:
            out.append(
                f"    {p.direction:<8} {p.node:<10} {p.interface:<10} {p.action:<14} "
                f"{p.packets:>5} {p.median_latency_us:>9.1f}"
            )
    return out


def _shown(flow: Flow) -> list[Series]:
    """The first packet, the first answer after it, and the first ICMP error."""
    shown: list[Series] = []
    for direction in ("request", "reply", "icmp_error"):
        found = next((s for s in flow.packets if s.direction == direction and s.hops), None)
        if found is not None:
            shown.append(found)
    return shown


def markdown(result: WatchResult) -> str:
    lines = [
        f"# pathtrace watch `{result.expression}`",
        "",
        f"{result.seconds:.1f} s, ended by {result.ended}; filter picked packets in "
        f"{', '.join(result.filtered_in)}; {len(result.flows)} flows.",
    ]
    lines += [f"\n> {n}" for n in result.notes]
    for flow in result.flows:
        v = flow.verdict
        lines += [
            "",
            f"## Flow {flow.number}: {flow.protocol} `{flow.client}` > `{flow.server}`",
            "",
            f"**{v.outcome}**: {v.summary}",
        ]
        if v.cause:
            lines.append(f"\n- cause: {v.cause}")
        if v.fix:
            lines.append(f"- fix: `{v.fix}`")
        lines += [f"- RST sent by {r}" for r in flow.resets]
        lines += [f"- retransmission: {r}" for r in flow.retransmissions]
        lines += [f"- ICMP error from {e}" for e in flow.icmp_errors]
        for series in _shown(flow):
            lines += [
                "",
                f"### {series.title}",
                "",
                "| +us | node | interface | what |",
                "|---|---|---|---|",
            ]
            lines += [
                f"| {h.offset_us:.1f} | {h.node} | {h.interface} | {h.text.replace('|', '/')} |"
                for h in series.hops
            ]
    return "\n".join(lines)
