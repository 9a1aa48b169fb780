"""`pathtrace watch`: follow real packets a pcap-filter expression picks.

Compile the filter -> read the namespaces -> arm the probes in watch mode (no
tags: the filter picks a flow's first packet where it enters the traced set,
the flow's keys and the skb follow the rest) -> collect until the duration,
the count of flows or Ctrl-C -> flows and their verdicts.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from pathtrace import __version__
from pathtrace.analyze.flows import build_flows
from pathtrace.analyze.links import peer
from pathtrace.capture.filter import compile_filter, compile_watch_filter
from pathtrace.capture.sniffer import Capture
from pathtrace.errors import UsageError
from pathtrace.kernel.decode import DecodeContext, decode
from pathtrace.kernel.engine import Tracer, for_watch
from pathtrace.lab import lock, record
from pathtrace.lab.topology import Topology
from pathtrace.model import tag
from pathtrace.model.event import HOOK_CODES, Event
from pathtrace.model.flow import Flow, WatchResult
from pathtrace.model.state import NamespaceState, tunnel_ports
from pathtrace.sampling import MOST, Sampler
from pathtrace.session import node_name, resolve_source
from pathtrace.system import discover, netns, observe, privileges

Progress = Callable[[str], None]
MAX_FLOWS = 10_000
# --count: how long the flows must go without a packet before the watch ends.
QUIET = 2.0


@dataclass(frozen=True)
class WatchOptions:
    expression: str
    source: str | None = None  # --from: the filter picks packets there only
    everywhere: bool = False  # --all: every namespace on the machine, not the lab's
    duration: float | None = None  # seconds; None: until Ctrl-C or --count
    count: int | None = None  # flows; None: until Ctrl-C or --duration
    max_flows: int = 1000
    packets_kept: int = 200  # per flow: the sk_buffs whose events are kept (later ones counted)
    # Capture what the expression matches on every interface of the traced
    # namespaces (for --save: the bundle's trace.pcapng).
    capture: bool = False
    # Follow 1 in N of the new flows throughout; None: every flow, and fewer
    # while the reader loses events (pathtrace/sampling.py).
    sample: int | None = None

    def __post_init__(self) -> None:
        if self.duration is not None and not 0 < self.duration <= 86400:
            raise UsageError("--duration must be a number of seconds above 0, at most 86400")
        if self.count is not None and not 1 <= self.count <= MAX_FLOWS:
            raise UsageError(f"--count must be from 1 to {MAX_FLOWS} flows")
        if not 1 <= self.packets_kept <= 100_000:
            raise UsageError("--packets-kept must be from 1 to 100000")
        if not 1 <= self.max_flows <= MAX_FLOWS:
            raise UsageError(f"--max-flows must be from 1 to {MAX_FLOWS}")
        if self.sample is not None and not 1 <= self.sample <= MOST:
            raise UsageError(f"--sample must be from 1 to {MOST} (1 in N new flows followed)")
        if self.source is not None and self.everywhere:
            raise UsageError("--from and --all choose where the filter picks packets: give one")


class Watch:
    def __init__(
        self, options: WatchOptions, topology: Topology | None, progress: Progress | None = None
    ) -> None:
        self.options = options
        self.topology = topology
        self.progress = progress or (lambda _: None)
        self.on_flow: Callable[[Event], None] | None = None  # a flow's first event
        # Called once the filter is armed, with the nodes where it picks packets.
        self.on_armed: Callable[[list[str]], None] | None = None
        self._stop = threading.Event()
        # What a live view reads while the watch runs (written by its thread).
        self._events: list[Event] = []
        self._states: dict[str, NamespaceState] = {}

    def stop(self) -> None:
        """Ends the watch from another thread (a TUI's key): the report follows."""
        self._stop.set()

    def flows_so_far(self) -> list[Flow]:
        """The flows of the events collected so far (for a live view)."""
        events = sorted(self._events[:], key=lambda e: e.time_ns)
        return build_flows(events, self._states) if events else []

    @property
    def events_so_far(self) -> int:
        return len(self._events)

    def execute(self) -> WatchResult:
        privileges.require("CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_BPF", doing="pathtrace watch")
        o = self.options
        program = compile_watch_filter(o.expression)  # a bad filter: said before arming
        traced, picking, on_lab = self._scope()
        limit = min(o.count or o.max_flows, o.max_flows)
        tracer = for_watch(limit, tag.new_run())
        tracer.begin()
        try:
            if self.topology is None or not on_lab:
                return self._watch(tracer, program, traced, picking, limit)
            # Watching a lab goes beside runs; `lab down` and the like wait for it.
            with lock.held(self.topology.prefix, exclusive=False, doing="watch"):
                return self._watch(tracer, program, traced, picking, limit)
        finally:
            tracer.stop()

    def _lab(self) -> list[str]:
        """The lab's namespaces, if a lab of the topology is up."""
        if self.topology is None or record.read_record(self.topology.prefix) is None:
            return []
        lab = [self.topology.namespace(n) for n in self.topology.nodes]
        return [ns for ns in lab if netns.exists(ns)]

    def _scope(self) -> tuple[list[str], list[str], bool]:
        """(the namespaces traced, those where the filter picks packets, whether
        they are a lab's)."""
        o = self.options
        lab = self._lab()
        if o.source is not None:
            source, is_lab_node = resolve_source(o.source, self.topology)
            if is_lab_node:
                return lab, [source], True
            reach = discover.reachable(source, discover.candidates())
            return reach.namespaces, [source], False
        if lab and not o.everywhere:
            return lab, list(lab), True
        traced = discover.candidates()
        return traced, list(traced), False

    def _watch(
        self,
        tracer: Tracer,
        program: list[tuple[int, int, int, int]],
        traced: list[str],
        picking: list[str],
        limit: int,
    ) -> WatchResult:
        o = self.options
        states = self._observe(traced)
        names = {**netns.namespace_names(), **{netns.inode(n): n for n in states}}
        tracer.namespaces = list(states)
        tunnels = tunnel_ports(states.values())
        netfilter = [ns for ns, state in states.items() if state.has_rules]
        self.progress("arming probes")
        events: list[Event] = []
        self._events, self._states = events, states
        later: dict[int, set[int]] = {}  # flow -> sk_buffs past --packets-kept
        started = datetime.now(UTC).isoformat(timespec="milliseconds")
        ended = "interrupted"
        sniffer = (
            Capture(_interfaces(states), compile_filter(o.expression))
            if o.capture
            else Capture([], None)
        )
        with sniffer, tracer.finish(netfilter, tunnels):
            assert tracer.facts is not None and tracer.layout is not None
            layout = tracer.layout
            ctx = DecodeContext(
                namespaces=names, drop_reasons=tracer.facts.drop_reasons, notes=tracer.note
            )
            ctx.prefetch_symbols()
            watched = [ns for ns in picking if ns in states]
            tracer.watch(program, watched, inside_devices(states, watched))
            sampler = Sampler(o.sample)
            tracer.sample(sampler.every)
            if self.on_armed is not None:
                self.on_armed([states[ns].node for ns in picking if ns in states])
            begun = time.monotonic()
            flows: set[int] = set()
            kept: dict[int, set[int]] = {}  # flow -> the sk_buffs whose events are kept
            quiet_since: float | None = None

            def take() -> bool:
                fresh = False
                for raw in tracer.drain():
                    fresh = True
                    values = layout.unpack(raw)
                    flow, skb = int(values["index"]), int(values["skb_id"])
                    mine = kept.setdefault(flow, set())
                    if skb not in mine:
                        if len(mine) >= o.packets_kept:
                            # Counted, not kept: a long flow's memory stays bounded.
                            later.setdefault(flow, set()).add(skb)
                            continue
                        mine.add(skb)
                    event = decode(values, ctx)
                    events.append(event)
                    if event.index not in flows:
                        flows.add(event.index)
                        if self.on_flow is not None:
                            self.on_flow(event)
                return fresh

            try:
                while True:
                    fresh = take()
                    now = time.monotonic()
                    rate = sampler.consider(now - begun, lambda: sum(tracer.lost().values()))
                    if rate is not None:
                        tracer.sample(rate)
                    if o.duration is not None and now - begun >= o.duration:
                        ended = "duration"
                        break
                    if self._stop.is_set():
                        ended = "stopped"
                        break
                    if o.count is not None and len(flows) >= o.count:
                        # Until the flows go quiet: a client's retries and the
                        # answers to them belong in the report (the limit keeps
                        # new flows out meanwhile).
                        if fresh or quiet_since is None:
                            quiet_since = now
                        elif now - quiet_since >= QUIET:
                            ended = "count"
                            break
                    time.sleep(0.02)
            except KeyboardInterrupt:
                ended = "interrupted"
            take()
            seconds = time.monotonic() - begun
            stats = tracer.watch_stats()
            lost = {str(HOOK_CODES.get(k, k)): v for k, v in tracer.lost().items()}
            hooks = [s.to_json() for s in tracer.statuses]
        events.sort(key=lambda e: e.time_ns)
        captures = sorted(sniffer.packets, key=lambda c: c.time_ns)
        return WatchResult(
            expression=o.expression,
            started=started,
            kernel=os.uname().release,
            version=__version__,
            namespaces={ns: st.node for ns, st in states.items()},
            filtered_in=[states[ns].node for ns in picking if ns in states],
            flow_limit=limit,
            ended=ended,
            seconds=round(seconds, 3),
            flows=build_flows(
                events, states, sum(lost.values()), {f: len(s) for f, s in later.items()}
            ),
            stats=stats,
            sampling=sampler.steps,
            lost=lost,
            hooks=hooks,
            events=events,
            states=states,
            captures=captures,
            capture_on=list(sniffer.interfaces),
            capture_drops=sniffer.drops,
        )

    def _observe(self, traced: list[str]) -> dict[str, NamespaceState]:
        states: dict[str, NamespaceState] = {}
        for ns in traced:
            node = node_name(ns, self.topology)
            try:
                states[ns] = observe.state(ns, node, None, traced)
            except OSError:
                continue  # gone since it was listed
        return states


def _interfaces(states: dict[str, NamespaceState]) -> list[tuple[str, str]]:
    """Every up interface of the traced namespaces, loopback too (a DNAT to
    127.0.0.1, a local answer)."""
    return [(ns, link.name) for ns, state in states.items() for link in state.links if link.up]


def inside_devices(states: dict[str, NamespaceState], watched: list[str]) -> list[tuple[str, int]]:
    """Devices of the watched namespaces whose receives were filtered already: veths
    whose peers are watched (filtered as they left the peer's side), and devices
    that take frames up from a lower device of their own namespace (a bridge from
    its ports, a VLAN from its parent): the same sk_buff, received a second time,
    filtered where the lower device received it."""
    found = []
    for ns in watched:
        state = states[ns]
        for link in state.links:
            if link.kind == "veth":
                far = peer(states.values(), state, link)
                if far is not None and far[0].namespace in watched:
                    found.append((ns, link.index))
            elif link.kind == "bridge" or (link.kind == "vlan" and link.parent_elsewhere is False):
                found.append((ns, link.index))
    return found
