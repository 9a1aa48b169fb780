"""The session: a run from start to end (prepare, arm, send, collect, judge).

The library API behind the CLI and the TUI: ``Run(options).execute()`` gives a
``RunResult`` that holds everything a report, a bundle or a screen shows.
"""

from __future__ import annotations

import os
import shlex
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

from pathtrace import __version__
from pathtrace.analyze.links import leaves_machine
from pathtrace.analyze.probes import build_probes, trace_probes
from pathtrace.capture.filter import compile_filter
from pathtrace.capture.sniffer import Capture
from pathtrace.errors import PathtraceError, UsageError
from pathtrace.inject import send
from pathtrace.kernel import libbpf
from pathtrace.kernel.decode import DecodeContext, decode
from pathtrace.kernel.engine import Tracer, for_probes
from pathtrace.lab import DEFAULT_PREFIX, DEFAULT_SOURCE, RESTORE_COMMAND, build, lock, record
from pathtrace.lab.topology import Topology
from pathtrace.model import tag
from pathtrace.model.event import ENCAP_KINDS, HOOK_CODES, Event, Hook, TagKind
from pathtrace.model.options import Address, RunOptions
from pathtrace.model.result import RunResult, Setting
from pathtrace.model.state import NamespaceState, tunnel_ports
from pathtrace.model.tag import capture_filter
from pathtrace.system import (
    conntrack,
    containers,
    discover,
    netns,
    observe,
    privileges,
    scapy_setup,
)

Progress = Callable[[str], None]


def resolve_source(source: str, topology: Topology | None) -> tuple[str, bool]:
    """(namespace path or name, whether it is a lab node) for --from."""
    namespace, is_lab = _find_source(source, topology)
    # The host's own namespace sends only when named so (its packets could leave
    # the machine: a run from it is checked against that, see _guard_host).
    if (
        not is_lab
        and namespace != discover.host_path()
        and _inode(namespace) in (netns.root_inode(), _inode(discover.host_path()))
    ):
        raise UsageError(
            f"--from {source} is the host's own network namespace: say --from host to send from it"
        )
    return namespace, is_lab


def _find_source(source: str, topology: Topology | None) -> tuple[str, bool]:
    if not source or not source.isprintable():
        raise UsageError(f"--from {source!r}: give a node, a namespace, a pid or a path")
    nodes = ", ".join(topology.nodes) if topology else "none (no lab)"
    kind, colon, name = source.partition(":")
    if source == discover.HOST or (colon and kind == "netns" and name == discover.HOST):
        if source == discover.HOST and topology is not None and source in topology.nodes:
            if _lab_is_up(topology):
                raise UsageError(
                    f"--from {source} is both a node of the lab "
                    f"({topology.namespace(source)}) and the namespace pathtrace runs in: "
                    f"say --from lab:{source} or --from netns:{source}"
                )
        if source == discover.HOST or discover.HOST not in netns.names():
            return discover.host_path(), False
    if colon and kind == "lab":
        if topology is None or name not in topology.nodes:
            raise UsageError(f"--from {source}: no lab node {name!r}; lab nodes are {nodes}")
        return topology.namespace(name), True
    if colon and kind == "netns":
        if name not in netns.names():
            raise UsageError(f"--from {source}: no namespace {name!r} in {netns.NETNS_DIR}")
        return name, False
    is_node = topology is not None and source in topology.nodes
    # A namespace of that very name that is not the lab's own: the user's (the
    # tutorial's container1, say). It is never shadowed by a lab made for the run.
    theirs = source in netns.names() and not (
        topology is not None and topology.namespace(source) == source
    )
    if is_node and theirs:
        assert topology is not None
        if _lab_is_up(topology):
            raise UsageError(
                f"--from {source} is both a node of the lab ({topology.namespace(source)}) "
                f"and a namespace pathtrace did not make ({netns.path(source)}): "
                f"say --from lab:{source} or --from netns:{source}"
            )
        return source, False
    if is_node:
        assert topology is not None
        return topology.namespace(source), True
    if source in netns.names():
        return source, False
    if source.isascii() and source.isdigit():
        path = f"/proc/{source}/ns/net"
        if not os.path.exists(path):
            raise UsageError(f"no process {source}")
        return path, False
    if source.startswith("/") and os.path.exists(source):
        if not netns.is_network_namespace(source):
            raise UsageError(
                f"--from {source}: not a network namespace (give a /run/netns/NAME or "
                "/proc/PID/ns/net path)"
            )
        # A path to a named namespace is that namespace: named and traced as its name
        # (a lab node's as the node), whichever path led to it.
        named = netns.namespace_names().get(os.stat(source).st_ino)
        if named is not None and named != "root":
            if topology is not None and topology.node_of_namespace(named) is not None:
                return named, True
            return named, False
        return source, False
    # A container, by the name or id prefix its runtime knows it by.
    container = containers.namespace_of(source)
    if container is not None:
        return container[0], False
    # A namespace only a process holds, by the name reports give it (its hostname).
    held = [
        path
        for path in discover.candidates()
        if path.startswith("/proc/")
        and path != discover.host_path()
        and discover.name_of(path) == source
    ]
    if len(held) == 1:
        return held[0], False
    if held:
        raise UsageError(
            f"--from {source}: {len(held)} namespaces go by that name; give a pid: "
            + ", ".join(p.split("/")[2] for p in held)
        )
    raise UsageError(
        f"unknown node {source!r}: lab nodes are {nodes}; or give a namespace "
        "name, a container's name or id, a pid or a namespace path"
    )


