"""Making a fault on a fresh reference lab, running its probe, and scoring the verdict."""

from __future__ import annotations

import subprocess
import time
import uuid
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Literal

from pathtrace.lab import build, topology
from pathtrace.model.options import RunOptions
from pathtrace.model.result import RunResult
from pathtrace.model.trace import Verdict
from pathtrace.session import Run
from tests.faults.corpus import NAMES, Fault

Mark = Literal["right", "wrong", "unknown"]


@dataclass(frozen=True)
class Score:
    fault: Fault
    verdict: Verdict
    outcome: bool
    place: bool
    cause: Mark  # by the code and objects the verdict names
    fix: bool
    said: bool = True  # the cause's words, as people read them
    # The predicted path's stop, scored like the cause; "missed": it predicts the
    # probe gets through (the fault is in something the prediction does not model).
    predicted: str = "missed"

    @property
    def right(self) -> bool:
        return self.outcome and self.place and self.cause == "right" and self.fix and self.said


def _has(text: str | None, words: tuple[str, ...]) -> bool:
    return text is not None and all(w.lower() in text.lower() for w in words)


def names(verdict: Verdict, objects: tuple[str, ...]) -> bool:
    """Every expected object is (a prefix of) one the verdict names."""
    return all(any(o.startswith(want) for o in verdict.objects) for want in objects)


def score(fault: Fault, verdict: Verdict) -> Score:
    code, objects = NAMES[fault.name]
    if verdict.code == code and names(verdict, objects):
        cause: Mark = "right"
    elif verdict.code in (None, "unknown"):
        cause = "unknown"  # an honest "cannot tell" is not a wrong cause
    else:
        cause = "wrong"
    return Score(
        fault,
        verdict,
        outcome=verdict.outcome == fault.outcome,
        place=verdict.where == fault.place,
        cause=cause,
        fix=_has(verdict.fix, fault.fix),
        said=_has(verdict.cause, fault.cause),
        predicted=predicted(verdict, code, objects),
    )


def predicted(verdict: Verdict, code: str, objects: tuple[str, ...]) -> str:
    """How the predicted path's stop compares with the expected cause: right,
    wrong (another cause), unknown (it cannot follow), missed (it gets through)."""
    for prediction in verdict.predicted:
        if prediction.outcome == "unknown":
            return "unknown"
        if prediction.outcome == "stopped":
            found = all(any(o.startswith(w) for o in prediction.objects) for w in objects)
            return "right" if prediction.code == code and found else "wrong"
    if any(p.unknowns for p in verdict.predicted):
        return "unknown"  # it passed something it does not model, and said so
    return "missed"


def make(fault: Fault, lab: topology.Topology) -> list[subprocess.Popen[bytes]]:
    """The fault, made with the plain tools in the lab's namespaces; its processes."""
    for node, command in fault.made:
        for other in lab.nodes:
            command = command.replace(f"@{other}", lab.namespace(other))
        subprocess.run(
            ["ip", "netns", "exec", lab.namespace(node), "sh", "-ec", command],
            check=True,
            capture_output=True,
            timeout=20,
        )
    before = {node: _listening(lab, node) for node, _argv in fault.runs}
    started = []
    for node, argv in fault.runs:
        started.append(subprocess.Popen(["ip", "netns", "exec", lab.namespace(node), *argv]))
    for _ in range(100):  # until each process listens: its node's sockets changed
        if all(_listening(lab, node) != before[node] for node in before):
            break
        time.sleep(0.05)
    return started


def _listening(lab: topology.Topology, node: str) -> str:
    return subprocess.run(
        ["ip", "netns", "exec", lab.namespace(node), "ss", "-Hltn"],
        capture_output=True,
        text=True,
    ).stdout


def options(fault: Fault) -> RunOptions:
    p = fault.probe
    return RunOptions(
        p.kind,  # type: ignore[arg-type]
        IPv4Address(p.target),
        p.port,
        source=p.source,
        count=1,
        size=p.size,
        dont_fragment=p.dont_fragment,
        timeout=1.5,
    )


def run_fault(fault: Fault, prefix: str | None = None) -> RunResult:
    """A fresh lab under its own prefix, the fault, one probe; everything removed after."""
    prefix = prefix or f"ptf{uuid.uuid4().hex[:6]}-"
    text = topology.reference_text().replace('prefix = "pt-"', f'prefix = "{prefix}"', 1)
    lab = topology.parse(text)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        build.up(lab, text)
        processes = make(fault, lab)
        return Run(options(fault), lab, topology_text=text).execute()
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=5)
        build.down(None, prefix=prefix)
