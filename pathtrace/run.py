"""`pathtrace run`: arm the probes, inject tagged packets, follow them, judge.

The library API behind the CLI and the TUI: ``Run(options).execute()`` gives a
``RunResult`` that holds everything a report, a bundle or a screen shows.
"""

from __future__ import annotations

import os
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from ipaddress import IPv4Address
from typing import Any, Literal

from pathtrace import __version__
from pathtrace.capture.correlate import Correlation, correlate
from pathtrace.capture.sniffer import Capture, Captured
from pathtrace.errors import UsageError
from pathtrace.events.context import DecodeContext, namespace_names
from pathtrace.events.event import HOOKS, Event, decode
from pathtrace.inject import send, tag
from pathtrace.lab import record
from pathtrace.lab.topology import Topology
from pathtrace.system import netns
from pathtrace.trace.hops import HopBuilder
from pathtrace.trace.model import ProbeTrace
from pathtrace.trace.state import NamespaceState, capture
from pathtrace.trace.verdict import Judge

Progress = Callable[[str], None]


@dataclass(frozen=True)
class RunOptions:
    kind: send.Kind
    target: IPv4Address
    port: int = 0
    source: str = "container1"
    count: int = 3
    interval: float = 0.01
    size: int = 56
    ttl: int = 64
    dont_fragment: bool = False
    timeout: float = 1.0
    capture: Literal["run", "all", "off"] = "run"  # the run's packets, everything, none

    @property
    def label(self) -> str:
        port = f":{self.port}" if self.kind != "ping" else ""
        return f"{self.kind} {self.target}{port} from {self.source}"


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
    captures: list[Captured] = field(default_factory=list)
    correlation: Correlation | None = None
    capture_drops: int = 0
    capture_interfaces: int = 0

    @property
    def answered(self) -> int:
        return sum(p.verdict.outcome == "answered" for p in self.probes)

    @property
    def delivered(self) -> bool:
        """Exit status 0: every probe got where it was going (a ping or a tcp probe
        only when answered; udp when it reached its destination)."""
        ok = ("answered", "delivered") if self.options.kind == "udp" else ("answered",)
        return all(p.verdict.outcome in ok for p in self.probes)


def parse_target(kind: str, text: str) -> tuple[IPv4Address, int]:
    host, port = text, 0
    if kind in ("udp", "tcp"):
        if ":" not in text:
            raise UsageError(f"{kind} needs HOST:PORT, got {text!r}")
        host, _, port_text = text.rpartition(":")
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise UsageError(f"{port_text!r} is not a port (1-65535)")
        port = int(port_text)
    try:
        return IPv4Address(host), port
    except ValueError:
        raise UsageError(f"{host!r} is not an IPv4 address (pathtrace resolves no names)") from None


def resolve_source(source: str, topology: Topology | None) -> tuple[str, bool]:
    """(namespace path or name, whether it is a lab node) for --from."""
    namespace, is_lab = _find_source(source, topology)
    # The host's own namespace is never a source: its packets could leave the machine.
    if not is_lab and os.stat(netns.path(namespace)).st_ino == netns.root_inode():
        raise UsageError(
            f"--from {source} is the host's own network namespace: pathtrace "
            "sends and traces only in other namespaces"
        )
    return namespace, is_lab


def _find_source(source: str, topology: Topology | None) -> tuple[str, bool]:
    if topology is not None and source in topology.nodes:
        return topology.namespace(source), True
    if source in netns.names():
        return source, False
    if source.isdigit():
        path = f"/proc/{source}/ns/net"
        if not os.path.exists(path):
            raise UsageError(f"no process {source}")
        return path, False
    if source.startswith("/") and os.path.exists(source):
        return source, False
    nodes = ", ".join(topology.nodes) if topology else "none (no lab)"
    raise UsageError(
        f"unknown node {source!r}: lab nodes are {nodes}; or give a namespace "
        "name, a pid or a namespace path"
    )


