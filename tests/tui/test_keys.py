"""The TUI's keys, panes and modes, driven by Pilot (no root: bundles, and a lab
description that is never brought up)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import pytest
from textual.widgets import Input, OptionList, Select, Tree

from pathtrace.lab import topology
from pathtrace.output import bundle
from pathtrace.tui import make_app
from pathtrace.tui.app import PathtraceApp
from pathtrace.tui.screens.detail import DetailScreen
from pathtrace.tui.screens.help import HelpScreen, help_text
from pathtrace.tui.widgets.diagnosis import DiagnosisPane
from pathtrace.tui.widgets.packet_view import ExplainView, PacketView
from pathtrace.tui.widgets.probe_form import ProbeForm
from pathtrace.tui.widgets.timeline import HopTimeline
from pathtrace.tui.widgets.topology import TopologyPane
from tests.tui.test_app import pick, text_of, wait_until

EXAMPLES = Path(__file__).resolve().parents[2] / "captures" / "examples"
Scenario = Callable[[PathtraceApp, object], Awaitable[None]]


def drive(app: PathtraceApp, scenario: Scenario, size: tuple[int, int] = (120, 40)) -> None:
    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await scenario(app, pilot)

    asyncio.run(main())


def status(app: PathtraceApp) -> str:
    return text_of(app.query_one("#status"))


def lab_app() -> PathtraceApp:
    """A lab described but not up: every key is live, nothing reaches the kernel."""
    text = topology.reference_text().replace('prefix = "pt-"', 'prefix = "ptkeys-"', 1)
    return make_app(topology.parse(text), text)


def test_the_layout_follows_a_resize_both_ways() -> None:
    async def scenario(app: PathtraceApp, pilot: object) -> None:
        pane = app.query_one(TopologyPane)
        assert pane.display
        await pilot.resize_terminal(80, 24)  # type: ignore[attr-defined]
        assert not pane.display  # the timeline needs the room
        assert app.query_one(HopTimeline).size.width > 60
        await pilot.resize_terminal(120, 40)  # type: ignore[attr-defined]
        assert pane.display

    drive(make_app(bundle=EXAMPLES / "ping-answered"), scenario)


def test_bundle_mode_shows_the_runs_probe_and_hides_lab_keys() -> None:
    async def scenario(app: PathtraceApp, pilot: object) -> None:
        await wait_until(pilot, lambda: "bundle tcp-dnat" in status(app))  # all shown
        assert app.query_one("#kind", Select).value == "tcp"
        values = [app.query_one(f"#{f}", Input).value for f in ("source", "target", "count")]
        assert values == ["wan", "198.51.100.2:8080", "1"]
        for action in ("run", "lab_up", "lab_down", "break_lab", "fix_lab"):
            assert not app.check_action(action, ())
        footer = {b.binding.key for b in app.active_bindings.values() if b.binding.show}
        assert {"s", "o"} <= footer and not {"r", "u", "b", "f"} & footer
        before = status(app)
        await pilot.press("u")  # type: ignore[attr-defined]
        await pilot.pause()  # type: ignore[attr-defined]
        assert status(app) == before  # nothing happened, nothing to say
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "Open a saved run" in titles and "Run the probe" not in titles
        assert app.query_one(ProbeForm).disabled  # the run's probe, shown, not editable
        await pilot.press("question_mark")  # type: ignore[attr-defined]
        await pilot.pause()  # type: ignore[attr-defined]
        assert isinstance(app.screen, HelpScreen)
        shown = help_text(live=False)
        assert "| o |" in shown and "| s |" in shown
        assert not [k for k in ("| r, ctrl+r", "| u / x", "| b / f", "| w |") if k in shown]
        assert "| u / x" in help_text(live=True)

    drive(make_app(bundle=EXAMPLES / "tcp-dnat"), scenario)


def test_a_dropped_probe_opens_on_its_drop_even_at_80x24() -> None:
    async def scenario(app: PathtraceApp, pilot: object) -> None:
        timeline = app.query_one(HopTimeline)
        await wait_until(pilot, lambda: bool(timeline.hops))
        await pilot.pause()  # type: ignore[attr-defined]
        drop = next(i for i, h in enumerate(timeline.hops) if h.action == "drop")
        assert timeline.cursor_row == drop > 0
        top = timeline.scroll_offset.y  # rows are one line high; the header is fixed
        shown = timeline.scrollable_content_region.height - timeline.header_height
        assert top <= drop < top + shown, (top, drop, shown)
        assert "drops it" in text_of(app.query_one(PacketView))

    drive(make_app(bundle=EXAMPLES / "forward-drop"), scenario, size=(80, 24))


def test_i_goes_to_the_form_and_the_footer_keeps_its_hints_there() -> None:
    async def scenario(app: PathtraceApp, pilot: object) -> None:
        app.query_one(HopTimeline).focus()
        await pilot.press("i")  # type: ignore[attr-defined]
        assert app.focused is app.query_one("#target", Input)
        shown = {b.binding.description for b in app.active_bindings.values() if b.binding.show}
        assert {"leave the form", "next field"} <= shown

    drive(lab_app(), scenario)


def test_quit_waits_for_a_bundle_being_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_save = bundle.save

    def slow_save(*args: object, **kwargs: object) -> Path:
        time.sleep(0.5)  # a big run's pcapng takes a while
        return real_save(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(bundle, "save", slow_save)

    saved_at_exit: list[list[str]] = []

    async def scenario(app: PathtraceApp, pilot: object) -> None:
        await wait_until(pilot, lambda: "bundle ping-answered" in status(app))
        app.simulate_key("s")
        await asyncio.sleep(0.05)
        app.simulate_key("q")
        for _ in range(200):  # the keys as typed: handled when the app's loop gets to them
            if "quits once it is saved" in status(app) or not app.is_running:
                break
            await asyncio.sleep(0.01)
        assert app.is_running and "quits once it is saved" in status(app)
        while app.is_running:
            await asyncio.sleep(0.01)
        saved_at_exit.append([p.name for p in tmp_path.glob("*/bundle.json")])

    drive(make_app(bundle=EXAMPLES / "ping-answered", bundles_dir=tmp_path), scenario)
    assert saved_at_exit == [["bundle.json"]]


def test_slash_finds_a_hop_by_what_it_says() -> None:
    async def scenario(app: PathtraceApp, pilot: object) -> None:
        timeline = app.query_one(HopTimeline)
        await wait_until(pilot, lambda: bool(timeline.hops))
        timeline.focus()
        await pilot.press("slash")  # type: ignore[attr-defined]
        assert app.focused is app.query_one("#search", Input)
        await pilot.press(*"snat", "enter")  # type: ignore[attr-defined]
        snat = next(i for i, h in enumerate(timeline.hops) if "SNAT" in h.text)
        assert timeline.cursor_row == snat and app.focused is timeline
        assert status(app).startswith("/snat: hop")
        await pilot.press("slash", "enter")  # type: ignore[attr-defined]  # the next one
        assert (
            timeline.cursor_row != snat
            and "snat" in timeline.hops[timeline.cursor_row].text.lower()
        )
        await pilot.press("slash", *"nowhere", "enter")  # type: ignore[attr-defined]
        assert "no hop of this probe says it" in status(app)

    drive(make_app(bundle=EXAMPLES / "ping-answered"), scenario)


def test_open_takes_a_typed_path() -> None:
    async def scenario(app: PathtraceApp, pilot: object) -> None:
        await wait_until(pilot, lambda: bool(app.query_one(HopTimeline).hops))
        await pilot.press("o")  # type: ignore[attr-defined]
        await pilot.pause()  # type: ignore[attr-defined]
        field = app.screen.query_one("#open-path", Input)
        field.value = str(EXAMPLES)  # a folder: its bundles are listed
        await pilot.press("enter")  # type: ignore[attr-defined]
        await pilot.pause()  # type: ignore[attr-defined]
        found = len([p for p in EXAMPLES.iterdir() if (p / "bundle.json").exists()])
        assert f"{found} bundles under" in text_of(app.screen.query_one("#open-said"))
        # Each listed with its time, probe and verdict, as `bundle list` says them.
        options = app.screen.query_one("#open-found", OptionList)

        def described() -> bool:
            prompts = [str(options.get_option_at_index(i).prompt) for i in range(found)]
            return all(": " in p and "T" in p.split("  ")[1] for p in prompts)

        await wait_until(pilot, described)
        prompts = [str(options.get_option_at_index(i).prompt) for i in range(found)]
        assert any(p.endswith(": answered by wan in 107 us") for p in prompts), prompts
        assert any("dropped in host/br0" in p for p in prompts), prompts
        field.value = str(EXAMPLES / "forward-drop")  # a bundle: opened
        field.focus()
        await pilot.press("enter")  # type: ignore[attr-defined]
        await wait_until(pilot, lambda: "bundle forward-drop" in status(app))
        assert app.result is not None and app.result.probes[0].verdict.outcome == "dropped"

    drive(make_app(bundle=EXAMPLES / "ping-answered"), scenario)


def test_timeline_end_and_home_go_to_the_last_and_first_hop() -> None:
    async def scenario(app: PathtraceApp, pilot: object) -> None:
        timeline = app.query_one(HopTimeline)
        await wait_until(pilot, lambda: bool(timeline.hops))
        timeline.focus()
        await pilot.press("end")  # type: ignore[attr-defined]
        assert timeline.cursor_row == len(timeline.hops) - 1
        assert timeline.cursor_column == 0
        await pilot.press("home")  # type: ignore[attr-defined]
        assert timeline.cursor_row == 0

    drive(make_app(bundle=EXAMPLES / "tcp-dnat"), scenario)


def test_the_rst_has_its_own_series_in_the_timeline() -> None:
    async def scenario(app: PathtraceApp, pilot: object) -> None:
        timeline = app.query_one(HopTimeline)
        await wait_until(pilot, lambda: bool(timeline.hops))
        result = app.result
        assert result is not None
        probe = result.probes[0]
        assert [s.direction for s in probe.others] == ["source_rst"]
        assert probe.request.hops[-1].node == "container1"  # the SYN's way ends there
        assert "drops" not in probe.request.hops[-1].text

    drive(make_app(bundle=EXAMPLES / "tcp-dnat"), scenario)


def test_panes_take_focus_and_show_the_change_first() -> None:
    async def scenario(app: PathtraceApp, pilot: object) -> None:
        timeline = app.query_one(HopTimeline)
        await wait_until(pilot, lambda: bool(timeline.hops))
        snat = next(i for i, h in enumerate(timeline.hops) if h.translation)
        timeline.move_cursor(row=snat)
        await pilot.pause()  # type: ignore[attr-defined]
        packet = text_of(app.query_one(PacketView))
        first_lines = packet.splitlines()[:3]
        assert any(
            line.startswith("changed since the previous hop: src 192.168.100.2 -> 198.51.100.2")
            for line in first_lines
        ), first_lines
        timeline.focus()
        await pilot.press("tab")  # type: ignore[attr-defined]
        assert isinstance(app.focused, ExplainView)
        await pilot.press("tab")  # type: ignore[attr-defined]
        layers = app.focused
        assert isinstance(layers, Tree) and layers.id == "layers"
        labels = [str(n.label) for n in layers.root.children]
        assert len(labels) >= 2 and labels[0].startswith(("Ethernet", "IP")), labels
        layers.move_cursor(layers.root.children[0])
        await pilot.press("enter")  # type: ignore[attr-defined]  # folds the layer
        assert not layers.root.children[0].is_expanded
        # A run with no hops clears the panes: nothing stale stays on screen.
        assert app.result is not None
        empty = replace(
            app.result,
            probes=[
                replace(p, request=replace(p.request, hops=[]), reply=None)
                for p in app.result.probes
            ],
        )
        app.show_result(empty)
        await pilot.pause()  # type: ignore[attr-defined]
        assert text_of(app.query_one(PacketView)).startswith("select a hop")
        assert text_of(app.query_one(ExplainView)) == ""

    drive(make_app(bundle=EXAMPLES / "ping-answered"), scenario)  # fmt: skip


def test_vim_keys_the_replys_first_hop_and_the_packet_as_people_read_it() -> None:
    async def scenario(app: PathtraceApp, pilot: object) -> None:
        timeline = app.query_one(HopTimeline)
        await wait_until(pilot, lambda: bool(timeline.hops))
        timeline.focus()
        last = len(timeline.hops) - 1
        for key, row in (("G", last), ("g", 0), ("j", 1), ("j", 2), ("k", 1)):
            await pilot.press(key)  # type: ignore[attr-defined]
            assert timeline.cursor_row == row, key
        # The reply is another packet: its first hop is not "the request changed".
        first_reply = next(i for i, (d, first) in enumerate(timeline.series) if d == "reply")
        assert timeline.series[first_reply][1]
        timeline.move_cursor(row=first_reply)
        await pilot.pause()  # type: ignore[attr-defined]
        packet = text_of(app.query_one(PacketView))
        assert "the reply's first hop: nothing before it to compare" in packet
        assert "changed since" not in packet
        layers = app.query_one("#layers", Tree)
        shown = [str(leaf.label) for n in layers.root.children for leaf in n.children]
        assert not [line for line in shown if "b'" in line or 'b"' in line], shown
        assert any(line.startswith("id") and "(0x" in line for line in shown), shown
        assert any("pathtrace: an answer" in line or "pathtrace: a probe" in line for line in shown)
        assert str(layers.root.children[-1].label).startswith("bytes (")
        assert not layers.root.children[-1].is_expanded  # folded until asked for

    drive(make_app(bundle=EXAMPLES / "ping-answered"), scenario)


def test_the_form_holds_a_scenarios_try_run_size_and_df_included() -> None:
    async def scenario(app: PathtraceApp, pilot: object) -> None:
        from textual.widgets import Checkbox

        from pathtrace.lab import scenarios

        form = app.query_one(ProbeForm)
        await pilot.pause()  # type: ignore[attr-defined]
        # Every scenario's "try:" run the form can hold, it holds whole.
        for s in scenarios.SCENARIOS.values():
            assert form.fill_command(s.try_it), s.try_it
            await pilot.pause()  # type: ignore[attr-defined]
            words = s.try_it.split()
            v = form.values()
            assert (v.kind, v.target) == (words[1], words[2])
            assert v.dont_fragment == ("--df" in words)
            assert v.size == (words[words.index("--size") + 1] if "--size" in words else "")
            assert v.source == (
                words[words.index("--from") + 1] if "--from" in words else "container1"
            )
        assert not form.fill_command("run ping 8.8.8.8 --ttl 3")  # no field for it
        assert form.values().target == scenarios.SCENARIOS[s.name].try_it.split()[2]  # untouched
        # Every field's value is whole on screen at 80 columns (no silent cut).
        form.fill("ping", "container1", "2001:4860:4860::8888", 1000, 1400, True)
        await pilot.pause()  # type: ignore[attr-defined]
        for field in ("#source", "#target", "#count", "#size"):
            widget = app.query_one(field, Input)
            assert widget.content_region.width >= len(widget.value), field
            assert widget.border_subtitle == "", field
        source = app.query_one("#source", Input)
        source.value = "lab:container1-and-more"  # longer than its field: marked
        await pilot.pause()  # type: ignore[attr-defined]
        assert source.border_subtitle == "…more"
        assert app.query_one("#df", Checkbox).value
        assert app.query_one("#target", Input).border_title == "to"

    drive(lab_app(), scenario, size=(80, 24))


def test_the_form_enter_escape_digits_and_field_named_errors() -> None:
    async def scenario(app: PathtraceApp, pilot: object) -> None:
        target = app.query_one("#target", Input)
        target.focus()
        target.value = "not-an-address"
        await pilot.press("enter")  # type: ignore[attr-defined]  # Enter runs
        await wait_until(pilot, lambda: "run failed" in status(app))
        assert "to: 'not-an-address' is not an IP address" in status(app)
        target.value = "8.8.8.8"
        count = app.query_one("#count", Input)
        count.focus()
        count.value = ""
        await pilot.press("1", "a", "x", "2")  # type: ignore[attr-defined]
        assert count.value == "12"  # digits only
        count.value = "0"
        await pilot.press("ctrl+r")  # type: ignore[attr-defined]  # runs from inside a field
        await wait_until(pilot, lambda: "count:" in status(app))
        count.value = "1"
        source = app.query_one("#source", Input)
        source.value = "no-such-node"
        await pilot.press("ctrl+r")  # type: ignore[attr-defined]
        await wait_until(pilot, lambda: "from: unknown node 'no-such-node'" in status(app))
        await pilot.press("escape")  # type: ignore[attr-defined]
        assert isinstance(app.focused, HopTimeline)
        # A long field shows its start once left.
        target.value = "192.168.100.1:8080"
        target.focus()
        target.cursor_position = len(target.value)
        app.query_one(HopTimeline).focus()
        await pilot.pause()  # type: ignore[attr-defined]
        assert target.cursor_position == 0

    drive(lab_app(), scenario, size=(100, 30))


def test_a_long_lab_difference_opens_whole() -> None:
    long = "host: nat POSTROUTING rule masquerade is missing " + "(and a long tail) " * 8

    async def scenario(app: PathtraceApp, pilot: object) -> None:
        pane = app.query_one(TopologyPane)
        # The pane's first reading of the lab (not up here) comes first.
        await wait_until(pilot, lambda: "not up" in str(pane.root.label))
        app._show_topology(app.topology, [long], "")
        await pilot.pause()  # type: ignore[attr-defined]  # the tree lays its lines out
        leaf = next(n for n in pane.root.children[-1].children if n.data == long)
        pane.focus()
        pane.move_cursor(leaf)
        await pilot.pause()  # type: ignore[attr-defined]
        await pilot.press("enter")  # type: ignore[attr-defined]
        await pilot.pause()  # type: ignore[attr-defined]
        assert isinstance(app.screen, DetailScreen) and app.screen.text == long
        await pilot.press("escape")  # type: ignore[attr-defined]
        assert not isinstance(app.screen, DetailScreen)

    drive(lab_app(), scenario)


def test_help_lists_every_key_and_how_to_close_it() -> None:
    async def scenario(app: PathtraceApp, pilot: object) -> None:
        await pilot.press("question_mark")  # type: ignore[attr-defined]
        await pilot.pause()  # type: ignore[attr-defined]
        assert isinstance(app.screen, HelpScreen)
        from pathtrace.tui.screens.help import HELP

        for key in (
            "Esc",
            "Enter",
            "Tab",
            "Home / End",
            "↑ ↓",
            "ctrl+r",
            "ctrl+p",
            "n / p",
            "u / x",
            "b / f",
            "| l |",
            "| s |",
            "| o |",
            "| t |",
            "q, ctrl+c",
        ):
            assert key in HELP, key
        assert "Esc, q or ? close this help" in HELP
        await pilot.press("escape")  # type: ignore[attr-defined]
        assert not isinstance(app.screen, HelpScreen)
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert {"Run the probe", "Lab up", "Break the lab", "Save the run"} <= set(titles)

    drive(lab_app(), scenario)  # fmt: skip


def test_every_example_reads_back_with_series_in_time_order() -> None:
    for path in bundle.find(EXAMPLES):
        result, _ = bundle.load(path)
        for probe in result.probes:
            assert probe.request.hops[0].offset_us == 0
            for series in probe.series:
                times = [h.time_ns for h in series.hops]
                assert times == sorted(times), (path.name, series.direction)


def test_the_source_is_picked_among_lab_nodes_and_namespaces() -> None:
    async def scenario(app: PathtraceApp, pilot: object) -> None:
        await pick(pilot, "F", "lab:wan")  # among lab:container1, lab:host, ...
        await pilot.pause()  # type: ignore[attr-defined]
        assert app.query_one("#source", Input).value == "lab:wan"
        await pick(pilot, "F", "netns:host")  # the host, by its unambiguous name
        await pilot.pause()  # type: ignore[attr-defined]
        assert app.query_one("#source", Input).value == "netns:host"

    drive(lab_app(), scenario)


def test_the_pane_shows_what_a_run_traced_when_no_lab_was_used() -> None:
    result, _ = bundle.load(EXAMPLES / "ping-answered")

    async def scenario(app: PathtraceApp, pilot: object) -> None:
        pane = app.query_one(TopologyPane)
        # The start-up read of the lab first: it would replace the traced view.
        await wait_until(pilot, lambda: "not up" in str(pane.root.label))
        pane.show_traced(result.states)
        await pilot.pause()  # type: ignore[attr-defined]
        assert "traced: 4 namespaces (no lab)" in str(pane.root.label)
        host = next(n for n in pane.root.children if "host" in str(n.label))
        leaves = [str(leaf.label) for leaf in host.children]
        assert any(leaf.startswith("br0 bridge 192.168.100.1/24") for leaf in leaves), leaves
        assert any("veth-host1 veth" in leaf and "(port of br0)" in leaf for leaf in leaves)

    drive(lab_app(), scenario)


def test_refreshing_the_lab_pane_waits_for_a_lab_job() -> None:
    """A refresh shares the lab jobs' worker group: it must not cancel one under way."""

    async def scenario(app: PathtraceApp, pilot: object) -> None:
        await wait_until(pilot, lambda: "not up" in str(app.query_one(TopologyPane).root.label))
        app.lab_busy = "lab up"  # as while `u` builds the lab
        await pilot.press("l")  # type: ignore[attr-defined]
        assert status(app) == "lab pane: read again when lab up ends"
        assert not [w for w in app.workers if w.group == "lab" and w.is_running]
        app.lab_busy = None
        await pilot.press("l")  # type: ignore[attr-defined]
        assert status(app) == "lab pane: read again"

    drive(lab_app(), scenario)


