"""The TUI: `pathtrace tui` (and bare `pathtrace` on a terminal)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # lazy: Textual loads only when the TUI is asked for
    from pathtrace.lab.topology import Topology
    from pathtrace.tui.app import PathtraceApp


def make_app(
    topology: Topology | None = None,
    topology_text: str | None = None,
    bundle: Path | None = None,
    bundles_dir: Path = Path("captures"),
    watch: str | None = None,
) -> PathtraceApp:
    """The one way the CLI and the tests build the app."""
    # lazy: Textual loads only when the TUI is asked for
    from pathtrace.tui.app import PathtraceApp

    _few_malloc_arenas()

    return PathtraceApp(topology, topology_text, bundle, bundles_dir, watch)


def _few_malloc_arenas() -> None:
    """glibc gives each new thread an arena of its own (up to 8 per core), and what a
    run's threads free stays in theirs: over 150 runs the resident size swung
    between 116 and 172 MB and crept up ~220 KB a run; with two arenas it stayed
    within 130-141 MB (measured, tests/bench/bench_tui.py memory). A long-lived
    process starting threads for every run is what the TUI is."""
    import ctypes

    process = ctypes.CDLL(None)  # the C library the interpreter runs on
    if hasattr(process, "mallopt"):  # glibc's (musl has none: its own habits)
        process.mallopt(-8, 2)  # M_ARENA_MAX
