"""Benchmark: the TUI opens a bundle in under a second; keys stay quick during a run.

1. Process start to the first hop of a bundle on screen (tmux, 5 rounds),
   beside `pathtrace bundle show` of the same bundle (text, no screen).
2. With the lab up, a key press (the help screen) while a run is under way:
   time until the screen has changed, against the same key with nothing running.
The latency is from sending a key to its bound action running in the app.
Run: `make bench` (as root).
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "captures" / "examples" / "ping-answered"


def open_time() -> None:
    ours, text = [], []
    for _ in range(5):
        session = f"ptb-{uuid.uuid4().hex[:6]}"
        start = time.perf_counter()
        subprocess.run(
            [
                "tmux",
                "new-session",
                "-d",
                "-s",
                session,
                "-x",
                "120",
                "-y",
                "40",
                f"{sys.executable} -m pathtrace tui --bundle {EXAMPLE}",
            ],
            check=True,
        )
        while (
            "sends on veth-cont1"
            not in subprocess.run(
                ["tmux", "capture-pane", "-t", session, "-p"], capture_output=True, text=True
            ).stdout
        ):
            time.sleep(0.01)
        ours.append(time.perf_counter() - start)
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "pathtrace", "bundle", "show", str(EXAMPLE)],
            capture_output=True,
            check=True,
        )
        text.append(time.perf_counter() - start)
    print(
        f"tui opens a bundle (process start to first hop on screen), median of 5: "
        f"{statistics.median(ours):.3f} s (target < 1 s); bundle show (text): "
        f"{statistics.median(text):.3f} s"
    )


def key_latency() -> None:
    from pathtrace.lab import build, topology
    from pathtrace.tui import make_app

    text = topology.reference_text().replace('prefix = "pt-"', 'prefix = "ptbt-"', 1)
    topo = topology.parse(text)
    build.up(topo, text)

    async def measure(during_run: bool) -> float:
        """From sending a key to its action running inside the app."""
        app = make_app(topo, text)
        handled: list[float] = []
        toggle = app.action_toggle_topology

        def timed_toggle() -> None:
            handled.append(time.perf_counter())
            toggle()

        app.action_toggle_topology = timed_toggle  # type: ignore[method-assign]
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause(0.5)
            if during_run:
                await pilot.press("r")
                while not app.busy:
                    await pilot.pause(0.001)
                await pilot.pause(0.05)  # into the run: arming, sending, events arriving
            sent = time.perf_counter()
            await pilot.press("t")
            while not handled:
                await pilot.pause(0.001)
            elapsed = handled[0] - sent
            while app.busy:
                await pilot.pause(0.05)
        return elapsed

    try:
        idle = [asyncio.run(measure(False)) for _ in range(5)]
        busy = [asyncio.run(measure(True)) for _ in range(5)]
    finally:
        build.down(None, prefix="ptbt-")
    print(
        f"key press to new screen: {statistics.median(busy) * 1000:.0f} ms while a run "
        f"traces (target < 100 ms), {statistics.median(idle) * 1000:.0f} ms idle"
    )


def main() -> int:
    open_time()
    key_latency()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