class Run:
    def __init__(
        self,
        options: RunOptions,
        topology: Topology | None,
        topology_text: str | None = None,
        progress: Progress | None = None,
        run_id: int | None = None,
    ) -> None:
        if not 1 <= options.count <= 1000:
            raise UsageError("--count must be from 1 to 1000")
        if options.size < tag.TAG_SIZE and options.kind != "tcp":
            raise UsageError(f"--size must be at least {tag.TAG_SIZE} (the tag)")
        if not 1 <= options.ttl <= 255:
            raise UsageError("--ttl must be from 1 to 255")
        self.options = options
        self.topology = topology
        self.topology_text = topology_text
        self.progress = progress or (lambda _: None)
        self.on_event: Callable[[Event], None] | None = None
        self.run_id = run_id  # chosen at random when None
        # Called with the namespace states once the probes are armed (a live view
        # rebuilds hops from the events so far with them).
        self.on_armed: Callable[[dict[str, NamespaceState], str], None] | None = None

    def execute(self) -> RunResult:
        from pathtrace import privileges
        from pathtrace.kernel.engine import Tracer

        privileges.require("CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_BPF", doing="pathtrace run")
        # scapy takes a while to import; let it load while libbpf loads the probes.
        importer = threading.Thread(target=_import_scapy, daemon=True)
        importer.start()
        source, is_lab_node = resolve_source(self.options.source, self.topology)
        if is_lab_node:
            self._ensure_lab()
        namespaces = self._traced_namespaces(source)
        names = {**namespace_names(), **{_inode(n): n for n in namespaces}}
        states: dict[str, NamespaceState] = {}
        for ns in list(namespaces):
            try:
                states[ns] = capture(ns, self._node_name(ns))
            except OSError:
                if ns == source:
                    raise
                namespaces.remove(ns)  # gone since we listed it: not ours to trace
        run_id = self.run_id or tag.new_run()
        started = datetime.now(UTC).isoformat(timespec="milliseconds")
        source_name = names.get(_inode(source), source)
        try:
            src = send.source_address(source, self.options.target)
        except send.NoRoute:
            # Nothing can leave the source: the verdict comes from its routing table.
            probes = build_probes(
                [], states, source_name, str(self.options.target), self.options.count, 0
            )
            return self._result(run_id, started, source_name, namespaces, states, probes)
        probe = send.Probe(
            self.options.kind,
            self.options.target,
            self.options.port,
            self.options.size,
            self.options.ttl,
            self.options.dont_fragment,
        )
        events: list[Event] = []
        self.progress("arming probes")
        tracer = Tracer(
            run_id,
            namespaces,
            index_limit=self.options.count,
            netfilter_namespaces=[ns for ns in namespaces if states[ns].has_rules],
        )
        sniffer = self._capture(states, run_id)
        with sniffer, tracer:
            assert tracer.facts is not None
            ctx = DecodeContext(namespaces=names, drop_reasons=tracer.facts.drop_reasons)
            ctx.prefetch_symbols()
            importer.join()
            packets = [send.build(probe, src, run_id, i) for i in range(self.options.count)]
            if self.on_armed is not None:
                self.on_armed(states, source_name)
            self.progress(f"sending {len(packets)} {self.options.kind} probes")
            send_errors: dict[int, str] = {}

            def take_events() -> None:
                assert tracer.layout is not None
                for raw in tracer.drain():
                    event = decode(tracer.layout.unpack(raw), ctx)
                    events.append(event)
                    if self.on_event is not None:
                        self.on_event(event)

            with send.Sender(source) as sender:
                for i, packet in enumerate(packets):
                    if i:
                        time.sleep(self.options.interval)
                        take_events()  # live views see hops while probes still go out
                    try:
                        sender.send(packet, self.options.target)
                    except OSError as error:  # the source's own stack refused it
                        send_errors[i] = error.strerror or str(error)
            deadline = time.monotonic() + self.options.timeout
            while True:
                take_events()
                if self._complete(events, source_name):
                    # The last reply's own end (delivered, freed) comes just after
                    # it is received: without it the last probe's path looks short.
                    time.sleep(0.03)
                    take_events()
                    break
                if time.monotonic() > deadline:
                    break
                time.sleep(0.005)
            lost = {HOOKS.get(k, str(k)): v for k, v in tracer.lost().items()}
            hooks = [s.to_json() for s in tracer.statuses]
        events.sort(key=lambda e: e.time_ns)
        captures = sorted(sniffer.packets, key=lambda c: c.time_ns)
        probes, correlation = trace_probes(
            events,
            captures if sniffer.interfaces else None,
            run_id,
            states,
            source_name,
            str(self.options.target),
            self.options.count,
            sum(lost.values()),
            send_errors,
        )
        return self._result(
            run_id,
            started,
            source_name,
            namespaces,
            states,
            probes,
            hooks=hooks,
            lost=lost,
            events=events,
            send_errors=send_errors,
            captures=captures,
            correlation=correlation,
            capture_drops=sniffer.drops,
            capture_interfaces=len(sniffer.interfaces),
        )

    def _result(
        self,
        run_id: int,
        started: str,
        source: str,
        namespaces: list[str],
        states: dict[str, NamespaceState],
        probes: list[ProbeTrace],
        **measured: Any,
    ) -> RunResult:
        return RunResult(
            options=self.options,
            run_id=run_id,
            started=started,
            kernel=os.uname().release,
            version=__version__,
            source_namespace=source,
            namespaces={ns: self._node_name(ns) for ns in namespaces},
            probes=probes,
            states=states,
            **measured,
        )

    def _capture(self, states: dict[str, NamespaceState], run_id: int) -> Capture:
        from pathtrace.capture.filter import compile_filter, expression

        if self.options.capture == "off":
            return Capture([], None)
        interfaces = [
            (ns, link.name) for ns, state in states.items() for link in state.links if link.up
        ]
        program = None if self.options.capture == "all" else compile_filter(expression(run_id))
        return Capture(interfaces, program)

    def _complete(self, events: list[Event], source: str) -> bool:
        done = {
            e.index
            for e in events
            if e.namespace == source
            and e.tag in ("reply", "icmp_error")
            and e.hook in ("dev_recv", "nf_before", "nat_before")
        }
        return len(done) >= self.options.count

    def _ensure_lab(self) -> None:
        assert self.topology is not None
        missing = [n for n in self.topology.nodes if not netns.exists(self.topology.namespace(n))]
        if missing:
            from pathtrace.lab import build

            self.progress("bringing the lab up")
            build.up(self.topology, self.topology_text)

    def _traced_namespaces(self, source: str) -> list[str]:
        if self.topology is not None and record.read_record(self.topology.prefix) is not None:
            lab = [self.topology.namespace(n) for n in self.topology.nodes]
            if source in lab:
                return lab
        # A topology pathtrace did not build: every named namespace, and the source;
        # never the host's own, even under another name.
        root = netns.root_inode()
        found = [n for n in netns.names() if not n.startswith("pt-doctor") and _inode(n) != root]
        return found if source in found else [source, *found]

    def _node_name(self, namespace: str) -> str:
        if self.topology is not None:
            node = self.topology.node_of_namespace(namespace)
            if node is not None:
                return node
        return namespace


