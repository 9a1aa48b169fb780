"""What the main screens look like, on a saved bundle (stable), at two sizes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pathtrace.tui import make_app
from pathtrace.tui.widgets.packet_view import PacketView
from pathtrace.tui.widgets.timeline import HopTimeline
from pathtrace.tui.widgets.topology import TopologyPane

EXAMPLES = Path(__file__).resolve().parents[2] / "captures" / "examples"


async def loaded(pilot: Any) -> None:
    """Until every pane has its content: the timeline, the lab as saved, the packet."""
    app = pilot.app
    timeline = app.query_one(HopTimeline)
    lab = app.query_one(TopologyPane)
    for _ in range(500):
        if timeline.hops and "as saved" in str(lab.root.label):
            break
        await pilot.pause(0.01)
    # A translation if there is one; else the hop the app selected (a drop, if any).
    snat = next((i for i, h in enumerate(timeline.hops) if h.translation), timeline.cursor_row)
    timeline.move_cursor(row=snat)
    packet = app.query_one(PacketView)
    for _ in range(500):
        if timeline.hops[snat].text in str(packet.render()):
            break
        await pilot.pause(0.01)
    await pilot.wait_for_scheduled_animations()
    await pilot.pause()


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
@pytest.mark.parametrize("name", ["ping-answered", "forward-drop"])
def test_main_screen(snap_compare: Any, name: str, size: tuple[int, int]) -> None:
    assert snap_compare(make_app(bundle=EXAMPLES / name), terminal_size=size, run_before=loaded)


def test_help_screen(snap_compare: Any) -> None:
    async def help_open(pilot: Any) -> None:
        await loaded(pilot)
        await pilot.press("question_mark")
        await pilot.pause()

    assert snap_compare(
        make_app(bundle=EXAMPLES / "ping-answered"), terminal_size=(80, 24), run_before=help_open
    )
