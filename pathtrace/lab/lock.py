"""One lab, one writer: `lab up`, `down`, `break`, `fix` and runs take turns.

A lock per lab prefix, ``/run/pathtrace/locks/PREFIX.lock``, held with flock:
changing the lab takes it exclusively, a run on the lab takes it shared (runs
go side by side; `lab down` waits for them). flock locks vanish with the
process that held them, so a SIGKILL leaves nothing to heal. Within one
process the lock nests (a run that brings the lab up takes it exclusively for
that, then shared again).
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_DIR = Path("/run/pathtrace/locks")

# Told when a lock has to be waited for (the CLI prints it on stderr).
announce: Callable[[str], None] = lambda _: None  # noqa: E731


class _Held:
    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.modes: list[int] = []  # LOCK_SH / LOCK_EX, innermost last


_held: dict[str, _Held] = {}
_guard = threading.RLock()


def _strongest(modes: list[int]) -> int:
    return fcntl.LOCK_EX if fcntl.LOCK_EX in modes else fcntl.LOCK_SH


@contextmanager
def held(prefix: str, exclusive: bool, doing: str) -> Iterator[None]:
    """Holds lab ``prefix``'s lock for ``doing``; waits (saying for whom) if taken."""
    mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
    with _guard:
        entry = _held.get(prefix)
        if entry is None:
            LOCK_DIR.mkdir(parents=True, exist_ok=True, mode=0o755)
            fd = os.open(
                LOCK_DIR / f"{prefix}.lock",
                os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o600,
            )
            entry = _held[prefix] = _Held(fd)
        before = _strongest(entry.modes) if entry.modes else None
        try:
            if before is None or (before == fcntl.LOCK_SH and mode == fcntl.LOCK_EX):
                _take(entry.fd, mode, prefix, doing)
        except BaseException:
            if not entry.modes:
                os.close(entry.fd)
                del _held[prefix]
            raise
        entry.modes.append(mode)
    try:
        yield
    finally:
        with _guard:
            entry.modes.pop()
            if not entry.modes:
                os.close(entry.fd)  # releases the flock
                del _held[prefix]
            elif before == fcntl.LOCK_SH and mode == fcntl.LOCK_EX:
                fcntl.flock(entry.fd, fcntl.LOCK_SH)  # back to what the outer holder had


def _take(fd: int, mode: int, prefix: str, doing: str) -> None:
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        pass
    others = holders(fd)
    who = ", ".join(f"pid {pid} ({what})" for pid, what in others) or "another pathtrace"
    announce(f"{doing} waits for {who} on lab {prefix!r}")
    fcntl.flock(fd, mode)


def holders(fd: int) -> list[tuple[int, str]]:
    """The processes holding the lock of ``fd`` (from /proc/locks) and their commands."""
    inode = os.fstat(fd).st_ino
    found = []
    try:
        with open("/proc/locks") as f:
            for line in f:
                fields = line.split()
                # "1: FLOCK  ADVISORY  WRITE 1234 00:1a:5678 0 EOF"; blocked waiters have "->"
                if "->" in fields or len(fields) < 6 or fields[1] != "FLOCK":
                    continue
                if fields[5].rsplit(":", 1)[-1] == str(inode) and fields[4].isdigit():
                    pid = int(fields[4])
                    if pid != os.getpid():
                        found.append((pid, _command(pid)))
    except OSError:
        return []
    return sorted(set(found))


def _command(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return "gone"
    words = [a.decode(errors="replace") for a in argv if a]
    # "python -m pathtrace lab up" or ".venv/bin/pathtrace run ping ...": from the command on
    for i, word in enumerate(words):
        if word.endswith("pathtrace"):
            return " ".join(["pathtrace", *words[i + 1 : i + 4]])
    return " ".join(words[:4])
