"""Open a saved run: type a path (a bundle, or any folder holding bundles), or pick one."""

from __future__ import annotations

from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList
from textual.widgets.option_list import Option, OptionDoesNotExist
from textual.worker import get_current_worker

from pathtrace.errors import BundleError
from pathtrace.output import bundle

SUMMARIZED = 200  # bundles described in the list (each a report read); the rest by path


class OpenScreen(ModalScreen[Path | None]):
    DEFAULT_CSS = """
    OpenScreen { align: center middle; }
    OpenScreen > Vertical { width: 90%; height: auto; max-height: 90%; border: thick $primary;
                            background: $surface; padding: 0 1; }
    OpenScreen OptionList { height: auto; max-height: 16; }
    OpenScreen #open-said { color: $text-muted; }
    """
    BINDINGS = [("escape", "dismiss_none", "cancel")]

    def __init__(self, roots: list[Path]) -> None:
        super().__init__()
        self.roots = roots

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("open a saved run: type a path and Enter, or pick one below")
            yield Input(placeholder="a bundle, or a folder holding bundles", id="open-path")
            yield Label("", id="open-said")
            yield OptionList(id="open-found")

    def on_mount(self) -> None:
        self.list_bundles(self.roots)

    def list_bundles(self, roots: list[Path]) -> None:
        found = [p for root in roots for p in bundle.find(root)]
        options = self.query_one("#open-found", OptionList)
        options.clear_options()
        options.add_options([Option(str(p), id=str(p)) for p in found])
        options.highlighted = 0 if found else None  # Enter alone opens the newest
        where = ", ".join(str(r) for r in roots)
        said = f"{len(found)} bundles under {where}" if found else f"no bundles under {where}"
        self.query_one("#open-said", Label).update(said)
        self.describe(found[:SUMMARIZED])

    @work(thread=True, exclusive=True, exit_on_error=False)
    def describe(self, found: list[Path]) -> None:
        """Each bundle's time, probe and verdict (`bundle list`'s line), read off the
        screen's thread: a report of 1000 probes takes a while to parse."""
        for path in found:
            try:
                line = bundle.summary(path)
            except (BundleError, OSError):
                line = f"{path}  (unreadable)"
            if get_current_worker().is_cancelled:
                return
            self.app.call_from_thread(self._describe, str(path), line)

    def _describe(self, option_id: str, line: str) -> None:
        options = self.query("#open-found")
        if options:
            try:
                options.first(OptionList).replace_option_prompt(option_id, line)
            except OptionDoesNotExist:
                pass  # the list was replaced meanwhile

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()  # the form's fields run probes on Enter; this one does not
        typed = event.value.strip()
        options = self.query_one("#open-found", OptionList)
        if not typed:  # Enter alone: the highlighted bundle of the list
            if options.highlighted is not None:
                option = options.get_option_at_index(options.highlighted)
                self.dismiss(Path(str(option.id)))
            return
        path = Path(typed).expanduser()
        if (path / "bundle.json").exists():
            self.dismiss(path)
        elif path.is_dir():
            self.list_bundles([path])
            self.query_one("#open-found", OptionList).focus()
        else:
            self.query_one("#open-said", Label).update(f"no bundle or folder at {path}")

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(Path(str(event.option.id)))

    def action_dismiss_none(self) -> None:
        self.dismiss(None)
