"""The TUI driven by Textual's Pilot: on saved bundles (no root) and on the live lab."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from textual.widgets import Input, OptionList

from pathtrace.lab import topology
from pathtrace.output.watch_report import flow_text
from pathtrace.tui import make_app
from pathtrace.tui.app import PathtraceApp
from pathtrace.tui.screens.watch import WatchScreen
from pathtrace.tui.widgets.diagnosis import DiagnosisPane
from pathtrace.tui.widgets.packet_view import ExplainView, PacketView
from pathtrace.tui.widgets.timeline import HopTimeline

EXAMPLES = Path(__file__).resolve().parents[2] / "captures" / "examples"


def text_of(widget: object) -> str:
    if hasattr(widget, "text"):  # panes made of several widgets say what they show
        return str(widget.text())
    return str(widget.render())  # type: ignore[attr-defined]


async def wait_until(pilot: object, check: Callable[[], bool], timeout: float = 30) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            status = text_of(pilot.app.query_one("#status"))  # type: ignore[attr-defined]
            raise AssertionError(f"the app did not get there in time; status: {status}")
        await pilot.pause(0.05)  # type: ignore[attr-defined]


async def pick(pilot: object, key: str, option: str) -> None:
    """Press ``key`` and choose ``option`` (by id) in the list it opens."""
    await pilot.press(key)  # type: ignore[attr-defined]
    await pilot.pause()  # type: ignore[attr-defined]
    picker = pilot.app.screen.query_one("OptionList")  # type: ignore[attr-defined]
    ids = [picker.get_option_at_index(i).id for i in range(picker.option_count)]
    picker.highlighted = ids.index(option)
    await pilot.press("enter")  # type: ignore[attr-defined]


def test_bundle_shows_hops_packet_and_diagnosis() -> None:
    async def scenario() -> None:
        app = make_app(bundle=EXAMPLES / "ping-answered")
        async with app.run_test(size=(120, 40)) as pilot:
            timeline = app.query_one(HopTimeline)
            await wait_until(pilot, lambda: bool(timeline.hops))
            snat = next(i for i, h in enumerate(timeline.hops) if h.translation)
            timeline.move_cursor(row=snat)
            await pilot.pause()
            packet = text_of(app.query_one(PacketView))
            assert "SNAT by rule masquerade" in packet
            assert "192.168.100.2:icmp/" in packet and "198.51.100.2:icmp/" in packet
            assert "conntrack" in text_of(app.query_one(ExplainView))
            assert "answered by wan" in text_of(app.query_one(DiagnosisPane))
            # the translation changed the source since the hop before it
            assert "changed since the previous hop: src" in packet
            timeline.move_cursor(row=snat + 1)
            await pilot.pause()
            assert "changed since the previous hop: nothing" in text_of(app.query_one(PacketView))
            await pilot.press("n")  # next probe
            await pilot.pause()
            assert "probe 2 of 2" in text_of(app.query_one(DiagnosisPane))
            await pilot.press("question_mark")
            await pilot.pause()
            assert app.screen.__class__.__name__ == "HelpScreen"
            await pilot.press("escape")
            await pilot.press("q")

    asyncio.run(scenario())


def test_drop_bundle_names_the_forward_rule() -> None:
    async def scenario() -> None:
        app = make_app(bundle=EXAMPLES / "forward-drop")
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_until(pilot, lambda: bool(app.query_one(HopTimeline).hops))
            diagnosis = text_of(app.query_one(DiagnosisPane))
            assert "dropped" in diagnosis and "FORWARD" in diagnosis

    asyncio.run(scenario())


@pytest.mark.root
def test_live_lab_run_break_fix_save_reopen(
    lab: topology.Topology, topology_file: Path, tmp_path: Path
) -> None:
    async def scenario() -> None:
        app: PathtraceApp = make_app(lab, topology_file.read_text(), bundles_dir=tmp_path)
        async with app.run_test(size=(120, 40)) as pilot:
            timeline = app.query_one(HopTimeline)
            app.query_one("#count", Input).value = "300"  # 3 s of probes: long enough to watch
            await pilot.press("r")  # the form's default: ping 8.8.8.8 from container1
            # Hops appear while the run is still tracing, as events arrive.
            await wait_until(pilot, lambda: app.busy and bool(timeline.hops), timeout=20)
            await wait_until(pilot, lambda: app.result is not None and not app.busy)
            assert app.result is not None and app.result.delivered
            snat = next(
                i
                for i, h in enumerate(timeline.hops)
                if h.translation and h.translation.kind == "SNAT"
            )
            timeline.move_cursor(row=snat)
            await pilot.pause()
            assert "192.168.100.2:icmp/" in text_of(app.query_one(PacketView))

            await pick(pilot, "b", "forward-drop")
            await wait_until(
                pilot, lambda: "break forward-drop: done" in text_of(app.query_one("#status"))
            )
            first = app.result
            await pilot.press("r")
            await wait_until(pilot, lambda: app.result is not first and not app.busy)
            diagnosis = text_of(app.query_one(DiagnosisPane))
            assert "dropped" in diagnosis and "FORWARD" in diagnosis, diagnosis

            await pilot.press("f")
            await wait_until(pilot, lambda: "lab up: done" in text_of(app.query_one("#status")))
            second = app.result
            await pilot.press("r")
            await wait_until(pilot, lambda: app.result is not second and not app.busy)
            assert app.result is not None and app.result.delivered

            await pilot.press("s")
            await wait_until(pilot, lambda: "saved " in text_of(app.query_one("#status")))
            assert str(tmp_path) in text_of(app.query_one("#status"))  # the absolute path
            saved = list(tmp_path.glob("*/bundle.json"))
            assert len(saved) == 1
            await pilot.press("o")
            await pilot.pause()
            await pilot.press("enter")
            await wait_until(pilot, lambda: "bundle " in text_of(app.query_one("#status")))
            assert "answered by wan" in text_of(app.query_one(DiagnosisPane))

    asyncio.run(scenario())


# The live TUI in a scratch host (tests/scratch.py), starting with no lab at all:
# its thread workers build, trace, break, fix and remove the lab, and the host's
# fingerprint is the same at the end. Worker errors stay on screen.
SCRATCH_TUI = """
import asyncio, json, os, subprocess
from pathlib import Path
from pathtrace.lab import topology
from pathtrace.system import netns
from pathtrace.tui import make_app
from pathtrace.tui.widgets.diagnosis import DiagnosisPane
from tests.rootns import snapshot
from tests.tui.test_app import pick, text_of, wait_until

