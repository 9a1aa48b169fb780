"""The real program in a real terminal (tmux): it draws, answers keys, and quits."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "captures" / "examples"


def _screen(session: str) -> str:
    return subprocess.run(
        ["tmux", "capture-pane", "-t", session, "-p"], capture_output=True, text=True, check=False
    ).stdout


def _wait_for(session: str, text: str, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        screen = _screen(session)
        if text in screen:
            return screen
        time.sleep(0.1)
    raise AssertionError(f"{text!r} never appeared:\n{_screen(session)}")


@pytest.mark.skipif(shutil.which("tmux") is None, reason="no tmux")
def test_tui_in_tmux() -> None:
    session = f"pt-{uuid.uuid4().hex[:8]}"
    # Start a shell at the wanted size first, then the program in it, so the app's
    # first look at its terminal already sees 120x40.
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", session, "-x", "120", "-y", "40"], check=True
    )
    # As people type it: the bundle as the argument (--bundle says the same).
    command = f"exec {sys.executable} -m pathtrace tui {EXAMPLES / 'ping-answered'}"
    subprocess.run(["tmux", "send-keys", "-t", session, command, "Enter"], check=True)
    try:
        for text in ("answered by wan", "container1 sends on veth-cont1", "q quit"):
            _wait_for(session, text)
        subprocess.run(["tmux", "send-keys", "-t", session, "?"], check=True)
        _wait_for(session, "close this help")
        subprocess.run(["tmux", "send-keys", "-t", session, "Escape"], check=True)
        time.sleep(0.3)
        subprocess.run(["tmux", "send-keys", "-t", session, "C-c"], check=True)  # like q
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            alive = (
                subprocess.run(
                    ["tmux", "has-session", "-t", session], capture_output=True, check=False
                ).returncode
                == 0
            )
            if not alive:
                break
            time.sleep(0.1)
        assert not alive, "Ctrl-C did not quit"
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True, check=False)
