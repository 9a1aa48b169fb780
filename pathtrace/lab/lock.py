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
        before = _strongest(entry.modes) if entry is not None else None
        if entry is None:
            entry = _held[prefix] = _Held(_open_and_take(prefix, mode, doing))
        elif before == fcntl.LOCK_SH and mode == fcntl.LOCK_EX:
            _take(entry.fd, mode, prefix, doing)
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


def _path(prefix: str) -> Path:
    return LOCK_DIR / f"{prefix}.lock"


def _open_and_take(prefix: str, mode: int, doing: str) -> int:
    """The lock file's fd, locked. `lab down` removes the file of the lab it removed
    (while holding it): a waiter that got the lock of a removed file opens anew."""
    while True:
        LOCK_DIR.mkdir(parents=True, exist_ok=True, mode=0o755)
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(_path(prefix), flags, 0o600)
        try:
            _take(fd, mode, prefix, doing)
            if os.fstat(fd).st_ino == os.stat(_path(prefix)).st_ino:
                return fd
        except FileNotFoundError:
            pass  # removed while we waited: open the new one
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


def forget(prefix: str) -> None:
    """Removes lab ``prefix``'s lock file; only while holding it exclusively."""
    entry = _held.get(prefix)
    if entry is None or fcntl.LOCK_EX not in entry.modes:
        raise RuntimeError(f"forget({prefix!r}) without holding the lock")
    _path(prefix).unlink(missing_ok=True)


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
