"""A predicted path: what the saved state says the kernel would do with a probe.

Made by ``analyze.predict`` from the state alone (no event), beside the measured
path; a verdict carries both, so that where they part, and why, can be read.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Step:
    node: str
    interface: str | None
    action: str  # send route translate forward bridge encapsulate arrive deliver leave stop
    text: str


@dataclass(frozen=True)
class Prediction:
    direction: str  # request, reply, answer (whether the destination answers at all)
    steps: tuple[Step, ...]
    outcome: str  # delivered, stopped, left (the traced namespaces), unknown
    node: str | None = None  # where it ends
    code: str | None = None  # why it stops (model.cause.CAUSES), when it does
    objects: tuple[str, ...] = ()  # what explains the stop: KIND:NODE/NAME
    why: str | None = None
    # What the model passed without knowing: a rule whose match it does not read,
    # a tc filter or XDP program it cannot run. Any of these may be the real stop.
    unknowns: tuple[str, ...] = ()

    def describe(self) -> str:
        """One line: the nodes it crosses and how it ends."""
        nodes: list[str] = []
        for step in self.steps:
            if not nodes or nodes[-1] != step.node:
                nodes.append(step.node)
        way = " -> ".join(nodes) or (self.node or "")
        end = {
            "delivered": f"delivered in {self.node}",
            "left": f"leaves the traced namespaces from {self.node}",
            "stopped": f"stops in {self.node}: {self.why}",
            "unknown": f"not predicted past {self.node}: {self.why}",
        }[self.outcome]
        return f"{self.direction}: {way}; {end}"
