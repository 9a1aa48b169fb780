"""The run as markdown (a hop table per probe) and as a mermaid sequence diagram
like the tutorial's section 6.1, but of what was measured."""

from __future__ import annotations

from pathtrace.model.result import RunResult
from pathtrace.model.trace import ProbeTrace
from pathtrace.output.text import hooks_line


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown(result: RunResult) -> str:
    o = result.options
    lines = [
        f"# pathtrace run {o.label}",
        "",
        f"- run `{result.run_id:08x}`, started {result.started}, kernel `{result.kernel}`",
        f"- hooks: {hooks_line(result)}",
        f"- {result.answered}/{len(result.probes)} answered",
        "",
    ]
    for probe in result.probes:
        lines += [
            f"## probe {probe.number}: {probe.verdict.outcome}",
            "",
            f"{probe.verdict.summary}",
            "",
        ]
        if probe.verdict.cause:
            lines += [f"- why: {probe.verdict.cause}"]
        if probe.verdict.fix:
            lines += [f"- fix: {probe.verdict.fix}"]
        if probe.verdict.fix and probe.verdict.proof:
            lines += [f"- proof: {probe.verdict.proof}"]
        lines += [f"- seen: {line}" for line in probe.verdict.evidence]
        if probe.verdict.outcome != "answered":
            lines += [f"- predicted: {p.describe()}" for p in probe.verdict.predicted]
        lines += ["", "| direction | +us | node | interface | what |", "|---|---:|---|---|---|"]
        for series in probe.series:
            for hop in series.hops:
                lines.append(
                    f"| {series.title} | {hop.offset_us:.1f} | {hop.node} | "
                    f"{hop.interface or '-'} | {_cell(hop.text)} |"
                )
            for copy in series.copies:
                lines += [
                    f"| {series.title} (copy) | {hop.offset_us:.1f} | {hop.node} | "
                    f"{hop.interface or '-'} | {_cell(hop.text)} |"
                    for hop in copy.hops
                ]
        lines.append("")
    lines += ["## sequence", "", "```mermaid", mermaid(result), "```", ""]
    return "\n".join(lines)


def mermaid(result: RunResult, probe: ProbeTrace | None = None) -> str:
    """A sequenceDiagram of one probe (the first by default)."""
    probe = probe or result.probes[0]
    nodes: list[str] = []
    series_list = probe.series
    for series in series_list:
        for hop in series.hops:
            if hop.node not in nodes:
                nodes.append(hop.node)
    lines = ["sequenceDiagram"] + [f"    participant {_id(n)} as {n}" for n in nodes]
    for series in series_list:
        previous = None
        for hop in series.hops:
            if previous is not None and hop.node != previous.node:
                lines.append(
                    f"    {_id(previous.node)}->>{_id(hop.node)}: "
                    f"{series.direction} {previous.interface} -> {hop.interface}"
                )
            if hop.action in ("translate", "drop", "bridge-forward", "bridge-up", "deliver"):
                lines.append(f"    Note over {_id(hop.node)}: {_note(hop.text)}")
            previous = hop
    lines.append(f"    Note over {_id(nodes[0]) if nodes else 'x'}: {_note(probe.verdict.summary)}")
    return "\n".join(lines)


def _id(node: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in node)


def _note(text: str) -> str:
    return text.replace(";", ",").replace("#", "")[:120]
