"""Watch mode: the real packets a pcap filter picks, followed live.

Flows on the left as they start, the selected one's paths, NAT and verdict on
the right: the text `pathtrace watch` prints for it, from the same library
calls (Watch.flows_so_far while it runs, the WatchResult when it ends).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Input, OptionList, Static
from textual.widgets.option_list import Option

from pathtrace.errors import PathtraceError
from pathtrace.lab.topology import Topology
from pathtrace.output.watch_report import flow_text

if TYPE_CHECKING:
    # lazy: the tracer loads when a watch starts
    from pathtrace.model.flow import Flow, WatchResult
    from pathtrace.watch import Watch


@dataclass
class WatchEnded(Message):
    result: WatchResult


@dataclass
class WatchFailed(Message):
    error: str


class WatchScreen(Screen[None]):
    DEFAULT_CSS = """
    #watch-body { height: 1fr; }
    #flows { width: 2fr; height: 1fr; }
    #flow-pane { width: 3fr; border-left: solid $primary; padding: 0 1; }
    #watch-status { height: auto; max-height: 3; color: $text-muted; padding: 0 1; }
    """
    BINDINGS = [
        Binding("escape", "leave", "back (ends the watch)"),
        Binding("s", "stop", "stop"),
        Binding("ctrl+s", "save", "save"),
    ]
    REFRESH = 0.3  # seconds between looks at what the watch has collected

    def __init__(self, topology: Topology | None, expression: str = "") -> None:
        super().__init__()
        self.topology = topology
        self.expression = expression
        self.watching: Watch | None = None
        self.running = False
        self.leaving = False
        self.flows: list[Flow] = []
        self.seen_events = -1
        self.result: WatchResult | None = None  # the last watch, once it ended

    def compose(self) -> ComposeResult:
        yield Input(
            self.expression,
            placeholder="a pcap filter, as tcpdump takes it (udp port 53); Enter watches",
            id="watch-filter",
        )
        with Horizontal(id="watch-body"):
            yield OptionList(id="flows")
            with VerticalScroll(id="flow-pane"):
                yield Static("", id="flow", markup=False)
        yield Static("", id="watch-status")
        yield Footer()

    def on_mount(self) -> None:
        self.set_interval(self.REFRESH, self.show_live)
        if self.expression:
            self.start(self.expression)
        else:
            self.query_one("#watch-filter", Input).focus()

    def on_unmount(self) -> None:
        if self.watching is not None:
            self.watching.stop()  # the probes come off with the watch's own thread

    def say(self, text: str) -> None:
        for status in self.query("#watch-status").results(Static):
            status.update(text)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if self.running:
            self.say("a watch is running: s stops it")
            return
        if event.value.strip():
            self.start(event.value.strip())

    def start(self, expression: str) -> None:
        # lazy: the tracer and libpcap's compiler load when a watch starts
        from pathtrace.watch import Watch, WatchOptions

        try:
            # Captured as `watch --save` does, so that the watch can be saved when it ends.
            watch = Watch(WatchOptions(expression, capture=True), self.topology)
        except PathtraceError as error:
            self.say(str(error))
            return
        watch.on_armed = lambda nodes: self.app.call_from_thread(
            self.say, f"watching '{expression}' entering {', '.join(nodes)}; s stops it"
        )
        self.watching, self.expression, self.running = watch, expression, True
        self.flows, self.seen_events, self.result = [], -1, None
        self._show_flows()
        self.say(f"arming the probes for '{expression}'...")
        self.query_one("#flows", OptionList).focus()
        self.run_watch(watch)

    @work(thread=True, exclusive=True, group="watch", exit_on_error=False)
    def run_watch(self, watch: Watch) -> None:
        try:
            self.post_message(WatchEnded(watch.execute()))
        except PathtraceError as error:
            self.post_message(WatchFailed(str(error)))

    def show_live(self) -> None:
        watch = self.watching
        if not self.running or watch is None or watch.events_so_far == self.seen_events:
            return
        self.seen_events = watch.events_so_far
        self.flows = watch.flows_so_far()
        self._show_flows()

    def on_watch_ended(self, message: WatchEnded) -> None:
        result = message.result
        self.running = False
        self.result = result
        self.flows = result.flows
        self._show_flows()
        self.say(
            f"watched '{result.expression}' for {result.seconds:.1f} s (ended: {result.ended}); "
            f"{len(result.flows)} flows; the filter ran on {result.stats.get('filtered', 0)} "
            f"packets and matched {result.stats.get('matched', 0)}"
        )
        if self.leaving:
            self.app.pop_screen()

    def on_watch_failed(self, message: WatchFailed) -> None:
        self.running = False
        self.say(f"watch failed: {message.error}")
        if self.leaving:
            self.app.pop_screen()

    def _show_flows(self) -> None:
        flows = self.query_one("#flows", OptionList)
        kept = flows.highlighted
        flows.clear_options()
        flows.add_options(
            Option(
                f"{f.number:>3} {f.protocol:<5} {f.client} > {f.server}  {f.verdict.outcome}",
                id=str(f.index),
            )
            for f in self.flows
        )
        if self.flows:
            flows.highlighted = min(kept or 0, len(self.flows) - 1)
        self._show_flow(flows.highlighted)

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        self._show_flow(event.option_index)

    def _show_flow(self, index: int | None) -> None:
        pane = self.query_one("#flow", Static)
        if index is None or not 0 <= index < len(self.flows):
            pane.update("no flow yet" if self.running else "")
            return
        pane.update("\n".join(flow_text(self.flows[index])))

    @property
    def shown(self) -> str:
        """The right pane's text (what a test reads)."""
        return str(self.query_one("#flow", Static).content)

    def action_stop(self) -> None:
        if self.watching is not None and self.running:
            self.watching.stop()
            self.say("stopping...")

    def action_save(self) -> None:
        if self.running:
            self.say("the watch is running: s stops it, then ctrl+s saves it")
        elif self.result is None:
            self.say("nothing to save: watch a filter first")
        else:
            self.save_watch(self.result)

    @work(thread=True, group="save", exit_on_error=False)
    def save_watch(self, result: WatchResult) -> None:
        """The bundle `watch --save` writes (report, events, state, trace.pcapng)."""
        # lazy: scapy's pcapng writer loads only for a save
        from pathtrace.output import watch_bundle
        from pathtrace.output.bundle import DEFAULT_DIR

        try:
            root = getattr(self.app, "bundles_dir", DEFAULT_DIR)
            folder = watch_bundle.destination(result.expression, root=root)
            path = watch_bundle.save(result, folder)
        except Exception as error:  # a full disk, a read-only folder: said, not fatal
            self.app.call_from_thread(self.say, f"save failed: {str(error).splitlines()[0]}")
            return
        self.app.call_from_thread(self.say, f"saved the watch of '{result.expression}': {path}")

    def action_leave(self) -> None:
        if self.running and self.watching is not None:
            self.leaving = True
            self.watching.stop()
            return
        self.app.pop_screen()
