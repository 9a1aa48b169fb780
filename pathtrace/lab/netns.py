"""Named network namespaces: create, enter, remove, and run programs inside.

Namespaces are the ``ip netns`` kind (bind mounts under /run/netns), so users can
look at the lab with the tools they know. A netlink socket belongs to the
namespace its thread was in when it was made; we switch the calling thread in
and straight back out, so the process itself never lives in a lab namespace.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from pathtrace.errors import EnvironmentProblem
from pathtrace.lab import _pyroute2

_pyroute2.install()

if TYPE_CHECKING:
    from pyroute2 import IPRoute

NETNS_DIR = "/run/netns"


def path(name: str) -> str:
    """A named namespace's file; an absolute path (/proc/PID/ns/net) stands for itself."""
    return name if name.startswith("/") else os.path.join(NETNS_DIR, name)


def names() -> list[str]:
    try:
        return sorted(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return []


def exists(name: str) -> bool:
    return os.path.exists(path(name))


def inode(name: str) -> int:
    """The namespace's inode number, as BPF programs see it (``net->ns.inum``)."""
    return os.stat(path(name)).st_ino


def root_inode() -> int:
    """The initial namespace (our own, where pid 1 cannot be inspected)."""
    try:
        return os.stat("/proc/1/ns/net").st_ino
    except OSError:
        return os.stat(f"/proc/{os.getpid()}/ns/net").st_ino


def create(name: str) -> IPRoute:
    """Creates namespace ``name`` and returns a netlink socket bound to it."""
    from pyroute2 import netns
    from pyroute2.iproute.linux import IPRoute

    # In-process (fork=False) is several times faster than pyroute2's forked
    # create; the thread goes back to where it was right after.
    netns.pushns()
    try:
        netns.setns(name, flags=os.O_CREAT | os.O_EXCL, fork=False)
        return IPRoute()
    finally:
        netns.popns()


def remove(name: str) -> None:
    from pyroute2 import netns

    if exists(name):
        netns.remove(name)


@contextmanager
def entered(name: str) -> Iterator[None]:
    """The calling thread inside namespace ``name`` for the duration of the block."""
    from pyroute2 import netns

    netns.pushns(name)
    try:
        yield
    finally:
        netns.popns()


def iproute(name: str) -> IPRoute:
    """A netlink socket bound to namespace ``name`` (the caller closes it)."""
    from pyroute2.iproute.linux import IPRoute

    with entered(name):
        return IPRoute()


def read_sysctl(name: str, key: str) -> str | None:
    """A net.* sysctl of namespace ``name``; None if the kernel has no such key."""
    with entered(name):
        try:
            with open(_sysctl_path(key)) as f:
                return f.read().strip()
        except FileNotFoundError:
            return None


def write_sysctl(name: str, key: str, value: str) -> None:
    # /proc/sys/net resolves against the opening thread's namespace, so this
    # writes the lab namespace's copy and never the root namespace's.
    with entered(name), open(_sysctl_path(key), "w") as f:
        f.write(value)


def _sysctl_path(key: str) -> str:
    if not key.startswith("net."):
        raise ValueError(f"{key} is not a per-namespace sysctl")
    return "/proc/sys/" + key.replace(".", "/")


def command(name: str, argv: Sequence[str]) -> list[str]:
    """``argv`` run inside namespace ``name`` (network namespace only)."""
    return ["nsenter", f"--net={path(name)}", "--", *argv]


def run(
    name: str,
    argv: Sequence[str],
    *,
    check: bool = True,
    input: str | None = None,
    timeout: float = 30,
) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            command(name, argv),
            capture_output=True,
            text=True,
            check=check,
            input=input,
            timeout=timeout,
        )
    except FileNotFoundError as error:
        raise EnvironmentProblem(f"{error.filename} is not installed; run `make setup`") from None


def popen(name: str, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
    return subprocess.Popen(command(name, argv), **kwargs)


def holders(name: str) -> list[int]:
    """Pids of processes living in namespace ``name`` (they keep it alive after removal)."""
    try:
        target = inode(name)
    except FileNotFoundError:
        return []
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}/ns/net").st_ino == target:
                    pids.append(int(entry))
            except OSError:
                continue
    return pids