HOST = os.stat("/proc/self/ns/net").st_ino
topo = topology.parse(topology.reference_text())
before = snapshot()
out = {"steps": []}

def status(app):
    return text_of(app.query_one("#status"))

async def scenario():
    app = make_app(topo, topology.reference_text(), bundles_dir=Path("/run/pt-tui-saved"))
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("u")
        await wait_until(pilot, lambda: "lab up: done" in status(app), 60)
        out["inodes"] = sorted(netns.inode(topo.namespace(n)) for n in topo.nodes)
        out["host_links"] = subprocess.run(["ip", "-o", "link"], capture_output=True,
                                           text=True).stdout.count("\\n")
        app.query_one("#count").value = "400"  # 4 s of probes: time to press a lab key
        app.query_one("#target").focus()
        await pilot.press("enter")  # Enter in a field of the form runs the probe
        await wait_until(pilot, lambda: app.busy, 10)
        # Keys as typed, without Pilot's wait for an idle process (up to ~2 s a key
        # while a run traces in this process: measured; the run could end first).
        for key in ("escape", "u"):  # out of the field: keys are keys; lab keys wait
            app.simulate_key(key)
            await asyncio.sleep(0.2)
        out["refused"] = status(app)
        app.simulate_key("s")  # saved when the run ends
        await asyncio.sleep(0.2)
        out["save_later"] = status(app)
        await wait_until(pilot, lambda: app.result is not None and not app.busy, 60)
        out["delivered"] = app.result.delivered
        await wait_until(pilot, lambda: "saved ping" in status(app), 30)
        out["saved"] = [p.parent.name for p in Path("/run/pt-tui-saved").glob("*/bundle.json")]
        await pick(pilot, "b", "forward-drop")
        await wait_until(pilot, lambda: "break forward-drop: done" in status(app), 60)
        first = app.result
        await pilot.press("r")
        await wait_until(pilot, lambda: app.result is not first and not app.busy, 60)
        out["broken"] = "FORWARD" in text_of(app.query_one(DiagnosisPane))
        await pilot.press("f")
        await wait_until(pilot, lambda: "lab up: done" in status(app), 60)
        await pilot.press("x")  # asked twice: every namespace of the lab goes
        out["confirm"] = status(app)
        await pilot.press("x")
        await wait_until(pilot, lambda: "lab down: done" in status(app), 60)
        # An error no one planned for (a read-only /run/netns): said, and the app goes on.
        subprocess.run(["mount", "-t", "tmpfs", "-o", "ro", "ro", "/run/netns"], check=True)
        await pilot.press("u")
        await wait_until(pilot, lambda: "lab up failed" in status(app), 60)
        out["error"] = status(app)
        out["running"] = app.is_running
        subprocess.run(["umount", "/run/netns"], check=True)