def test_the_lab_pane_writes_addresses_as_they_are() -> None:
    """``fd00:100::2/64`` is no markup: rich would make ``:100:`` an emoji."""

    async def scenario(app: PathtraceApp, pilot: object) -> None:
        pane = app.query_one(TopologyPane)
        app._show_topology(app.topology, None, "")
        await pilot.pause()  # type: ignore[attr-defined]
        labels = []
        todo = [pane.root]
        while todo:
            node = todo.pop()
            labels.append(str(node.label))
            todo.extend(node.children)
        shown = "\n".join(labels)
        assert "veth-cont1 192.168.100.2/24 fd00:100::2/64" in shown, shown
        assert "\N{HUNDRED POINTS SYMBOL}" not in shown

    drive(lab_app(), scenario)


def test_the_diagnosis_scrolls_to_its_fix_and_evidence() -> None:
    """A diagnosis longer than its pane (cause, fix, evidence) scrolls, so the last
    line can be read."""

    async def scenario(app: PathtraceApp, pilot: object) -> None:
        pane = app.query_one(DiagnosisPane)
        await wait_until(pilot, lambda: "fix:" in pane.text())
        await pilot.pause()  # type: ignore[attr-defined]
        # Wrapped, the cause, fix and evidence are more lines than the pane shows.
        assert pane.virtual_size.height > pane.size.height, (pane.virtual_size, pane.size)
        pane.focus()
        await pilot.press("end")  # type: ignore[attr-defined]
        await wait_until(pilot, lambda: pane.scroll_y == pane.max_scroll_y > 0)

    drive(make_app(bundle=EXAMPLES / "forward-drop"), scenario, size=(80, 24))