def trace_probes(
    events: list[Event],
    captures: list[Captured] | None,
    run_id: int,
    states: dict[str, NamespaceState],
    source: str,
    target: str,
    count: int,
    lost: int,
    send_errors: dict[int, str],
) -> tuple[list[ProbeTrace], Correlation | None]:
    """A finished run's probes, and its events matched to its captures. ``captures``
    is None when nothing was captured; an empty list (interfaces captured, no
    packet came) is still correlated. Live runs and bundles both come here."""
    correlation = correlate(events, captures, run_id) if captures is not None else None
    probes = build_probes(events, states, source, target, count, lost, send_errors, correlation)
    return probes, correlation


def build_probes(
    events: list[Event],
    states: dict[str, NamespaceState],
    source: str,
    target: str,
    count: int,
    lost: int,
    send_errors: dict[int, str] | None = None,
    correlation: Correlation | None = None,
) -> list[ProbeTrace]:
    """Events (time order) -> one ProbeTrace per injected packet. Live runs and saved
    bundles both come through here, so both give the same hops and verdicts."""
    by_probe: dict[int, dict[str, list[tuple[int, Event]]]] = defaultdict(lambda: defaultdict(list))
    for position, event in enumerate(events):
        by_probe[event.index][event.tag].append((position, event))
    builder = HopBuilder(states, set(correlation.matched) if correlation else None)
    judge = Judge(states, source, target, lost)
    probes = []
    for index in range(count):
        groups = by_probe.get(index, {})
        request = builder.build(index, "request", groups.get("request", []))
        origin = request.hops[0].time_ns if request.hops else None
        reply = judge.settle_reply(
            builder.build(index, "reply", groups["reply"], origin) if groups.get("reply") else None
        )
        errors = (
            [builder.build(index, "icmp_error", groups["icmp_error"], origin)]
            if groups.get("icmp_error")
            else []
        )
        own = [e for group in groups.values() for _, e in group]
        verdict = judge.judge(request, reply, errors, own, (send_errors or {}).get(index))
        probes.append(ProbeTrace(index, request, reply, errors, verdict))
    return probes


def _inode(namespace: str) -> int:
    return os.stat(netns.path(namespace)).st_ino


def _import_scapy() -> None:
    import scapy.layers.inet  # noqa: F401
