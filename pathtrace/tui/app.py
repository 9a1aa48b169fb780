"""The pathtrace TUI: a thin view over the library (lab, run, bundle).

Everything slow (lab up, tracing, loading a bundle) runs in thread workers
that post messages; the screen never waits on the kernel.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from textual import events, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Static
from textual.worker import Worker, WorkerState

from pathtrace.errors import PathtraceError, UsageError
from pathtrace.lab.topology import Topology
from pathtrace.model.event import Event
from pathtrace.model.result import RunResult, Setting
from pathtrace.system import discover
from pathtrace.tui.messages import LabChanged, RunFailed, RunFinished
from pathtrace.tui.screens.detail import DetailScreen
from pathtrace.tui.screens.help import HelpScreen
from pathtrace.tui.screens.pick import PickScreen
from pathtrace.tui.widgets.diagnosis import DiagnosisPane
from pathtrace.tui.widgets.packet_view import ExplainView, PacketView
from pathtrace.tui.widgets.probe_form import FormValues, ProbeForm
from pathtrace.tui.widgets.timeline import HopTimeline
from pathtrace.tui.widgets.topology import TopologyPane

SAID_FOR = 3.0  # seconds a message stays before live progress may replace it
CONFIRM_FOR = 3.0  # seconds within which `x` pressed again takes the lab down


class PathtraceApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "pathtrace"
    BINDINGS = [
        Binding("r", "run", "run"),
        Binding("ctrl+r", "run", "run", show=False, priority=True),  # also from a field
        Binding("n", "probe(1)", "next probe", show=False),
        Binding("p", "probe(-1)", "previous probe", show=False),
        Binding("u", "lab_up", "lab up"),
        Binding("x", "lab_down", "lab down", show=False),
        Binding("b", "break_lab", "break"),
        Binding("f", "fix_lab", "fix"),
        Binding("s", "save", "save"),
        Binding("o", "open", "open"),
        Binding("w", "watch", "watch"),
        Binding("t", "toggle_topology", "topology", show=False),
        Binding("l", "refresh_lab", "refresh lab", show=False),
        Binding("F", "pick_source", "pick source", show=False),
        Binding("slash", "search", "search", show=False),
        Binding("i", "edit_form", "form", show=False),
        Binding("question_mark", "help", "help"),
        Binding("q", "quit", "quit"),
        Binding("ctrl+c", "quit", "quit", show=False, priority=True),
    ]

    def __init__(
        self,
        topology: Topology | None,
        topology_text: str | None = None,
        bundle_path: Path | None = None,
        bundles_dir: Path = Path("captures"),
        watch: str | None = None,
    ) -> None:
        super().__init__()
        self.watch_first = watch  # `pathtrace tui --watch FILTER`: opens in watch mode
        self.topology = topology
        self.topology_text = topology_text
        self.bundle_path = bundle_path
        self.bundles_dir = bundles_dir
        self.result: RunResult | None = None
        self.probe_index = 0
        self.busy = False
        self.lab_busy: str | None = None  # the lab job under way, if any
        self.said_at = float("-inf")
        self.save_pending = False  # `s` pressed while a run traces
        self.down_asked = float("-inf")  # when `x` was first pressed
        self.searched = ""  # the last `/` search
        # What a run under way has seen so far (written by the worker, read by a timer).
        # A run's events so far, per probe: the live view rebuilds the shown probe
        # from its own (all of them, sorted, were 36 ms a tick at 8,000 events).
        self.live_events: dict[int, list[Event]] = {}
        self.live_count = 0
        self.live_setting: Setting | None = None
        self.live_shown = 0

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="body"):
            yield TopologyPane(id="topology")
            with Vertical(id="main"):
                yield ProbeForm()
                yield HopTimeline(id="timeline")
                with Horizontal(id="detail"):
                    yield ExplainView(id="explain")
                    yield PacketView(id="packet")
                yield DiagnosisPane(id="diagnosis")
        yield Static("", id="status")
        yield Footer()

    def on_resize(self, event: events.Resize) -> None:
        # Below 100 columns the timeline needs the room; `t` shows the lab anyway.
        # The event's size: the app's own is still the old one while it is handled.
        self.query_one(TopologyPane).display = event.size.width >= 100

    # What needs a live lab: hidden (and off) while a bundle is open without one.
    LIVE_ACTIONS = frozenset(
        {"run", "lab_up", "lab_down", "break_lab", "fix_lab", "refresh_lab", "pick_source"}
        | {"watch"}
    )

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in self.LIVE_ACTIONS and self.topology is None:
            return False
        return True

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        """pathtrace's actions in the command palette (ctrl+p)."""
        yield from super().get_system_commands(screen)
        commands = [
            ("Run the probe", "send the form's probe and trace it", "run"),
            ("Save the run", "write the run as a bundle under the captures folder", "save"),
            ("Open a saved run", "a bundle, or any folder holding bundles", "open"),
            ("Watch real traffic", "follow the packets a pcap filter picks, live", "watch"),
            ("Lab up", "build the reference lab (or restore it)", "lab_up"),
            ("Lab down", "remove the lab", "lab_down"),
            ("Break the lab", "pick a fault scenario", "break_lab"),
            ("Fix the lab", "back to its description", "fix_lab"),
            ("Refresh the lab pane", "read the lab's live state again", "refresh_lab"),
            ("Pick the source", "the lab's nodes and every namespace here", "pick_source"),
            ("Show or hide the lab pane", "", "toggle_topology"),
            ("Keys", "every key of pathtrace", "help"),
        ]
        for title, help_text, action in commands:
            if self.check_action(action, ()):
                yield SystemCommand(title, help_text, getattr(self, f"action_{action}"))

    def action_toggle_topology(self) -> None:
        pane = self.query_one(TopologyPane)
        pane.display = not pane.display

    def on_mount(self) -> None:
        self.set_interval(0.1, self.show_live)
        if self.topology is None:  # a bundle without a lab: its probe shown, not sent
            self.query_one(ProbeForm).disabled = True
        self.query_one(DiagnosisPane).show(None)
        self.query_one(PacketView).show(None)
        if self.bundle_path is not None:
            self.open_bundle(self.bundle_path)
        else:
            self.refresh_lab()
        if self.watch_first is not None:
            self.action_watch(self.watch_first)

    # -- status -------------------------------------------------------------

    def say(self, text: str, *, progress: bool = False) -> None:
        """The status line; a progress count never hides a message said just before."""
        now = time.monotonic()
        if progress and now - self.said_at < SAID_FOR:
            return
        if not progress:
            self.said_at = now
        status = self.query("#status")
        if not status:  # the app is closing: a worker that ends now has no line to say it on
            return
        status.first(Static).update(text)

    def say_from_thread(self, text: str) -> None:
        self.call_from_thread(self.say, text)

    # -- the lab ------------------------------------------------------------

    @work(thread=True, exclusive=True, group="lab", exit_on_error=False)
    def refresh_lab(self) -> None:
        # lazy: the screen comes up before the lab, the tracer and scapy load
        from pathtrace.lab import status

        problems: list[str] | None = None
        if self.topology is not None:
            try:
                report = status.observe(self.topology)
                up = any(c.kind == "namespace" and c.ok for n in report.nodes for c in n.checks)
                problems = report.problems if up else None
            except PathtraceError as error:
                self.say_from_thread(str(error))
        self.call_from_thread(self._show_topology, self.topology, problems, "")

    def _show_topology(
        self, topology: Topology | None, problems: list[str] | None, note: str
    ) -> None:
        # On the app's own thread: workers hand results here, never query widgets.
        for pane in self.query(TopologyPane):
            pane.show(topology, problems, note)

    def action_refresh_lab(self) -> None:
        if self.lab_busy:  # one worker group: a refresh would cancel the job
            self.say(f"lab pane: read again when {self.lab_busy} ends")
            return
        self.refresh_lab()
        self.say("lab pane: read again")

    def on_app_focus(self) -> None:
        # The lab may have changed outside (another terminal): read it again.
        if self.topology is not None and not self.lab_busy:
            self.refresh_lab()

    def on_topology_pane_detail_asked(self, message: TopologyPane.DetailAsked) -> None:
        self.push_screen(DetailScreen(message.text))

    def on_lab_changed(self, message: LabChanged) -> None:
        self.lab_busy = None
        self.say(message.what)
        self.refresh_lab()

    def _lab_job(self, verb: str, job: object) -> None:
        if self.topology is None:
            self.say("no lab here: a bundle is open (pathtrace tui without --bundle)")
            return
        if self.busy:
            self.say(f"{verb} refused: a run is tracing; try again when it ends")
            return
        if self.lab_busy:
            self.say(f"{verb} refused: {self.lab_busy} is under way")
            return
        self.lab_busy = verb
        self.lab_worker(verb, job)

    @work(thread=True, exclusive=True, group="lab", exit_on_error=False)
    def lab_worker(self, verb: str, job: object) -> None:
        self.say_from_thread(f"{verb}...")
        try:
            assert callable(job)
            job()
        except Exception as error:  # shown, never fatal: the lab may be half made
            self.post_message(LabChanged(f"{verb} failed: {one_line(error)}"))
            return
        self.post_message(LabChanged(f"{verb}: done"))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A worker that died of an unexpected error: one line on screen, the app goes on."""
        if event.state != WorkerState.ERROR:
            return
        if event.worker.group == "run":
            self.busy = False
        what = "the run" if event.worker.group == "run" else event.worker.name
        self.say(f"{what} failed: {one_line(event.worker.error)}")

    def action_lab_up(self) -> None:
        # lazy: the screen comes up before the lab, the tracer and scapy load
        from pathtrace.lab import build

        topo, text = self.topology, self.topology_text
        if topo is not None:
            self._lab_job("lab up", lambda: build.up(topo, text, progress=self.say_from_thread))
        else:
            self._lab_job("lab up", None)

    def action_lab_down(self) -> None:
        # lazy: the screen comes up before the lab, the tracer and scapy load
        from pathtrace.lab import build

        # Every namespace of the lab goes: asked twice, as `lab down` is typed.
        now = time.monotonic()
        if now - self.down_asked > CONFIRM_FOR:
            self.down_asked = now
            self.say(f"x again within {CONFIRM_FOR:.0f} s takes the lab down (all its namespaces)")
            return
        self.down_asked = float("-inf")
        topo = self.topology
        self._lab_job("lab down", lambda: build.down(topo, progress=self.say_from_thread))

    def action_fix_lab(self) -> None:
        self.action_lab_up()

    def action_break_lab(self) -> None:
        # lazy: the screen comes up before the lab, the tracer and scapy load
        from pathtrace.lab import scenarios

        choices = [(s.name, f"{s.name}: {s.explains}") for s in scenarios.SCENARIOS.values()]

        def chosen(name: str | None) -> None:
            if name and self.topology is not None:
                topo = self.topology
                self._lab_job(f"break {name}", lambda: scenarios.apply(topo, name))
                # The run that shows the fault, ready in the form (r sends it).
                self.query_one(ProbeForm).fill_command(scenarios.SCENARIOS[name].try_it)

        self.push_screen(PickScreen("break the lab: pick a scenario", choices), chosen)

    # -- runs ---------------------------------------------------------------

    def action_run(self) -> None:
        if self.busy:
            self.say("a run is under way")
            return
        if self.lab_busy:
            self.say(f"run refused: {self.lab_busy} is under way")
            return
        if self.topology is None and self.bundle_path is not None:
            self.say("a bundle is open: runs need the live lab (pathtrace tui)")
            return
        form = self.query_one(ProbeForm).values()
        self.busy = True
        self.say(f"running {form.kind} {form.target} from {form.source}...")
        # What the panes show is the last run's until this one's hops come.
        self.query_one(PacketView).show(None)
        self.query_one(ExplainView).show_hop(None)
        self.query_one(DiagnosisPane).show(None)
        self.run_probe(form)

    @work(thread=True, exclusive=True, group="run", exit_on_error=False)
    def run_probe(self, form: FormValues) -> None:
        # lazy: the screen comes up before the lab, the tracer and scapy load
        from pathtrace.model.options import RunOptions, parse_target
        from pathtrace.session import Run, ready_next, resolve_source

        kind, source, target, count = form.kind, form.source, form.target, form.count
        try:
            # Each mistake named by the field the form calls it.
            with field_named("to"):
                parse_target(kind, target)
            with field_named("count"):
                if not count.isdigit():
                    raise UsageError("a number of probes, from 1 to 1000")
                RunOptions.parse(kind, target, count=int(count))
            sized = {"size": int(form.size)} if form.size else {}
            with field_named("size"):
                RunOptions.parse(kind, target, dont_fragment=form.dont_fragment, **sized)
            with field_named("from"):
                if not source:
                    raise UsageError("a lab node, a namespace name, a pid or a namespace path")
                resolve_source(source, self.topology)
            options = RunOptions.parse(
                kind,
                target,
                source=source,
                count=int(count),
                dont_fragment=form.dont_fragment,
                **sized,
            )
            run = Run(options, self.topology, self.topology_text, progress=self.say_from_thread)
            self.live_events, self.live_setting, self.live_shown = {}, None, 0
            self.live_count = 0

            def armed(setting: Setting) -> None:
                self.live_setting = setting

            run.on_armed = armed
            run.on_event = self.take_live_event
            result = run.execute()
            # The same run again is this screen's habit: its probes verified ahead.
            ready_next(options)
            self.post_message(RunFinished(result))
        except PathtraceError as error:
            self.post_message(RunFailed(str(error)))

    def take_live_event(self, event: Event) -> None:
        """From the run's thread: one event more."""
        self.live_events.setdefault(event.index, []).append(event)
        self.live_count += 1

    def show_live(self) -> None:
        """While a run traces: the hops of the events so far."""
        # lazy: the screen comes up before the lab, the tracer and scapy load
        from pathtrace.analyze.probes import build_probes

        setting = self.live_setting
        count = self.live_count
        if not self.busy or setting is None or count == self.live_shown:
            return
        self.live_shown = count
        shown = min(self.probe_index, setting.count - 1)
        # A probe's hops are made of its own events (its tag's index, its answers' too).
        events = sorted(self.live_events.get(shown, [])[:], key=lambda e: e.time_ns)
        self.query_one(HopTimeline).show(build_probes(events, setting, only=shown)[0])
        self.say(f"tracing: {count} events so far", progress=True)

    def on_run_finished(self, message: RunFinished) -> None:
        self.busy = False
        self.show_result(message.result)
        if message.result.restore is None:  # not the lab: show what was traced
            for pane in self.query(TopologyPane):
                pane.show_traced(message.result.states)
        self.say(
            f"{message.result.options.label}: {message.result.answered}/"
            f"{len(message.result.probes)} answered"
        )
        if self.save_pending:
            self.save_pending = False
            self.save_bundle(message.result)

    def on_run_failed(self, message: RunFailed) -> None:
        self.busy = False
        self.save_pending = False
        self.say(f"run failed: {message.error}")

    def show_result(self, result: RunResult) -> None:
        self.result = result
        self.probe_index = 0
        self._show_probe()

    def _show_probe(self) -> None:
        result = self.result
        probe = result.probes[self.probe_index] if result and result.probes else None
        timeline = self.query_one(HopTimeline)
        timeline.show(probe)
        if not timeline.hops:  # nothing to select: no stale packet or explanation
            self.query_one(PacketView).show(None)
            self.query_one(ExplainView).show_hop(None)
        timeline.focus()
        self.query_one(DiagnosisPane).show(result, self.probe_index)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Enter in a field of the form runs the probe; in the search field, finds."""
        if event.input.id == "search":
            self.find_hop(event.value.strip() or self.searched)
            event.input.remove()
            self.query_one(HopTimeline).focus()
        elif event.input.parent is self.query_one(ProbeForm):
            self.action_run()

    def action_edit_form(self) -> None:
        """`i` (vim's insert): the keys go to the form's target field."""
        target = self.query_one("#target", Input)
        if not self.query_one(ProbeForm).disabled:
            target.focus()

    def action_search(self) -> None:
        """`/` as in less and vim: a hop by what it says (Enter again: the next)."""
        if self.query("#search"):
            self.query_one("#search").focus()
            return
        # Made when asked for (below the timeline, over the status line), gone after.
        search = SearchField(placeholder="find a hop: its node, interface or words", id="search")
        self.mount(search, before=self.query_one("#status"))
        search.focus()

    def find_hop(self, words: str) -> None:
        """The next hop after the cursor (wrapping) whose row holds ``words``."""
        self.searched = words
        timeline = self.query_one(HopTimeline)
        if not words or not timeline.hops:
            return
        wanted = words.lower()
        count = len(timeline.hops)
        for step in range(1, count + 1):
            row = (timeline.cursor_row + step) % count
            hop = timeline.hops[row]
            if wanted in f"{hop.node} {hop.interface} {hop.text}".lower():
                timeline.move_cursor(row=row)
                self.say(f"/{words}: hop {row + 1} of {count}")
                return
        self.say(f"/{words}: no hop of this probe says it")

    def action_probe(self, step: int) -> None:
        if self.result and self.result.probes:
            self.probe_index = (self.probe_index + step) % len(self.result.probes)
            self._show_probe()

    def on_hop_timeline_hop_selected(self, message: HopTimeline.HopSelected) -> None:
        # lazy: the screen comes up before the lab, the tracer and scapy load
        from pathtrace.output.packet import view

        if (self.result is None and not self.busy) or not self.query(PacketView):
            return  # no run, or the screen is closing
        hop = message.hop
        # While a run traces, the hops are its own: not the last result's packets.
        live = self.busy
        self.query_one(PacketView).show(
            view(None if live else self.result, hop, message.previous),
            hop.text,
            hop.translation.describe() if hop.translation else None,
            first_of=message.series if message.previous is None else None,
            live=live,
        )
        self.query_one(ExplainView).show_hop(hop)

    # -- bundles ------------------------------------------------------------

    def action_save(self) -> None:
        if self.busy:
            self.save_pending = True
            self.say("a run is tracing: it will be saved when it ends")
            return
        if self.result is None:
            self.say("nothing to save: run a probe first")
            return
        self.save_bundle(self.result)

    @work(thread=True, group="save", exit_on_error=False)
    def save_bundle(self, result: RunResult) -> None:
        """Writes the bundle (pcapng included) off the screen's thread; says where."""
        # lazy: the screen comes up before the lab, the tracer and scapy load
        from pathtrace.output import bundle

        try:
            folder = bundle.destination(result.options, root=self.bundles_dir)
            path = bundle.save(result, folder, self.topology_text)
        except Exception as error:  # a full disk, a read-only folder: said, not fatal
            self.say_from_thread(f"save failed: {one_line(error)}")
            return
        self.say_from_thread(f"saved {result.options.label}: {path.resolve()}")

    def action_open(self) -> None:
        # lazy: the screen comes up before the lab, the tracer and scapy load
        from pathtrace.tui.screens.open import OpenScreen

        roots = [self.bundles_dir]
        examples = Path("captures/examples")  # the project's own, made by the tool
        if examples.is_dir() and not examples.resolve().is_relative_to(self.bundles_dir.resolve()):
            roots.append(examples)

        def picked(path: Path | None) -> None:
            if path is not None:
                self.open_bundle(path)

        self.push_screen(OpenScreen(roots), picked)

    @work(thread=True, exclusive=True, group="run", exit_on_error=False)
    def open_bundle(self, path: Path) -> None:
        # lazy: the screen comes up before the lab, the tracer and scapy load
        from pathtrace.output import bundle

        try:
            result, _ = bundle.load(path)
        except PathtraceError as error:
            self.say_from_thread(str(error))
            return
        saved_topology = None
        if (path / "topology.toml").exists():
            # lazy: the screen comes up before the lab, the tracer and scapy load
            from pathtrace.lab import topology

            try:
                saved_topology = topology.load(path / "topology.toml")
            except PathtraceError:
                saved_topology = None
        o = result.options
        target = o.target_text  # [IPv6]:port where there is a port
        self.call_from_thread(self.show_result, result)
        self.call_from_thread(
            self.query_one(ProbeForm).fill,
            o.kind,
            o.source,
            target,
            o.count,
            o.size,
            o.dont_fragment,
        )
        self.call_from_thread(self._show_topology, saved_topology, None, "as saved in the bundle")
        self.say_from_thread(f"bundle {path.name}")

    def action_pick_source(self) -> None:
        """Where to send from: the lab's nodes and every namespace on the machine."""
        nodes = list(self.topology.nodes) if self.topology else []
        choices = [(f"lab:{n}", f"lab:{n}  the lab's {n}") for n in nodes]
        # The host by its unambiguous name (it sends only inside the machine).
        choices.append(("netns:host", "netns:host  the namespace pathtrace runs in"))
        for path in discover.candidates()[1:]:
            name = discover.name_of(path)
            if self.topology is not None and self.topology.node_of_namespace(name):
                continue  # the lab's own: listed above
            if path.startswith("/"):  # held by a process: chosen by its pid
                pid = path.split("/")[2]
                choices.append((pid, f"{pid}  {name}"))
            else:
                choices.append((f"netns:{name}", f"netns:{name}"))

        def chosen(value: str | None) -> None:
            if value:
                source = self.query_one("#source", Input)
                source.value = value
                source.cursor_position = 0

        self.push_screen(PickScreen("send from: pick a source", choices), chosen)

    def action_watch(self, expression: str = "") -> None:
        """Watch mode: real packets by a pcap filter, beside the lab (runs may go on)."""
        # lazy: the tracer loads when a watch starts
        from pathtrace.tui.screens.watch import WatchScreen

        self.push_screen(WatchScreen(self.topology, expression))

    async def action_quit(self) -> None:
        """Quits at once, a run under way included (the process ends it: the kernel
        takes its probes off); a bundle being written is finished first."""
        # Not yet running counts too: `s` then `q` typed at once.
        saving = [w for w in self.workers if w.group == "save" and not w.is_finished]
        if saving:
            self.say("writing the bundle: pathtrace quits once it is saved")
            await self.workers.wait_for_complete(saving)
        self.exit()

    def action_help(self) -> None:
        self.push_screen(HelpScreen(live=self.topology is not None))


class SearchField(Input):
    """`/`'s field: Enter finds, Esc closes it."""

    BINDINGS = [Binding("escape", "close", "close", show=False)]

    def action_close(self) -> None:
        self.app.query_one(HopTimeline).focus()
        self.remove()


def one_line(error: BaseException | None) -> str:
    """An error as the status line shows it: what it is, on one line."""
    if isinstance(error, PathtraceError):
        return str(error)
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


@contextmanager
def field_named(name: str) -> Iterator[None]:
    """A usage error inside, said as the form's field ``name``."""
    try:
        yield
    except UsageError as error:
        raise UsageError(f"{name}: {error}") from None
