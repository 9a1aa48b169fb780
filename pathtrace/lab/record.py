"""What pathtrace knows it made: the lab record and the mark on each namespace.

Two things survive a crash or SIGKILL of pathtrace, and together they let the
next command tell our namespaces from anyone else's:

* the *record*, ``/run/pathtrace/labs/PREFIX.json``, written before the first
  namespace is created: the topology text and the namespaces it will make;
* the *mark*, the alias of the namespace's ``lo`` (``pathtrace lab PREFIX``),
  set right after the namespace is made.

Both live in the kernel or on tmpfs, so they vanish on reboot, with the lab.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from pathtrace.errors import ConflictError
from pathtrace.system import netns

RECORD_DIR = Path("/run/pathtrace/labs")
MARK = "pathtrace lab "


@dataclass(frozen=True)
class LabRecord:
    prefix: str
    source: str
    topology_text: str
    namespaces: tuple[str, ...]


def record_path(prefix: str) -> Path:
    return RECORD_DIR / f"{prefix}.json"


def read_record(prefix: str) -> LabRecord | None:
    try:
        data = json.loads(record_path(prefix).read_text())
        return LabRecord(
            data["prefix"], data["source"], data["topology"], tuple(data["namespaces"])
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_record(record: LabRecord) -> None:
    RECORD_DIR.mkdir(parents=True, exist_ok=True)
    tmp = record_path(record.prefix).with_suffix(".tmp")
    tmp.write_text(
        json.dumps(
            {
                "prefix": record.prefix,
                "source": record.source,
                "topology": record.topology_text,
                "namespaces": list(record.namespaces),
            },
            indent=1,
        )
    )
    os.replace(tmp, record_path(record.prefix))


def delete_record(prefix: str) -> None:
    record_path(prefix).unlink(missing_ok=True)


def recorded_prefixes() -> list[str]:
    try:
        return sorted(p.stem for p in RECORD_DIR.glob("*.json"))
    except OSError:
        return []


def mark_of(namespace: str) -> str | None:
    """The mark on ``namespace``; '' when unmarked, None when it cannot be entered."""
    try:
        ipr = netns.rtnl(namespace)
    except OSError:
        return None  # a half-made namespace: the file exists but is no namespace
    try:
        lo = ipr.get_links(1)  # lo is always ifindex 1
        return str(lo[0].get("ifalias") or "") if lo else ""
    finally:
        ipr.close()


def set_mark(ipr: Any, prefix: str) -> None:
    """Marks the namespace of netlink socket ``ipr`` (and brings its lo up)."""
    ipr.link("set", index=1, ifalias=MARK + prefix, state="up")  # lo is always ifindex 1


def is_ours(namespace: str, prefix: str, record: LabRecord | None) -> bool:
    mark = mark_of(namespace)
    if mark == MARK + prefix:
        return True
    # Made by an `up` that died before marking it: the record names it.
    return record is not None and namespace in record.namespaces and not mark


def require_separate(namespaces: Iterable[str]) -> dict[str, int]:
    """Fails closed unless each existing namespace is apart from the host and the others.

    Checked before the lab changes anything: a namespace file bound to the
    host's namespace (or two lab nodes bound to one namespace) would turn "build
    the lab" into "rewire the machine". Returns each existing namespace's inode.
    """
    seen: dict[int, str] = {}
    for ns in namespaces:
        if not netns.exists(ns):
            continue
        number = netns.require_not_host(ns)
        if number in seen:
            raise ConflictError(
                f"{netns.path(ns)} and {netns.path(seen[number])} are one namespace "
                f"(net:[{number}]); pathtrace changed nothing. Run `pathtrace lab down` "
                "(or remove those files) and try again"
            )
        seen[number] = ns
    return {ns: number for number, ns in seen.items()}


def require_marked(namespaces: Iterable[str], prefix: str) -> None:
    """Every namespace apart (above) and carrying this lab's mark: safe to change."""
    wanted = list(namespaces)
    require_separate(wanted)
    for ns in wanted:
        if mark_of(ns) != MARK + prefix:
            unmarked(ns, prefix)


def unmarked(namespace: str, prefix: str) -> NoReturn:
    raise ConflictError(
        f"namespace {namespace} does not carry the mark of lab {prefix!r}; "
        "pathtrace changes nothing in it. Run `pathtrace lab up` first"
    )
