"""What the main screens look like, on a saved bundle (stable), at two sizes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pathtrace.tui import make_app
from pathtrace.tui.widgets.timeline import HopTimeline

EXAMPLES = Path(__file__).resolve().parents[2] / "captures" / "examples"


async def loaded(pilot: Any) -> None:
    app = pilot.app
    for _ in range(200):
        if app.query_one(HopTimeline).hops:
            break
        await pilot.pause(0.02)
    timeline = app.query_one(HopTimeline)
    snat = next((i for i, h in enumerate(timeline.hops) if h.translation), 0)
    timeline.move_cursor(row=snat)
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
