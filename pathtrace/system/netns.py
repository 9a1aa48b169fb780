"""Named network namespaces: create, enter, remove, and run programs inside.

Namespaces are the ``ip netns`` kind (bind mounts under /run/netns), so users can
look at the lab with the tools they know. A netlink socket belongs to the
namespace its thread was in when it was made; we switch the calling thread in
and straight back out, so the process itself never lives in a lab namespace.

Everything here acts on the calling *thread* and nothing else: ``setns`` and
``unshare(CLONE_NEWNET)`` move one thread, so the namespace a thread came from
is read from ``/proc/thread-self`` and kept in that thread's own frame. (pyroute2's
``setns``/``pushns`` read ``/proc/self``, the main thread's namespace, and keep one
stack for all threads: from a worker thread its "new namespace" was the
process's own. Its namespace calls are not used.)
"""

from __future__ import annotations

import ctypes
import errno
import os
import subprocess
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from pathtrace.errors import ConflictError, EnvironmentProblem
from pathtrace.system import _pyroute2
from pathtrace.system.rtnl import Rtnl, SockDiag

if TYPE_CHECKING:
    from pyroute2 import IPRoute

NETNS_DIR = "/run/netns"
# pathtrace's own short-lived namespaces (doctor's test): never a run's to trace.
SCRATCH_PREFIX = "pt-doctor-"
THREAD_NS = "/proc/thread-self/ns/net"
_CLONE_NEWNET = 0x40000000
_CLONE_NEWUTS = 0x04000000
_NS_GET_NSTYPE = 0xB703  # _IO(0xb7, 0x3)
_MS_BIND, _MS_REC, _MS_SHARED = 0x1000, 0x4000, 0x100000
_MNT_DETACH = 2
_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str, target: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}", target)


def hostname_of(pid: int) -> str | None:
    """The hostname in ``pid``'s UTS namespace, when it has one of its own (a
    container's); None when it shares ours. Read on a thread of its own, which
    joins that namespace and ends: no other thread's namespaces move."""
    try:
        if os.stat(f"/proc/{pid}/ns/uts").st_ino == os.stat("/proc/thread-self/ns/uts").st_ino:
            return None
        fd = os.open(f"/proc/{pid}/ns/uts", os.O_RDONLY)
    except OSError:
        return None
    found: list[str] = []

    def read() -> None:
        if _libc.setns(fd, _CLONE_NEWUTS) == 0:
            found.append(os.uname().nodename)

    try:
        worker = threading.Thread(target=read, name="pathtrace-uts")
        worker.start()
        worker.join()
    finally:
        os.close(fd)
    return found[0] if found else None


def _setns(fd: int, target: str) -> None:
    _check(_libc.setns(fd, _CLONE_NEWNET), "setns", target)


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


def current_inode() -> int:
    """The namespace the calling thread is in."""
    return os.stat(THREAD_NS).st_ino


def root_inode() -> int:
    """The initial namespace (our own, where pid 1 cannot be inspected)."""
    try:
        return os.stat("/proc/1/ns/net").st_ino
    except OSError:
        return os.stat(f"/proc/{os.getpid()}/ns/net").st_ino


def host_inodes() -> set[int]:
    """Namespaces no lab may be built in: pid 1's, this process's, this thread's."""
    found = {os.stat(f"/proc/{os.getpid()}/ns/net").st_ino, current_inode()}
    try:
        found.add(os.stat("/proc/1/ns/net").st_ino)
    except OSError:
        pass  # pid 1 out of sight: ours is the host then
    return found


def require_not_host(name: str) -> int:
    """Fails closed when ``name`` is bound to a host namespace; returns its inode."""
    number = inode(name)
    if number in host_inodes():
        where = path(name)
        raise ConflictError(
            f"{where} is bound to the host's own network namespace (net:[{number}]); "
            f"pathtrace changed nothing. Remove that binding (umount {where}; rm {where}) "
            "and try again"
        )
    return number


def _share_run_dir() -> None:
    """/run/netns as iproute2 makes it: a shared mount, so bindings show everywhere."""
    os.makedirs(NETNS_DIR, exist_ok=True)
    target = NETNS_DIR.encode()
    if _libc.mount(b"", target, b"none", _MS_SHARED | _MS_REC, None) == 0:
        return
    # Not a mount point yet: bind it onto itself, then share it.
    _check(_libc.mount(target, target, b"none", _MS_BIND | _MS_REC, None), "mount", NETNS_DIR)
    _check(_libc.mount(b"", target, b"none", _MS_SHARED | _MS_REC, None), "mount", NETNS_DIR)


