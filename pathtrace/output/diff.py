"""Where two runs' paths part ways (e.g. before and after `lab fix`)."""

from __future__ import annotations

from pathtrace.model.result import RunResult
from pathtrace.model.trace import Hop, ProbeTrace


def _path(probe: ProbeTrace) -> list[Hop]:
    return [h for s in probe.series for h in s.hops]


def _same_step(x: Hop, y: Hop) -> bool:
    """The same step of a path: where, what, and (for a translation) the kind, the rule and
    the addresses, not the ports or ICMP ids each run picks afresh."""
    if x.translation is not None and y.translation is not None:
        a, b = x.translation, y.translation
        return (x.node, x.interface, x.action, a.kind, a.rule, _hosts(a.before, a.after)) == (
            y.node,
            y.interface,
            y.action,
            b.kind,
            b.rule,
            _hosts(b.before, b.after),
        )
    return (x.node, x.interface, x.action, x.text, x.drop_reason) == (
        y.node,
        y.interface,
        y.action,
        y.text,
        y.drop_reason,
    )


def _hosts(*endpoints: str) -> tuple[str, ...]:
    return tuple(e.rsplit(":", 1)[0] for e in endpoints)


def diff(a: RunResult, b: RunResult, names: tuple[str, str] = ("A", "B")) -> list[str]:
    """Lines that say where probe 0 of each run went the same way, and where not."""
    lines = [
        f"{names[0]}: {a.options.label}: {a.probes[0].verdict.summary}",
        f"{names[1]}: {b.options.label}: {b.probes[0].verdict.summary}",
    ]
    pa, pb = _path(a.probes[0]), _path(b.probes[0])
    same = 0
    for x, y in zip(pa, pb, strict=False):
        if not _same_step(x, y):
            break
        same += 1
    if same == len(pa) == len(pb):
        lines.append(f"the same path: {same} hops")
        return lines
    lines.append(f"the same for {same} hops" + (f", up to: {pa[same - 1].text}" if same else ""))
    for name, path in zip(names, (pa, pb), strict=True):
        rest = path[same:]
        lines.append(f"then {name}:" if rest else f"then {name}: nothing more")
        lines += [f"  {h.node}/{h.interface or '-'}: {h.text}" for h in rest]
    return lines
