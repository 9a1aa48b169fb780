"""A finished run: everything a report, a bundle or a screen shows.

Built by the session from a live run, or read back from a bundle's files; the
outputs only read it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from ipaddress import ip_network
from typing import Any

from pathtrace.model.capture import Captured, Correlation
from pathtrace.model.conntrack import ConntrackEntry
from pathtrace.model.event import Event
from pathtrace.model.options import RunOptions
from pathtrace.model.state import NamespaceState, Rule
from pathtrace.model.trace import ProbeTrace


@dataclass(frozen=True)
class Setting:
    """What a run's events are read against: the run, where it started, the state."""

    run_id: int
    source: str  # the source namespace, named as events name it
    target: str
    count: int
    states: dict[str, NamespaceState]
    restore: str | None = None  # the command that restores the network (a lab's)
    dont_fragment: bool = False  # the probes' DF bit (the predicted path fragments without it)
    options: RunOptions | None = None  # what was asked (a probe never sent is predicted from it)


@dataclass
class RunResult:
    options: RunOptions
    run_id: int
    started: str  # UTC, ISO 8601
    kernel: str
    version: str
    source_namespace: str
    namespaces: dict[str, str]  # namespace -> node
    probes: list[ProbeTrace]
    states: dict[str, NamespaceState]
    hooks: list[dict[str, Any]] = field(default_factory=list)
    lost: dict[str, int] = field(default_factory=dict)  # hook name -> events lost
    events: list[Event] = field(default_factory=list)
    send_errors: dict[int, str] = field(default_factory=dict)  # probe -> why it was not sent
    # probe -> (fragments, the way's MTU): larger than the MTU, sent cut as the kernel cuts
    fragmented: dict[int, tuple[int, int]] = field(default_factory=dict)
    captures: list[Captured] = field(default_factory=list)
    correlation: Correlation | None = None
    capture_drops: int = 0
    capture_interfaces: int = 0
    # (namespace, interface) of every capture socket; None: not known (bundles before
    # 2026-11-29 say only how many).
    capture_on: list[tuple[str, str]] | None = None
    # Taken while the run's namespaces were there, so saving never goes back to them.
    conntrack: dict[str, list[ConntrackEntry]] = field(default_factory=dict)  # by namespace
    versions: dict[str, str] = field(default_factory=dict)  # pathtrace, libbpf, scapy, ...
    restore: str | None = None  # the command that puts the network back (a lab's), if any
    interrupted: bool = False  # stopped by Ctrl-C: the probes sent so far

    @property
    def answered(self) -> int:
        return sum(p.verdict.outcome == "answered" for p in self.probes)

    @property
    def delivered(self) -> bool:
        """Exit status 0: every probe got where it was going (a ping or a tcp probe
        only when answered; udp when it reached its destination)."""
        ok = ("answered", "delivered") if self.options.kind == "udp" else ("answered",)
        return all(p.verdict.outcome in ok for p in self.probes)

    @property
    def degraded(self) -> list[str]:
        """Hooks this kernel has that could not be armed for this run, and what that hides."""
        used = {h.get("family") for h in self.hooks if h.get("state") == "used"}
        found: dict[str, str] = {}
        for hook in self.hooks:
            family = str(hook.get("family"))
            failed = hook.get("state") == "failed" and hook.get("this_run")
            if failed and family not in used and family not in found:
                found[family] = (
                    f"{family} hooks could not be armed ({hook.get('reason')}): what they "
                    f"show ({hook.get('purpose')}) may be missing from the hops"
                )
        gaps = (
            _capture_gaps(self.probes, self.captures, self.states, self.capture_on)
            if self.correlation and self.capture_on is not None
            else []
        )
        return list(found.values()) + gaps + conflicts(self.states)

    @property
    def notes(self) -> list[str]:
        """What the reader must know to trust the run: rules pathtrace cannot see."""
        found = []
        if self.fragmented:
            pieces, mtu = max(self.fragmented.values())
            found.append(
                f"{len(self.fragmented)} of the probes were larger than the MTU of the way "
                f"from the source ({mtu}): each was sent in up to {pieces} fragments, as the "
                "kernel cuts an application's datagram; the hops follow the first fragment "
                "(it alone carries the headers and the tag)"
            )
        for state in self.states.values():
            tables = [t for t in state.legacy_tables.splitlines() if t.strip()]
            saved = state.legacy_save or state.legacy6_save
            if tables and saved and any(r.legacy for r in state.rules().rules):
                found.append(
                    f"{state.node} uses iptables-legacy (tables {', '.join(tables)}): its rules "
                    "were read with iptables-legacy-save (cited by position in their chain, "
                    "`rule N`)"
                )
            elif tables:
                found.append(
                    f"{state.node} uses iptables-legacy (tables {', '.join(tables)}): nft does "
                    "not list those rules and iptables-legacy-save could not be read, so their "
                    "translations and drops are shown without the rule that did them"
                )
        return found

    @property
    def setting(self) -> Setting:
        return Setting(
            self.run_id,
            self.source_namespace,
            str(self.options.target),
            self.options.count,
            self.states,
            self.restore,
            self.options.dont_fragment,
            self.options,
        )


