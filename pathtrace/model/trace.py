"""What a trace is made of, as a person reads it: hops, series, verdicts.

All of it is plain data (JSON-able through ``asdict``), built from events by
``hops.py`` and ``verdict.py``; reports, bundles and the TUI only read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pathtrace.model.cause import Finding
from pathtrace.model.event import Outer
from pathtrace.model.prediction import Prediction

# What a series is: the injected packet, its answer, an ICMP error about it, or a
# packet of the conversation that is neither: the source's own RST to an answer,
# or the source's ICMP error about an answer nobody waits for.
Direction = Literal["request", "reply", "icmp_error", "source_rst", "source_icmp_error"]
TITLES: dict[str, str] = {
    "request": "request",
    "reply": "reply",
    "icmp_error": "ICMP error",
    "source_rst": "the source's RST",
    "source_icmp_error": "the source's ICMP error",
}
Outcome = Literal["answered", "delivered", "rejected", "dropped", "lost"]


@dataclass(frozen=True)
class Packet:
    protocol: str
    src: str
    dst: str
    sport: int
    dport: int
    ttl: int
    length: int

    def describe(self) -> str:
        if self.protocol in ("icmp", "icmpv6"):
            return f"{self.src} > {self.dst} {self.protocol} id {self.sport} seq {self.dport}"
        return f"{_host(self.src)}:{self.sport} > {_host(self.dst)}:{self.dport} {self.protocol}"

    def endpoint(self, side: Literal["src", "dst"]) -> str:
        address = _host(self.src if side == "src" else self.dst)
        if self.protocol in ("icmp", "icmpv6"):
            return f"{address}:{self.protocol}/{self.sport}"
        return f"{address}:{self.sport if side == 'src' else self.dport}"


def _host(address: str) -> str:
    """An address as it stands before a port: IPv6 in brackets."""
    return f"[{address}]" if ":" in address else address


@dataclass(frozen=True)
class Translation:
    kind: str  # SNAT, DNAT, or their reverse on a reply: un-SNAT, un-DNAT
    before: str
    after: str
    rule: str | None  # the rule that did it, as the ruleset shows it
    node: str
    rule_id: str | None = None  # the rule as data: FAMILY TABLE CHAIN handle N

    def describe(self) -> str:
        by = f" by {self.rule}" if self.rule else ""
        return f"{self.kind}{by}: {self.before} -> {self.after}"


@dataclass(frozen=True)
class Hop:
    time_ns: int
    offset_us: float  # since the probe was sent
    latency_us: float  # since the previous hop
    node: str
    interface: str
    action: str  # send cross bridge-up bridge-forward route translate receive deliver drop end
    text: str
    hooks: tuple[str, ...]
    packet: Packet
    translation: Translation | None = None
    drop_reason: str | None = None
    events: tuple[int, ...] = ()  # positions in the run's event list
    captured: bool | None = None  # seen by the interface's capture (None: not a device hop)
    # Inside a tunnel's datagram here: the outer headers (``packet`` stays the inner one).
    outer: Outer | None = None
    mark: int = 0  # skb->mark as the hook read it (policy routing reads it)

    @property
    def wire(self) -> Packet:
        """The packet as the interface carries it: the tunnel's datagram, if encapsulated."""
        if self.outer is None:
            return self.packet
        o = self.outer
        return Packet("udp", o.src, o.dst, o.sport, o.dport, self.packet.ttl, self.packet.length)


@dataclass
class Series:
    index: int
    direction: Direction
    hops: list[Hop] = field(default_factory=list)
    # Copies a bridge flooded beside this path (never judged: not the packet's way).
    copies: list[Series] = field(default_factory=list)

    @property
    def title(self) -> str:
        return TITLES[self.direction]


@dataclass
class Verdict:
    outcome: Outcome
    summary: str  # one line: what happened
    where: str | None = None  # node/interface of the stop, or the last place seen
    cause: str | None = None  # why, in the kernel's words and ours
    fix: str | None = None  # what to change
    confidence: str = "certain"  # or what lost events make it
    evidence: list[str] = field(default_factory=list)  # the saved state that proves the cause
    code: str | None = None  # the cause as data (model.cause.CAUSES); None when nothing failed
    objects: list[str] = field(default_factory=list)  # what the cause names: KIND:NODE/NAME
    # What the saved state says the kernel would do with the probe (analyze.predict):
    # the request's path, and its answer's when the request would arrive.
    predicted: list[Prediction] = field(default_factory=list)
    # What the prediction says of the fix, applied to the saved state: proven, not
    # printed (it would not heal), or what it clears (None: not a command it models).
    proof: str | None = None

    @classmethod
    def of(cls, outcome: Outcome, summary: str, where: str | None, finding: Finding) -> Verdict:
        """A verdict whose cause, fix, evidence, code and objects are the finding's."""
        return cls(
            outcome,
            summary,
            where=where,
            cause=finding.cause,
            fix=finding.fix,
            evidence=list(finding.evidence),
            code=finding.code,
            objects=list(finding.objects),
        )


@dataclass
class ProbeTrace:
    """One injected packet: its way out, the answer's way back, the verdict."""

    index: int  # 0-based, as in the tag; people read it as probe index + 1
    request: Series
    reply: Series | None
    errors: list[Series]
    verdict: Verdict
    others: list[Series] = field(default_factory=list)  # the source's RST, its ICMP errors

    @property
    def number(self) -> int:
        """How people count probes: from 1 (the CLI, the TUI, reports, captures)."""
        return self.index + 1

    @property
    def series(self) -> list[Series]:
        """Every series of the probe, in reading order."""
        found = [self.request, self.reply, *self.errors, *self.others]
        return [s for s in found if s is not None]
