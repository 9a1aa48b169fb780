"""Files written as root into places other users can reach, and read from places they made.

pathtrace runs as root, and a save path or a bundle may be in a folder another
user controls. So every path component pathtrace walks is opened relative to
its parent's file descriptor without following a symlink (a symlink is
followed only when root or the invoking user owns it, as the kernel's
``protected_symlinks`` would for them); a bundle is built in a fresh hidden
folder and renamed into place (complete or absent); every file is created
with ``O_CREAT|O_EXCL|O_NOFOLLOW``. Reading is the mirror image: only regular
files, opened without following links, never more bytes than a limit.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

from pathtrace.errors import BundleError, SaveError, UsageError

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_MAX_LINKS = 40  # as the kernel's own limit on symlinks in one path
_RENAME_NOREPLACE = 1
PARTIAL = ".partial-"  # a bundle being written: ".NAME.partial-PID"

_libc = ctypes.CDLL(None, use_errno=True)


def trusted_uids() -> set[int]:
    """Root and the user who ran pathtrace (through sudo, the one sudo names)."""
    uids = {0, os.getuid()}
    sudo = os.environ.get("SUDO_UID", "")
    if sudo.isdigit():
        uids.add(int(sudo))
    return uids


def open_directory(path: str, create: bool = False) -> int:
    """A descriptor of directory ``path``, walked one component at a time.

    A symlink on the way is followed only when a trusted user owns it; a
    missing component is made (mode 0755) when ``create``. Raises OSError
    (ELOOP for a foreign symlink, ENOTDIR for a file in the way).
    """
    fd = os.open("/" if path.startswith("/") else ".", _DIR_FLAGS)
    parts = deque(path.split("/"))
    links = 0
    try:
        while parts:
            part = parts.popleft()
            if part in ("", "."):
                continue
            try:
                child = os.open(part, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                try:
                    os.mkdir(part, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass  # made meanwhile: opened below, without following it
                child = os.open(part, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
            except OSError as error:
                # A symlink opened with O_NOFOLLOW|O_DIRECTORY: ELOOP or ENOTDIR.
                if error.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                info = os.stat(part, dir_fd=fd, follow_symlinks=False)
                if not stat.S_ISLNK(info.st_mode):
                    raise
                links += 1
                if info.st_uid not in trusted_uids() or links > _MAX_LINKS:
                    raise OSError(
                        errno.ELOOP, f"{part} is a symlink owned by uid {info.st_uid}"
                    ) from None
                target = os.readlink(part, dir_fd=fd)
                parts.extendleft(reversed(target.split("/")))
                if target.startswith("/"):
                    os.close(fd)
                    fd = os.open("/", _DIR_FLAGS)
                continue
            os.close(fd)
            fd = child
        return fd
    except BaseException:
        os.close(fd)
        raise


def _unsafe(info: os.stat_result) -> str | None:
    """Why a directory is no place for root to write in, or None."""
    if info.st_uid not in trusted_uids():
        return f"it belongs to uid {info.st_uid}, not to root or you"
    if info.st_mode & 0o022 and not info.st_mode & stat.S_ISVTX:
        return "others can write in it"
    return None


class BundleFolder:
    """Where a bundle goes: checked before the run, written after it.

    ``prepare`` refuses (one line, exit 2) a destination pathtrace cannot
    write safely: a parent folder of another user or writable by others (not
    sticky), an existing destination that is not an empty folder of root or
    the invoking user, a read-only file system. It makes the hidden folder
    the bundle is written into, so the run cannot fail to save for a reason
    knowable now.
    """

    def __init__(self, path: str) -> None:
        self.path = path.rstrip("/") or path
        parent, _, name = self.path.rpartition("/")
        if "/" not in self.path:
            parent = "."
        elif not parent:
            parent = "/"
        if name in ("", ".", ".."):
            raise UsageError(f"--save {path}: name a new folder for the bundle")
        self.name = name
        self.parent = parent
        self._parent_fd = -1
        self._dir_fd = -1
        self._partial = f".{name}{PARTIAL}{os.getpid()}"
        self._files: list[str] = []

    def prepare(self) -> BundleFolder:
        where = f"--save {self.path}"
        try:
            self._parent_fd = open_directory(self.parent, create=True)
        except OSError as error:
            raise UsageError(f"{where}: cannot use {self.parent}: {_reason(error)}") from None
        try:
            self._check_parent(where)
            self._check_existing(where)
            _remove_stale(self._parent_fd, self.name)
            try:
                os.mkdir(self._partial, 0o755, dir_fd=self._parent_fd)
                self._dir_fd = os.open(
                    self._partial, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=self._parent_fd
                )
            except OSError as error:
                raise UsageError(
                    f"{where}: cannot write in {self.parent}: {_reason(error)}"
                ) from None
        except BaseException:
            self.abandon()
            raise
        return self

    def _check_parent(self, where: str) -> None:
        why = _unsafe(os.fstat(self._parent_fd))
        if why:
            raise UsageError(
                f"{where}: {self.parent} is not a safe place for root to write ({why})"
            )
        if os.fstatvfs(self._parent_fd).f_flag & os.ST_RDONLY:
            raise UsageError(f"{where}: {self.parent} is on a read-only file system")

    def _check_existing(self, where: str) -> None:
        try:
            info = os.stat(self.name, dir_fd=self._parent_fd, follow_symlinks=False)
        except FileNotFoundError:
            return
        problem = None
        if not stat.S_ISDIR(info.st_mode):
            problem = "it exists and is not a folder"
        else:
            problem = _unsafe(info)
            if problem is None:
                fd = os.open(self.name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=self._parent_fd)
                try:
                    if os.listdir(fd):
                        problem = "it exists and is not empty"
                finally:
                    os.close(fd)
        if problem:
            raise UsageError(f"{where}: {problem}; name a new folder")

    @contextmanager
    def create(self, name: str) -> Iterator[IO[bytes]]:
        """A new file of the bundle, opened for writing (never an existing one)."""
        fd = os.open(name, _NEW_FILE, 0o644, dir_fd=self._dir_fd)
        self._files.append(name)
        with os.fdopen(fd, "wb") as f:
            yield f

    def write(self, name: str, data: bytes) -> None:
        with self.create(name) as f:
            f.write(data)

    @property
    def files(self) -> list[str]:
        return sorted(self._files)

    def commit(self) -> str:
        """Renames the finished bundle into place; returns its path."""
        os.fsync(self._dir_fd)
        try:
            os.rmdir(self.name, dir_fd=self._parent_fd)  # an empty folder checked in prepare
        except FileNotFoundError:
            pass
        result = _libc.renameat2(
            self._parent_fd,
            self._partial.encode(),
            self._parent_fd,
            self.name.encode(),
            _RENAME_NOREPLACE,
        )
        if result != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"cannot put the bundle in place: {os.strerror(err)}")
        os.close(self._dir_fd)
        self._dir_fd = -1
        os.close(self._parent_fd)
        self._parent_fd = -1
        return self.path

    def abandon(self) -> None:
        """Removes what was written (a bundle is complete or absent)."""
        if self._dir_fd >= 0:
            for name in os.listdir(self._dir_fd):
                try:
                    os.unlink(name, dir_fd=self._dir_fd)
                except OSError:
                    pass
            os.close(self._dir_fd)
            self._dir_fd = -1
            try:
                os.rmdir(self._partial, dir_fd=self._parent_fd)
            except OSError:
                pass
        if self._parent_fd >= 0:
            os.close(self._parent_fd)
            self._parent_fd = -1


def _remove_stale(parent_fd: int, name: str) -> None:
    """Hidden folders of saves whose process died (SIGKILL) before finishing."""
    prefix = f".{name}{PARTIAL}"
    for entry in os.listdir(parent_fd):
        pid = entry[len(prefix) :]
        if not entry.startswith(prefix) or not pid.isdigit() or os.path.exists(f"/proc/{pid}"):
            continue
        try:
            fd = os.open(entry, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=parent_fd)
        except OSError:
            continue
        try:
            if os.fstat(fd).st_uid not in trusted_uids():
                continue
            for child in os.listdir(fd):
                os.unlink(child, dir_fd=fd)
        except OSError:
            continue
        finally:
            os.close(fd)
        try:
            os.rmdir(entry, dir_fd=parent_fd)
        except OSError:
            pass


def _reason(error: OSError) -> str:
    if error.errno == errno.ELOOP:
        return str(error.strerror) + " (pathtrace follows no symlink of another user)"
    return str(error.strerror or error)


def save_failed(path: str, error: OSError) -> SaveError:
    return SaveError(f"could not save the bundle to {path}: {_reason(error)}; nothing was kept")


# --- reading untrusted folders ------------------------------------------------------


def read_member(folder_fd: int, name: str, limit: int, where: str) -> bytes:
    """A regular file of a folder opened by ``open_directory``, at most ``limit`` bytes.

    Bundles are untrusted: a symlink, a FIFO or a device in place of a file,
    or a file larger than its limit, is refused with one line.
    """
    try:
        fd = os.open(
            name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=folder_fd
        )
    except FileNotFoundError:
        raise
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise BundleError(f"{where}/{name} is a symlink: a bundle holds only files") from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise BundleError(f"{where}/{name} is not a regular file: a bundle holds only files")
        if info.st_size > limit:
            raise BundleError(
                f"{where}/{name} is {info.st_size} bytes, over pathtrace's limit of "
                f"{limit} for that file"
            )
        chunks = []
        left = limit + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
        if len(data) > limit:
            raise BundleError(f"{where}/{name} grew past pathtrace's limit of {limit} bytes")
        return data
    finally:
        os.close(fd)
