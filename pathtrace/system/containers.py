"""Containers by the names their runtime gives them (Docker, podman).

Asked of the runtime's own CLI, when it is installed and answers: a container's
name or id prefix -> its network namespace, and every running container's
namespace -> its name, so that a report calls it what `docker ps` does.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess

from pathtrace.errors import UsageError

RUNTIMES = ("docker", "podman")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_TIMEOUT = 10.0


def _ask(runtime: str, *args: str) -> str | None:
    """The runtime's answer, or None where it is missing, has no daemon or refuses."""
    exe = shutil.which(runtime)
    if exe is None:
        return None
    try:
        done = subprocess.run(
            [exe, *args], capture_output=True, text=True, timeout=_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def namespace_of(name: str) -> tuple[str, str] | None:
    """(namespace path, runtime) of the container ``name`` (a name or an id prefix, as
    `docker inspect` takes it); None if no runtime knows it."""
    if not _NAME.fullmatch(name):
        return None
    for runtime in RUNTIMES:
        answer = _ask(runtime, "inspect", "--type", "container", "-f", "{{.State.Pid}}", name)
        if answer is None:
            continue
        pid = answer.strip().splitlines()[0] if answer.strip() else ""
        if not (pid.isdigit() and int(pid) > 0):
            raise UsageError(f"--from {name}: that {runtime} container is not running")
        return f"/proc/{pid}/ns/net", runtime
    return None


@functools.cache
def names_by_inode() -> dict[int, str]:
    """Network namespace inode -> the name of the running container that holds it."""
    found: dict[int, str] = {}
    for runtime in RUNTIMES:
        ids = _ask(runtime, "ps", "-q")
        if not ids or not ids.split():
            continue
        answer = _ask(runtime, "inspect", "-f", "{{.State.Pid}} {{.Name}}", *ids.split())
        for line in (answer or "").splitlines():
            pid, _, name = line.partition(" ")
            try:
                inode = os.stat(f"/proc/{pid}/ns/net").st_ino
            except (OSError, ValueError):
                continue
            found.setdefault(inode, name.strip().lstrip("/"))
    return found