def _lab_is_up(topology: Topology) -> bool:
    return record.read_record(topology.prefix) is not None or any(
        netns.exists(topology.namespace(n)) for n in topology.nodes
    )


class Run:
    def __init__(
        self,
        options: RunOptions,
        topology: Topology | None,
        topology_text: str | None = None,
        progress: Progress | None = None,
        run_id: int | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        """``tracer``: one made by ``engine.for_probes`` for these options and begun
        (the CLI begins loading the probes before it imports the rest of the
        library); else the run makes and begins its own. Either way the run
        finishes, uses and stops it."""
        if not options.source:
            options = replace(options, source=DEFAULT_SOURCE)
        self.options = options
        self.topology = topology
        self.topology_text = topology_text
        self.progress = progress or (lambda _: None)
        self.on_event: Callable[[Event], None] | None = None
        self.run_id = tracer.run if tracer is not None else run_id  # random when None
        self.tracer = tracer
        self._sent = 0  # probes sent so far
        # Called once the probes are armed (a live view rebuilds hops from the
        # events so far against the run's setting).
        self.on_armed: Callable[[Setting], None] | None = None
        # Called if the kernel is still verifying the probes once the run is ready
        # to arm them: work its caller would do afterwards (the CLI's report imports).
        self.while_loading: Callable[[], None] | None = None

    def execute(self) -> RunResult:
        if self.tracer is None or self.tracer.stopped:
            # The kernel verifies the probes (most of arming them) while the run
            # finds its source and reads the state; or verified them ahead of it.
            ready = _take_ready(self.options) if self.run_id is None else None
            self.tracer = ready or for_probes(self.options, self.run_id or tag.new_run())
            self.tracer.begin()
            self.run_id = self.tracer.run
        try:
            return self._execute_here()
        finally:
            self.tracer.stop()  # on every way out; stopping twice is harmless

    def _execute_here(self) -> RunResult:
        privileges.require("CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_BPF", doing="pathtrace run")
        source, is_lab_node = resolve_source(self.options.source, self.topology)
        if not is_lab_node:
            return self._execute(source, False)
        assert self.topology is not None
        # Runs on a lab go side by side; `lab down` and the like wait for them.
        with lock.held(self.topology.prefix, exclusive=False, doing="run"):
            self._ensure_lab()
            return self._execute(source, True)

    def _execute(self, source: str, is_lab_node: bool) -> RunResult:
        reach = self._reach(source)
        # scapy takes a while to import, and package versions to read: both happen
        # while the state is read and libbpf loads the probes (long waits outside
        # Python). Not during discovery: its many short system calls and the
        # import would each wait out the other's turn at the interpreter lock
        # (2.4 s instead of 0.2 s with 200 pods).
        versions: dict[str, str] = {}
        # scapy only dissects DNS answers (the probes are written out by hand).
        dissects = self.options.kind == "dns"
        importer = threading.Thread(
            target=_in_background, args=(versions, source, dissects), daemon=True
        )
        importer.start()
        self.progress("arming probes")
        assert self.tracer is not None  # made by execute()
        tracer, run_id = self.tracer, self.tracer.run
        states = self._observe(source, reach)
        names = {**netns.namespace_names(), **{_inode(n): n for n in states}}
        source_name = names.get(_inode(source), source)
        restore = self._restore_command() if is_lab_node else None
        setting = Setting(
            run_id,
            source_name,
            str(self.options.target),
            self.options.count,
            states,
            restore,
            self.options.dont_fragment,
            self.options,
        )
        result = RunResult(
            options=self.options,
            run_id=run_id,
            started=datetime.now(UTC).isoformat(timespec="milliseconds"),
            kernel=os.uname().release,
            version=__version__,
            source_namespace=source_name,
            namespaces={ns: self._node_name(ns) for ns in states},
            probes=[],
            states=states,
            versions=versions,  # filled by the importer, joined before the run ends
            restore=restore,
        )
        if source == discover.host_path():
            _guard_host(states, source, str(self.options.target))
        try:
            src = send.source_address(source, self.options.target)
        except send.NoRoute:
            # Nothing can leave the source: the verdict comes from its routing table.
            result.probes = build_probes([], setting)
            importer.join()
            return result
        self._trace(result, setting, tracer, source, src, names, importer, reach.beside)
        return result

    def _observe(self, source: str, reach: discover.Reach) -> dict[str, NamespaceState]:
        """The state of every namespace the run traces, as it is before the run."""
        states: dict[str, NamespaceState] = {}
        for ns in reach.namespaces:
            try:
                states[ns] = observe.state(
                    ns, self._node_name(ns), reach.rulesets.get(ns), reach.namespaces
                )
            except OSError:
                if ns == source:
                    raise
                # gone since we listed it: not ours to trace
        return states

    def _trace(
        self,
        result: RunResult,
        setting: Setting,
        tracer: Tracer,
        source: str,
        src: Address,
        names: dict[int, str],
        importer: threading.Thread,
        beside: dict[str, set[str]],
    ) -> None:
        """Arm, send, collect, judge: fills ``result`` with what the run saw."""
        o = self.options
        probe = send.Probe(o.kind, o.target, o.port, o.size, o.ttl, o.dont_fragment, o.query)
        states = setting.states
        tracer.namespaces = list(states)
        sniffer = self._capture(states, setting.run_id, beside)
        tunnels = tunnel_ports(states.values())
        netfilter = [ns for ns, state in states.items() if state.has_rules]
        if tracer.loading:
            # The kernel still verifies the probes, and this thread would only wait:
            # what the run's end imports is imported now (measured: 30-40 ms of a
            # new process's run; in a thread of their own the imports delayed the
            # probes' sending by as much).
            if netfilter:
                conntrack.prepare()
            if self.while_loading is not None:
                self.while_loading()
        # The capture sockets first, then the last links: ready when finish() returns.
        with sniffer, tracer.finish(netfilter, tunnels):
            assert tracer.facts is not None and tracer.layout is not None
            layout = tracer.layout
            ctx = DecodeContext(
                namespaces=names, drop_reasons=tracer.facts.drop_reasons, notes=tracer.note
            )
            ctx.prefetch_symbols()
            importer.join()
            packets = [send.build(probe, src, setting.run_id, i) for i in range(o.count)]
            if o.kind == "dns":  # no tag in a query: the probes know it by its flow
                for i in range(o.count):
                    sport = tag.source_port(setting.run_id, i)
                    tracer.expect_flow(src, o.target, sport, o.port, i)
            if self.on_armed is not None:
                self.on_armed(setting)
            self.progress(f"sending {len(packets)} {o.kind} probes")

            answered: set[int] = set()
            # Answers freed at the source (the very skb that arrived, not a copy of
            # it a capture socket took): their path is whole.
            arrived: dict[int, set[int]] = {}
            ended: set[int] = set()
            places: set[tuple[object, ...]] = set()

            def take_events() -> int:
                """Takes the new events; returns how many show a probe somewhere new
                (the kernel retrying at one place, an ARP wait, is not progress)."""
                progress = 0
                for raw in tracer.drain():
                    event = decode(layout.unpack(raw), ctx)
                    result.events.append(event)
                    place = (event.index, event.tag, event.namespace, event.ifname, event.hook)
                    if place not in places:
                        places.add(place)
                        progress += 1
                    if _answers(event, setting.source):
                        answered.add(event.index)
                        arrived.setdefault(event.index, set()).add(event.skb_id)
                    elif _ends_answer(event, setting.source) and event.skb_id in arrived.get(
                        event.index, ()
                    ):
                        ended.add(event.index)
                    if self.on_event is not None:
                        self.on_event(event)
                return progress

            try:
                self._send(source, packets, take_events, result.send_errors, result.fragmented)
                self._collect(answered, ended, take_events, len(result.send_errors))
            except KeyboardInterrupt:
                # Ctrl-C: what was seen so far is the report (as ping prints its
                # statistics); the probes never sent are left out of it.
                result.interrupted = True
                take_events()
                if not self._sent:
                    raise
                if self._sent < o.count:
                    result.options = replace(o, count=self._sent)
                    setting = replace(setting, count=self._sent)
            # Taken now, while the namespaces are surely there: a bundle saved later
            # (or elsewhere) writes what the result holds and reads nothing live.
            # Conntrack tracks only where netfilter hooks need it: where rules are.
            tables = observe.ConntrackListing(
                [ns for ns, state in states.items() if state.has_rules]
            )
            # What neighbour resolution came to: a packet held for ARP shows here.
            for ns, state in states.items():
                state.neighbours_after = observe.neighbours_now(ns)
            result.lost = {str(HOOK_CODES.get(k, k)): v for k, v in tracer.lost().items()}
            result.hooks = [s.to_json() for s in tracer.statuses]
        result.events.sort(key=lambda e: e.time_ns)
        result.conntrack = tables.entries(
            {e.src for e in result.events} | {e.dst for e in result.events}
        )
        result.captures = sorted(sniffer.packets, key=lambda c: c.time_ns)
        result.capture_drops = sniffer.drops
        result.capture_interfaces = len(sniffer.interfaces)
        result.capture_on = [(ns, ifname) for ns, ifname in sniffer.interfaces]
        result.probes, result.correlation = trace_probes(
            result.events,
            result.captures if sniffer.interfaces else None,
            setting,
            sum(result.lost.values()),
            result.send_errors,
            result.capture_on,
        )

    def _send(
        self,
        source: str,
        packets: list[bytes],
        take_events: Callable[[], int],
        errors: dict[int, str],
        fragmented: dict[int, tuple[int, int]],
    ) -> None:
        """Sends the probes; ``errors`` gets why any was not sent, ``fragmented``
        which were sent cut to the way's MTU."""
        self._sent = 0
        with send.Sender(source) as sender:
            for i, packet in enumerate(packets):
                if i:
                    time.sleep(self.options.interval)
                    take_events()  # live views see hops while probes still go out
                try:
                    cut = sender.send(packet, self.options.target)
                    if cut is not None:
                        fragmented[i] = cut
                except OSError as error:  # the source's own stack refused it
                    errors[i] = error.strerror or str(error)
                self._sent = i + 1

    def _collect(
        self, answered: set[int], ended: set[int], take_events: Callable[[], int], unsent: int
    ) -> None:
        """Takes events until every probe is answered, or until for --timeout no probe
        was seen anywhere new.

        The wait is counted from the last progress, not from the last probe: a
        thousand probes sent at once are still being read when a fixed second
        after the last send is over. A cap keeps a run that never goes quiet finite.
        """
        now = time.monotonic()
        quiet_since, cap = now, now + self.options.timeout + _COLLECT_CAP
        while True:
            if take_events():
                quiet_since = time.monotonic()
            if len(answered) >= self._sent - unsent:
                # The last answer's own end (freed at the source) comes just after
                # it is received: without it the last probe's path looks short.
                # Waited for, up to 30 ms (no drop probes, nothing answered: the
                # whole wait).
                until = time.monotonic() + 0.03
                while not (answered and answered <= ended) and time.monotonic() < until:
                    time.sleep(0.002)
                    take_events()
                return
            now = time.monotonic()
            if now - quiet_since > self.options.timeout or now > cap:
                return
            time.sleep(0.005)

    def _capture(
        self, states: dict[str, NamespaceState], run_id: int, beside: dict[str, set[str]]
    ) -> Capture:
        """``beside``: per namespace, links that lead to namespaces the run leaves alone."""
        if self.options.capture == "off":
            return Capture([], None)
        # Every up interface of the traced namespaces but those leading away from them.
        interfaces = [
            (ns, link.name)
            for ns, state in states.items()
            for link in state.links
            if link.up and link.name not in beside.get(ns, ())
        ]
        o = self.options
        port = o.port if o.kind in ("udp", "dns") else None
        tunnels = tuple(
            p for p, kind in tunnel_ports(states.values()) if kind in ("vxlan", "geneve")
        )
        ip_tunnels = any(
            link.kind in (*ENCAP_KINDS["ipip"], *ENCAP_KINDS["gre"])
            for state in states.values()
            for link in state.links
        )
        expression = capture_filter(run_id, port, tuple(dict.fromkeys(tunnels)), ip_tunnels)
        program = None if o.capture == "all" else compile_filter(expression)
        return Capture(interfaces, program)

    def _ensure_lab(self) -> None:
        assert self.topology is not None
        missing = [n for n in self.topology.nodes if not netns.exists(self.topology.namespace(n))]
        if missing:
            self.progress("bringing the lab up")
            build.up(self.topology, self.topology_text)

    def _reach(self, source: str) -> discover.Reach:
        """What the run traces."""
        if self.topology is not None and record.read_record(self.topology.prefix) is not None:
            lab = [self.topology.namespace(n) for n in self.topology.nodes]
            if source in lab:
                return discover.Reach(lab)
        # A network pathtrace did not build: the namespaces its packets can reach
        # from the source through veth pairs, the host's own included; no other.
        return discover.reachable(source, discover.candidates(), str(self.options.target))

    def _restore_command(self) -> str | None:
        """`lab fix` for this run's lab: bare for the default lab (which `lab fix` picks),
        with --topology for another; none where no file names the lab (`lab fix` would
        act on another lab)."""
        assert self.topology is not None
        if self.topology.prefix == DEFAULT_PREFIX:
            return RESTORE_COMMAND
        source = self.topology.source
        if source and source != "reference" and os.path.isfile(source):
            return f"{RESTORE_COMMAND} --topology {shlex.quote(os.path.abspath(source))}"
        return None

    def _node_name(self, namespace: str) -> str:
        return node_name(namespace, self.topology)


# Probes verified ahead of the next run in this process (`ready_next`), by what
# their loading fixes: count, IP version, followed by flow.
_ready: dict[tuple[int, int, bool], Tracer] = {}
_ready_lock = threading.Lock()


def _ready_key(options: RunOptions) -> tuple[int, int, bool]:
    return (options.count, options.target.version, options.kind in ("udp", "dns"))


def ready_next(options: RunOptions, wait: bool = False) -> int:
    """Has the kernel verify the probes a run of ``options`` loads now, in the
    background, for the next such run in this process (the TUI, a library user
    running one after another): that run then only attaches them, ~0.1 s sooner.
    A run of other options loads its own, as without this. They hold a run id of
    their own, unused until then (returned), and are attached to nothing.
    ``wait``: return once they are verified (a benchmark, a test)."""
    key = _ready_key(options)
    with _ready_lock:
        tracer = _ready.get(key)
        stale = [] if tracer is not None else list(_ready.values())
        if tracer is None:
            _ready.clear()
            tracer = for_probes(options, tag.new_run())
            tracer.prepare()
            _ready[key] = tracer
    if wait:
        tracer.wait_prepared()
    for old in stale:  # one kept at a time: each holds the objects' memory
        threading.Thread(target=old.stop, name="pathtrace-unready", daemon=True).start()
    return tracer.run


def drop_ready() -> None:
    """Closes the probes verified ahead (a process that will run no more)."""
    with _ready_lock:
        stale = list(_ready.values())
        _ready.clear()
    for tracer in stale:
        tracer.stop()


def _take_ready(options: RunOptions) -> Tracer | None:
    with _ready_lock:
        return _ready.pop(_ready_key(options), None)


def node_name(namespace: str, topology: Topology | None) -> str:
    """What reports call a namespace: its lab node, else its own name (discover)."""
    if topology is not None:
        node = topology.node_of_namespace(namespace)
        if node is not None:
            return node
    return discover.name_of(namespace)


# How long a run may go on collecting past --timeout while events still come.
_COLLECT_CAP = 120.0


def _answers(event: Event, source: str) -> bool:
    """An answer (reply, ICMP error) seen arriving back at the source."""
    return (
        event.namespace == source
        and event.tag in (TagKind.REPLY, TagKind.ICMP_ERROR)
        and event.hook in (Hook.DEV_RECV, Hook.NF_BEFORE, Hook.NAT_BEFORE)
    )


def _ends_answer(event: Event, source: str) -> bool:
    """An answer freed (dropped or consumed) at the source: the end of its path."""
    return (
        event.namespace == source
        and event.tag in (TagKind.REPLY, TagKind.ICMP_ERROR)
        and event.hook in (Hook.DROP, Hook.CONSUME)
    )


def _guard_host(states: dict[str, NamespaceState], host: str, target: str) -> None:
    """Refuses a run from the host whose packets could leave the machine."""
    why = leaves_machine(states.values(), states[host], target)
    if why is not None:
        raise UsageError(
            f"--from host: {why}; pathtrace sends from the host only to namespaces on this machine"
        )


def _inode(namespace: str) -> int:
    return os.stat(netns.path(namespace)).st_ino


def _in_background(versions: dict[str, str], source: str, dissects: bool) -> None:
    if dissects:
        # From inside the source namespace: scapy lists the interfaces it is
        # imported among, and the host's may be hundreds.
        scapy_setup.prepare()
        try:
            with netns.entered(source):
                import scapy.layers.dns  # noqa: F401
        except OSError:
            pass  # the source is gone: the run says so; scapy loads when first used

    versions.update(_versions())


def _versions() -> dict[str, str]:
    """The versions a bundle records: pathtrace, libbpf, and the Python packages."""
    from importlib.metadata import version

    found = {"pathtrace": __version__}
    for package in ("scapy", "pyroute2"):
        try:
            found[package] = version(package)
        except Exception:  # noqa: BLE001 - a fact we could not read is left out
            pass
    try:
        found["libbpf"] = libbpf.version()
    except PathtraceError:
        pass
    return found
