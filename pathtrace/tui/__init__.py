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

    return PathtraceApp(topology, topology_text, bundle, bundles_dir, watch)