asyncio.run(scenario())
after = snapshot()
out["changed"] = sorted(k for k in before if before[k] != after[k])
out["host"] = HOST
out["left"] = netns.names()
print(json.dumps(out))
"""


@pytest.mark.root
def test_live_tui_in_a_scratch_host_builds_nothing_in_the_host() -> None:
    from tests import scratch

    seen = scratch.result(SCRATCH_TUI, timeout=300)
    assert len(set(seen["inodes"])) == 4 and seen["host"] not in seen["inodes"]
    assert seen["host_links"] == 1  # lo alone: no bridge or veth made in the host
    assert "refused" in seen["refused"] and "run is tracing" in seen["refused"]
    assert "saved when it ends" in seen["save_later"] and len(seen["saved"]) == 1
    assert seen["delivered"] and seen["broken"]
    assert seen["error"].startswith("lab up failed: ") and "Read-only" in seen["error"]
    assert seen["running"]
    assert seen["confirm"].startswith("x again within 3 s takes the lab down")
    assert seen["changed"] == [] and seen["left"] == []


def test_an_ipv6_bundle_shows_its_layers_and_the_nat66() -> None:
    async def scenario() -> None:
        app = make_app(bundle=EXAMPLES / "ping6-nat66")
        async with app.run_test(size=(120, 40)) as pilot:
            timeline = app.query_one(HopTimeline)
            await wait_until(pilot, lambda: bool(timeline.hops))
            snat = next(i for i, h in enumerate(timeline.hops) if h.translation)
            timeline.move_cursor(row=snat)
            await pilot.pause()
            packet = text_of(app.query_one(PacketView))
            assert "SNAT by rule masquerade6" in packet
            assert "[fd00:100::2]:icmpv6/" in packet and "[2001:db8::2]:icmpv6/" in packet
            timeline.move_cursor(row=snat + 1)  # a captured hop: scapy's own IPv6 layers
            await pilot.pause()
            packet = text_of(app.query_one(PacketView))
            assert "IPv6" in packet and "ICMPv6 Echo Request" in packet, packet
            assert "2001:4860:4860::8888" in packet
            # The form is filled with the bundle's probe, IPv6 target and all.
            assert app.query_one("#target", Input).value == "2001:4860:4860::8888"
            await pilot.press("q")

    asyncio.run(scenario())


def _our_programs() -> int:
    """BPF programs of pathtrace's loaded on the machine (names begin pt_)."""
    shown = subprocess.run(
        ["bpftool", "prog", "show", "--json"], capture_output=True, text=True, check=True
    )
    return sum(p.get("name", "").startswith("pt_") for p in json.loads(shown.stdout))


@pytest.mark.root
def test_live_watch_mode_shows_a_pings_flow_as_it_goes(
    lab: topology.Topology, topology_file: Path, tmp_path: Path
) -> None:
    """w opens watch mode; the filter picks a real ping's packets, the flow appears
    while the watch runs, its path and verdict on the right are what `pathtrace
    watch` prints for it; s stops, the probes come off, Esc goes back."""
    before = _our_programs()

    async def scenario() -> None:
        app: PathtraceApp = make_app(lab, topology_file.read_text(), bundles_dir=tmp_path)
        async with app.run_test(size=(140, 45)) as pilot:
            await pilot.press("w")
            await pilot.pause()
            screen = app.screen
            assert isinstance(screen, WatchScreen)
            screen.query_one("#watch-filter", Input).value = "icmp"
            await pilot.press("enter")
            status = screen.query_one("#watch-status")
            await wait_until(pilot, lambda: "watching 'icmp'" in text_of(status))
            assert _our_programs() > before
            ping = await asyncio.create_subprocess_exec(
                "ip", "netns", "exec", lab.namespace("container1"),
                "ping", "-c", "3", "-i", "0.2", "8.8.8.8",
                stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            flows = screen.query_one("#flows", OptionList)
            await wait_until(pilot, lambda: flows.option_count == 1 and "reply" in screen.shown)
            assert screen.running  # shown live, before the watch ends
            out, _ = await ping.communicate()
            assert b" 3 received" in out, out
            await pilot.press("s")
            await wait_until(pilot, lambda: not screen.running)
            assert "ended: stopped" in text_of(status), text_of(status)
            shown = screen.shown
            assert "verdict: answered" in shown and "container1 sends on veth-cont1" in shown
            assert "SNAT by rule masquerade" in shown and "3 request, 3 reply" in shown, shown
            # The pane is the library's text of the flow (what `pathtrace watch` prints).
            assert shown == "\n".join(flow_text(screen.flows[0]))
            # ctrl+s saves the watch as `watch --save` does, captures included.
            await pilot.press("ctrl+s")
            await wait_until(pilot, lambda: "saved the watch of 'icmp'" in text_of(status))
            saved = Path(text_of(status).rsplit(": ", 1)[1].strip())
            assert {"report.json", "trace.pcapng", "events.jsonl"} <= {
                p.name for p in saved.iterdir()
            }
            report = json.loads((saved / "report.json").read_text())
            assert len(report["flows"]) == 1 and report["capture"]["packets"] >= 6, report
            await pilot.press("escape")
            await pilot.pause()
            assert not isinstance(app.screen, WatchScreen)

    asyncio.run(scenario())
    assert _our_programs() == before