def create(name: str) -> IPRoute:
    """Creates namespace ``name`` and returns a netlink socket bound to it.

    The calling thread unshares into a new namespace, binds *its own* namespace
    file to /run/netns/NAME and goes back; the check after the bind proves the
    file names a namespace that is neither the thread's old one nor the host's.
    """
    _share_run_dir()
    where = path(name)
    os.close(os.open(where, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0))
    back = os.open(THREAD_NS, os.O_RDONLY)
    bound = False
    try:
        forbidden = host_inodes()
        _check(_libc.unshare(_CLONE_NEWNET), "unshare", where)
        try:
            _check(
                _libc.mount(THREAD_NS.encode(), where.encode(), b"none", _MS_BIND, None),
                "mount",
                where,
            )
            bound = True
            made = inode(name)
            if made in forbidden or made != current_inode():
                raise ConflictError(f"{where}: the new namespace is not the one made; stopped")
            return _iproute_here()
        finally:
            _setns(back, "the thread's own namespace")
    except BaseException:
        if bound:
            _libc.umount2(where.encode(), _MNT_DETACH)
        os.unlink(where)
        raise
    finally:
        os.close(back)


def remove(name: str) -> None:
    where = path(name)
    if not os.path.exists(where):
        return
    if _libc.umount2(where.encode(), _MNT_DETACH) != 0 and ctypes.get_errno() != errno.EINVAL:
        _check(-1, "umount", where)  # EINVAL: not mounted (a half-made one)
    os.unlink(where)


@contextmanager
def entered(name: str) -> Iterator[None]:
    """The calling thread inside namespace ``name`` for the duration of the block.

    Never creates a namespace: a missing one raises FileNotFoundError.
    """
    target = os.open(path(name), os.O_RDONLY)
    back = os.open(THREAD_NS, os.O_RDONLY)
    try:
        _setns(target, path(name))
        try:
            if current_inode() != os.fstat(target).st_ino:
                raise OSError(errno.EINVAL, "setns did not move this thread", path(name))
            yield
        finally:
            _setns(back, "the thread's own namespace")
    finally:
        os.close(target)
        os.close(back)


def _iproute_here() -> IPRoute:
    _pyroute2.install()
    from pyroute2.iproute.linux import IPRoute

    return IPRoute()


def sock_diag(name: str) -> SockDiag:
    """A sock_diag netlink socket bound to namespace ``name`` (the caller closes it)."""
    with entered(name):
        return SockDiag()


def rtnl(name: str) -> Rtnl:
    """A plain rtnetlink socket bound to namespace ``name``, for reading (the caller
    closes it)."""
    with entered(name):
        return Rtnl()


def iproute(name: str) -> IPRoute:
    """A netlink socket bound to namespace ``name`` (the caller closes it)."""
    with entered(name):
        return _iproute_here()


def read_sysctl(name: str, key: str) -> str | None:
    """A net.* sysctl of namespace ``name``; None if the kernel has no such key."""
    with entered(name):
        try:
            with open(_sysctl_path(key)) as f:
                return f.read().strip()
        except FileNotFoundError:
            return None


def read_sysctls(name: str, keys: list[str]) -> dict[str, str]:
    """Several net.* sysctls of namespace ``name`` at once (one switch); missing keys left out."""
    found = {}
    with entered(name):
        for key in keys:
            try:
                with open(_sysctl_path(key)) as f:
                    found[key] = f.read().strip()
            except (FileNotFoundError, NotADirectoryError):
                pass
    return found


def write_sysctl(name: str, key: str, value: str) -> None:
    # /proc/sys/net resolves against the opening thread's namespace, so this
    # writes the named namespace's copy; a name bound to the host is refused.
    require_not_host(name)
    with entered(name), open(_sysctl_path(key), "w") as f:
        f.write(value)


def is_network_namespace(where: str) -> bool:
    """Whether file ``where`` is a network namespace (asked of nsfs: NS_GET_NSTYPE)."""
    import fcntl

    try:
        fd = os.open(where, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return bool(fcntl.ioctl(fd, _NS_GET_NSTYPE) == _CLONE_NEWNET)
    except OSError:  # ENOTTY: not an nsfs file at all
        return False
    finally:
        os.close(fd)


def sysctls_of_new_namespaces(keys: Sequence[str]) -> set[str]:
    """Which of ``keys`` a new network namespace has (net.core.bpf_jit_enable, say,
    is the host's alone). Asked of a throwaway namespace that one short-lived
    thread unshares into; nothing else sees it, and it goes with the thread."""
    found: set[str] = set()
    failure: list[OSError] = []

    def look() -> None:
        if _libc.unshare(_CLONE_NEWNET) != 0:
            failure.append(OSError(ctypes.get_errno(), "unshare"))
            return
        found.update(k for k in keys if os.path.isfile(_sysctl_path(k)))

    thread = threading.Thread(target=look, name="pathtrace-sysctls")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return found


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


def namespace_names() -> dict[int, str]:
    """Inode -> name of every named namespace, and of the root namespace."""
    found = {root_inode(): "root"}
    for name in names():
        try:
            found[os.stat(path(name)).st_ino] = name
        except OSError:
            continue
    return found
