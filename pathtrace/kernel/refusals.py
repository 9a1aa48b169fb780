"""What the running kernel has refused to load, remembered until the next boot.

Asking the kernel to load a probe it refuses (fentry where it is forbidden)
costs a whole object load, ~18 ms, on every run. A refusal for a lasting
reason (EPERM, EINVAL, EOPNOTSUPP, ...) holds for this boot and this build of
the object, so it is kept in /run (gone at reboot) keyed by boot id, object
path, size and mtime. Transient failures (ENOMEM, EBUSY, ...) are never kept.
`pathtrace doctor` always asks the kernel afresh.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

PATH = Path("/run/pathtrace/refusals.json")
LASTING = frozenset(
    {errno.EPERM, errno.EACCES, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOENT, errno.ESRCH, 524}
)  # 524: the kernel's ENOTSUPP


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


class Refusals:
    """This boot's refusals: (object build, mechanism) -> the kernel's answer."""

    def __init__(self, path: Path = PATH) -> None:
        self.path = path
        self.boot = boot_id()
        self._entries: dict[str, str] = {}
        self._changed = False
        try:
            data = json.loads(path.read_text())
            if isinstance(data, dict) and data.get("boot") == self.boot and self.boot:
                entries = data.get("refused", {})
                if isinstance(entries, dict):
                    self._entries = {str(k): str(v) for k, v in entries.items()}
        except (OSError, ValueError):
            pass  # none yet, or unreadable: ask the kernel

    @staticmethod
    def _key(obj: Path, via: str) -> str:
        st = obj.stat()
        return f"{obj.resolve()}:{st.st_size}:{st.st_mtime_ns}:{via}"

    def get(self, obj: Path, via: str) -> str | None:
        try:
            return self._entries.get(self._key(obj, via))
        except OSError:
            return None

    def remember(self, obj: Path, via: str, reason: str, err: int) -> None:
        if err not in LASTING or not self.boot:
            return
        try:
            self._entries[self._key(obj, via)] = reason
        except OSError:
            return
        self._changed = True

    def forget(self, obj: Path, via: str) -> None:
        """The kernel accepted it after all (asked again by the doctor)."""
        try:
            key = self._key(obj, via)
        except OSError:
            return
        if self._entries.pop(key, None) is not None:
            self._changed = True

    def save(self) -> None:
        """Writes the file if anything was learnt; a failure to write costs only speed."""
        if not self._changed:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
            tmp.write_text(json.dumps({"boot": self.boot, "refused": self._entries}, indent=1))
            tmp.replace(self.path)
        except OSError:
            return
        self._changed = False