def _capture_gaps(
    probes: Sequence[ProbeTrace],
    captures: Sequence[Captured],
    states: dict[str, NamespaceState],
    capture_on: list[tuple[str, str]],
) -> list[str]:
    """Interfaces the trace crossed, captured, whose capture holds nothing at all: the
    tool's fault."""
    namespace = {s.node: ns for ns, s in states.items()}
    holding = {(c.namespace, c.ifname) for c in captures}
    missed: Counter[tuple[str, str]] = Counter()
    for probe in probes:
        for series in probe.series:
            for i, hop in enumerate(series.hops):
                # Only where the packet went on past the interface: a drop right there
                # (an XDP program, before any capture tap) explains an empty capture.
                went_on = any(
                    h.action != "drop" or (h.node, h.interface) != (hop.node, hop.interface)
                    for h in series.hops[i + 1 :]
                )
                if hop.captured is False and went_on:
                    missed[(hop.node, hop.interface)] += 1
    return [
        f"capture: 0 packets on {n}/{ifname}, where the trace saw {count} hops: the capture "
        "missed them (a fault of pathtrace's capture, not of the network)"
        for (n, ifname), count in sorted(missed.items())
        if (namespace.get(n, n), ifname) not in holding
        and (namespace.get(n, n), ifname) in set(capture_on)
    ]


def conflicts(states: dict[str, NamespaceState]) -> list[str]:
    """What the saved state says cannot all be right, said even when probes pass: an
    address two namespaces hold, a neighbour entry that points at a MAC whose owner
    does not hold the address, two policy rules that tie."""
    holders: dict[str, list[str]] = {}
    by_mac: dict[str, tuple[NamespaceState, str]] = {}
    for state in states.values():
        for link in state.links:
            if link.kind == "loopback":
                continue
            if link.mac:
                by_mac.setdefault(link.mac.lower(), (state, link.name))
            for address in link.addresses:
                holders.setdefault(address.split("/")[0], []).append(f"{state.node}/{link.name}")
    found = [
        f"conflict: {address} is held by {' and '.join(where)}: which answers depends on "
        "whose ARP or neighbour reply comes first"
        for address, where in sorted(holders.items())
        if len({w.split("/")[0] for w in where}) > 1
    ]
    for state in states.values():
        for entry in state.neighbour_entries():
            owner = by_mac.get((entry.lladdr or "").lower())
            if owner is None or entry.state in ("FAILED", "INCOMPLETE", "NOARP"):
                continue
            other, ifname = owner
            if other is state or other.owns(entry.dst):
                continue
            found.append(
                f"conflict: {state.node}'s neighbour entry says {entry.dst} is at "
                f"{entry.lladdr}, which is {other.node}/{ifname}'s, and {other.node} does not "
                f"hold {entry.dst} (unless it answers for it by proxy ARP)"
            )
    for state in states.values():
        found += _tied_rules(state)
    return found


def _tied_rules(state: NamespaceState) -> list[str]:
    """Rules of one family and priority that can match one packet and do different
    things: the kernel tries them in the order they were added (the order `ip rule`
    lists them), which nothing in either rule says."""
    found = []
    rules = state.route_rules
    for i, a in enumerate(rules):
        for b in rules[i + 1 :]:
            if (a.family, a.priority) != (b.family, b.priority):
                continue
            if (a.action, a.table) == (b.action, b.table) or not _can_both_match(a, b):
                continue
            found.append(
                f"conflict: {state.node}'s rules '{a.describe()}' and '{b.describe()}' share "
                f"priority {a.priority} and can match the same packet: the kernel takes the "
                "one added first (listed first by `ip rule`)"
            )
    return found


def _can_both_match(a: Rule, b: Rule) -> bool:
    for x, y in ((a.src, b.src), (a.dst, b.dst)):
        if x and y and not ip_network(x, strict=False).overlaps(ip_network(y, strict=False)):
            return False
    for x, y in ((a.iif, b.iif), (a.oif, b.oif)):
        if x and y and x != y:
            return False
    if a.fwmark is not None and b.fwmark is not None:
        mask = (a.fwmask if a.fwmask is not None else 0xFFFFFFFF) & (
            b.fwmask if b.fwmask is not None else 0xFFFFFFFF
        )
        if a.fwmark & mask != b.fwmark & mask:
            return False
    return True
