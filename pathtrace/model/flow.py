"""What `watch` saw: flows of real packets a filter picked, as a person reads them.

Plain data (JSON-able through ``asdict``), built from events by
``analyze/flows.py``; the reports only read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pathtrace.model.capture import Captured
from pathtrace.model.event import Event
from pathtrace.model.state import NamespaceState
from pathtrace.model.trace import Series, Verdict


@dataclass(frozen=True)
class SamplingStep:
    at_s: float  # seconds since the watch was armed
    every: int  # 1 in every: 1 is every flow
    why: str

    def to_json(self) -> dict[str, object]:
        return {"at_s": self.at_s, "every": self.every, "why": self.why}

    def describe(self) -> str:
        rate = "every new flow" if self.every == 1 else f"1 in {self.every} new flows"
        return f"from +{self.at_s:.1f} s {rate} followed ({self.why})"


@dataclass(frozen=True)
class Place:
    """A place the flow's packets went through, with how many and how fast."""

    node: str
    interface: str
    action: str
    direction: str  # request (the first packet's way) or reply
    packets: int
    median_latency_us: float  # since the packet's previous hop


@dataclass
class Flow:
    """One conversation: the packets of both ways, across NAT, as the kernel numbered it."""

    index: int  # the probes' flow number, from 0
    protocol: str
    client: str  # the first packet's source, as first seen: ADDRESS:PORT
    server: str  # its destination, as first seen
    source: str  # the node where the first packet was first seen
    packets: list[Series]  # each packet's path, in the order they started
    verdict: Verdict  # the first exchange, judged as `run` judges a probe
    counts: dict[str, int] = field(default_factory=dict)  # packets per direction
    resets: list[str] = field(default_factory=list)  # who sent a TCP RST, each
    retransmissions: list[str] = field(default_factory=list)  # TCP segments sent again
    icmp_errors: list[str] = field(default_factory=list)  # what each ICMP error said
    translations: list[str] = field(default_factory=list)  # every distinct one seen
    conntrack: str | None = None  # the entry's state at the last hook that read it
    invalid: list[str] = field(default_factory=list)  # packets conntrack held INVALID, where
    unanswered: int = 0  # requests after the last answer (UDP, ICMP): answers never came
    places: list[Place] = field(default_factory=list)
    not_kept: int = 0  # later sk_buffs of a long flow: counted, their events not kept
    copies: int = 0  # sk_buffs seen only when freed (a capture socket's, a clone's): no packets

    @property
    def number(self) -> int:
        return self.index + 1


@dataclass
class WatchResult:
    expression: str
    started: str  # UTC, ISO 8601
    kernel: str
    version: str
    namespaces: dict[str, str]  # traced namespace -> node
    filtered_in: list[str]  # the nodes where the filter picks packets
    flow_limit: int
    ended: str  # "duration", "count", "interrupted", "stopped" (Watch.stop: a TUI)
    seconds: float
    flows: list[Flow]
    # filtered, matched, over_limit, undecided, sampled_out, reader_behind, ruled_out
    stats: dict[str, int] = field(default_factory=dict)
    sampling: list[SamplingStep] = field(default_factory=list)  # the rate's changes
    lost: dict[str, int] = field(default_factory=dict)  # hook -> events lost
    hooks: list[dict[str, object]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    states: dict[str, NamespaceState] = field(default_factory=dict)
    # What the per-interface captures kept (--save): the packets the expression
    # matched on each interface, as tcpdump there would have.
    captures: list[Captured] = field(default_factory=list)
    capture_on: list[tuple[str, str]] = field(default_factory=list)  # (namespace, ifname)
    capture_drops: int = 0

    @property
    def notes(self) -> list[str]:
        """What the report must say about its own completeness."""
        notes = []
        over = self.stats.get("over_limit", 0)
        if over:
            notes.append(
                f"{over} more packets matched the filter after {self.flow_limit} flows "
                "(the limit): not followed (--max-flows)"
            )
        undecided = self.stats.get("undecided", 0)
        if undecided:
            notes.append(
                f"{undecided} packets went unfiltered: the filter's run was interrupted "
                "by another probe's on the same CPU three times; not followed"
            )
        if self.sampling:
            out = self.stats.get("sampled_out", 0)
            notes.append(
                "sampled: "
                + "; ".join(step.describe() for step in self.sampling)
                + f"; {out} new flows the filter matched were not followed"
            )
        behind = self.stats.get("reader_behind", 0)
        if behind:
            notes.append(
                f"{behind} new flows the filter matched while the reader was behind (half "
                "the ring buffer unread) were not followed"
            )
        lost = sum(self.lost.values())
        if lost:
            notes.append(
                f"{lost} events were lost to a full ring buffer ("
                + ", ".join(f"{hook} {n}" for hook, n in sorted(self.lost.items()))
                + "): paths may miss hops"
            )
        return notes
