"""The capture as a witness: where it contradicts a verdict, the verdict yields.

The trace and the captures see the same packets by different means (BPF hooks;
capture sockets on every traced interface). A verdict that the captures
contradict is not left standing as certain:

- the answer arrived at the source (a capture there saw it come in) while the
  trace never has it reach the source: the probe *was* answered, which is what the exit code
  follows; the trace's claim is kept as evidence, the confidence says so;
- the request was captured after the trace's claimed drop, at an interface the
  trace never took it to: the drop may be wrong; the confidence says where.

(An interface the trace crossed but whose capture holds no packet at all is a
fault of the capture, the tool's: RunResult.degraded says so.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from pathtrace.analyze.correlate import WINDOW_NS
from pathtrace.model.capture import Captured, Correlation
from pathtrace.model.state import NamespaceState
from pathtrace.model.trace import ProbeTrace, Verdict


def cross_examine(
    probes: list[ProbeTrace],
    captures: Sequence[Captured],
    correlation: Correlation,
    source: str,
    states: dict[str, NamespaceState],
) -> list[ProbeTrace]:
    """The probes, with each verdict the captures contradict changed to say so."""
    by_probe: dict[int, list[Captured]] = {}
    for capture, tag in zip(captures, correlation.capture_tags, strict=False):
        if tag is not None:
            by_probe.setdefault(tag[0], []).append(capture)
    tags = dict(zip(map(id, captures), correlation.capture_tags, strict=False))
    node = {ns: s.node for ns, s in states.items()}
    out = []
    for probe in probes:
        seen = by_probe.get(probe.index, [])
        verdict = _answer_seen(probe, seen, tags, source, node) or _past_drop(
            probe, seen, tags, node
        )
        out.append(replace(probe, verdict=verdict) if verdict is not None else probe)
    return out


def _answer_seen(
    probe: ProbeTrace,
    seen: list[Captured],
    tags: dict[int, tuple[int, str] | None],
    source: str,
    node: dict[str, str],
) -> Verdict | None:
    # Only a verdict that says the answer never came back can be wrong about it (a
    # TCP RST is an answer that came back: "rejected" holds with it).
    if probe.verdict.outcome not in ("dropped", "lost", "delivered"):
        return None
    arrived = [
        c
        for c in seen
        if c.namespace == source and c.direction == "in" and (tags[id(c)] or (0, ""))[1] == "reply"
    ]
    # The capture sees what reached the interface, before the stack decides: where the
    # trace has the answer reach the source too (and stop there, as a frame for
    # another MAC does), the two agree.
    home = node.get(source, source)
    if not arrived or (probe.reply and any(h.node == home for h in probe.reply.hops)):
        return None
    c = arrived[0]
    where = f"{node.get(c.namespace, c.namespace)}/{c.ifname}"
    old = probe.verdict
    return Verdict(
        "answered",
        f"answered: the capture on {where} saw the answer arrive, which the trace missed",
        where=where,
        confidence=(
            f"disputed: the trace said {old.summary!r}"
            + (f" ({old.cause})" if old.cause else "")
            + f"; the capture on {where} holds the answer, so the trace lost it"
        ),
        evidence=[f"capture {where} in: the answer to probe {probe.number}", *old.evidence],
    )


def _past_drop(
    probe: ProbeTrace,
    seen: list[Captured],
    tags: dict[int, tuple[int, str] | None],
    node: dict[str, str],
) -> Verdict | None:
    old = probe.verdict
    drop = next((h for h in probe.request.hops if h.action == "drop"), None)
    if old.outcome != "dropped" or drop is None:
        return None
    been = {(h.node, h.interface) for h in probe.request.hops}
    later = [
        c
        for c in seen
        if (tags[id(c)] or (0, ""))[1] == "request"
        and c.time_ns > drop.time_ns + WINDOW_NS
        and (node.get(c.namespace, c.namespace), c.ifname) not in been
    ]
    if not later:
        return None
    c = later[0]
    where = f"{node.get(c.namespace, c.namespace)}/{c.ifname}"
    return replace(
        old,
        confidence=(
            f"disputed: the capture on {where} saw the request after the trace's drop in "
            f"{drop.node}/{drop.interface}: it may have gone on"
        ),
    )
