"""Code run in a scratch host: new network, mount and pid namespaces.

The scratch network namespace plays the host, so a test of anything that could
go wrong on the host (a lab built in the wrong namespace, a foreign topology)
never risks the machine's own. /run is a private tmpfs there, so /run/netns and
/run/pathtrace are the scratch host's own; and the scratch pid namespace ends
every process left in it (lab responders included) when the test's code exits.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
_ENTER = 'mount -t tmpfs pt-scratch /run && exec "$0" -c "$1"'


def run(code: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """``code`` (Python) run as the scratch host's only process tree."""
    return subprocess.run(
        [
            "unshare", "--net", "--mount", "--pid", "--fork", "--mount-proc",
            "--", "sh", "-c", _ENTER, sys.executable, textwrap.dedent(code),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )  # fmt: skip


def result(code: str, timeout: float = 180) -> Any:
    """The JSON that ``code`` printed on its last line; fails with its stderr otherwise."""
    done = run(code, timeout)
    lines = done.stdout.strip().splitlines()
    assert done.returncode == 0 and lines, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return json.loads(lines[-1])
