"""Benchmark: the TUI opens a bundle in under a second; keys stay quick during a run.

1. Process start to the first hop of a bundle on screen (tmux, 5 rounds),
   beside `pathtrace bundle show` of the same bundle (text, no screen).
2. With the lab up, a key press (the help screen) while a run is under way:
   time until the screen has changed, against the same key with nothing running.
The latency is from sending a key to its bound action running in the app.
3. Resident size over 150 runs from the TUI (`memory`).
4. `pathtrace tui` to its first frame, beside importing textual (`frame`).
Run: `make bench` (as root); `python -m tests.bench.bench_tui keys` for the keys alone,
`... memory` for 3.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

PROBES = 1000  # the case: a key during a 1000-probe run
EXAMPLE = Path(__file__).resolve().parents[2] / "captures" / "examples" / "ping-answered"


def _until_on_screen(command: str, wanted: str) -> float:
    """Seconds from starting ``command`` in a new 120x40 tmux window to ``wanted``
    appearing on its screen (polled every 10 ms)."""
    session = f"ptb-{uuid.uuid4().hex[:6]}"
    start = time.perf_counter()
    for attempt in range(3):  # the tmux server of a session just killed may be exiting
        made = subprocess.run(
            ["tmux", "new-session", "-d", "-s", session, "-x", "120", "-y", "40", command],
            check=attempt == 2,
        )
        if made.returncode == 0:
            break
        time.sleep(0.2)
        start = time.perf_counter()
    try:
        while (
            wanted
            not in subprocess.run(
                ["tmux", "capture-pane", "-t", session, "-p"], capture_output=True, text=True
            ).stdout
        ):
            time.sleep(0.01)
        return time.perf_counter() - start
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)


def first_frame() -> None:
    """`pathtrace tui` (the live view, no bundle) to its first frame (the footer's
    keys on screen), beside `python -c 'import textual'` run the same way."""
    ours, theirs = [], []
    for _ in range(5):
        ours.append(_until_on_screen(f"{sys.executable} -m pathtrace tui", "q quit"))
        marker = "textual-imported"
        theirs.append(
            _until_on_screen(
                f"{sys.executable} -c 'import textual; print(\"{marker}\")'; sleep 5", marker
            )
        )
    print(
        f"tui's first frame, median of 5: {statistics.median(ours):.3f} s (target < 0.6 s); "
        f"python -c 'import textual': {statistics.median(theirs):.3f} s"
    )


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

    async def measure(during_run: bool) -> list[float]:
        """From typing a key to its action running inside the app: 10 keys, 0.3 s
        apart, while a 1000-probe run traces (or with nothing running)."""
        from textual.widgets import Input

        app = make_app(topo, text)
        handled: list[float] = []
        toggle = app.action_toggle_topology

        def timed_toggle() -> None:
            handled.append(time.perf_counter())
            toggle()

        app.action_toggle_topology = timed_toggle  # type: ignore[method-assign]
        live = app.show_live

        def timed_live() -> None:  # the live view's work on the UI thread, each tick
            start = time.perf_counter()
            live()
            ticks.append(time.perf_counter() - start)

        app.show_live = timed_live  # type: ignore[method-assign]
        latencies = []
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause(0.5)
            if during_run:
                app.query_one("#count", Input).value = str(PROBES)
                app.simulate_key("ctrl+r")
                while not app.busy:
                    await asyncio.sleep(0.001)
                await asyncio.sleep(0.5)  # into the run: probes going out, events arriving
            for _ in range(10):
                before = len(handled)
                sent = time.perf_counter()
                app.simulate_key("t")  # as typed: Pilot's press also waits for idle
                while len(handled) == before:
                    await asyncio.sleep(0.001)
                latencies.append(handled[-1] - sent)
                await asyncio.sleep(0.3)
            during = app.busy
            while app.busy:
                await pilot.pause(0.05)
        if during_run and not during:
            print("  (the run ended before the last key: fewer keys during it)")
        return latencies

    ticks: list[float] = []
    try:
        idle = [x for _ in range(2) for x in asyncio.run(measure(False))]
        ticks.clear()
        busy = [x for _ in range(2) for x in asyncio.run(measure(True))]
    finally:
        build.down(None, prefix="ptbt-")
    print(
        f"key press to its action: median {statistics.median(busy) * 1000:.0f} ms, "
        f"worst {max(busy) * 1000:.0f} ms of {len(busy)} keys while a {PROBES}-probe run "
        f"traces (target < 100 ms); {statistics.median(idle) * 1000:.0f} ms idle"
    )
    busy_ticks = [t for t in ticks if t > 0.0005] or [0.0]  # those that rebuilt
    print(
        f"live view's rebuild on the UI thread: median {statistics.median(busy_ticks) * 1000:.1f}"
        f" ms, worst {max(busy_ticks) * 1000:.1f} ms ({len(busy_ticks)} rebuilds, 10 a second)"
    )


def memory_over_runs(runs: int = 150) -> None:
    """Resident size after each of ``runs`` runs from the TUI (the lab up): flat, or
    growing by what per run."""
    from pathtrace.lab import build, topology
    from pathtrace.tui import make_app

    text = topology.reference_text().replace('prefix = "pt-"', 'prefix = "ptbm-"', 1)
    topo = topology.parse(text)
    build.up(topo, text)

    def rss_mb() -> float:
        with open("/proc/self/status") as f:
            line = next(x for x in f if x.startswith("VmRSS:"))
        return int(line.split()[1]) / 1024

    async def drive() -> list[float]:
        app = make_app(topo, text)
        sizes = []
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause(0.5)
            for _ in range(runs):
                before = app.result
                app.action_run()
                while app.busy or app.result is before:
                    await asyncio.sleep(0.01)
                sizes.append(rss_mb())
        return sizes

    try:
        sizes = asyncio.run(drive())
    finally:
        build.down(None, prefix="ptbm-")
    # A trend, not two ends: the size swings by ~20 MB from run to run (the
    # collector, malloc's arenas), so the least-squares slope says "grows" or not.
    slope = statistics.linear_regression(range(len(sizes)), sizes).slope
    every = max(1, runs // 10)
    print(
        f"resident size over {runs} TUI runs (ping 8.8.8.8 -c 3), every {every}: "
        + ", ".join(f"{x:.0f}" for x in sizes[every - 1 :: every])
        + f" MB; trend {slope * 1024:+.0f} KB a run; peak {max(sizes):.0f} MB"
    )


def main() -> int:
    if "memory" in sys.argv[1:]:
        memory_over_runs()
        return 0
    if "frame" in sys.argv[1:]:
        first_frame()
        return 0
    if "keys" not in sys.argv[1:]:
        open_time()
        first_frame()
    key_latency()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
