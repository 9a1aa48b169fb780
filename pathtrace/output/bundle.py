"""Bundles: a run saved to a folder, to study later, elsewhere, without root.

    bundle.json      format, version, what is inside
    trace.pcapng     every captured packet; an interface block per node/interface;
                     a comment on each packet naming its hop (translation, drop)
    events.jsonl     the events (first line: format and version)
    captures.jsonl   each captured packet's namespace, interface, direction, time
    report.txt, report.json, report.md
    facts.json       the run: options, kernel, hooks, versions, lost events, capture
    state.json       each namespace at the time: links, routes, neighbours,
                     sysctls, ruleset, and the conntrack entries of the run
    topology.toml    the lab's description (when the run was on a lab)

``load`` rebuilds the run from these files through the same code as a live
run, so ``bundle show`` prints what the run printed.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from ipaddress import ip_address
from pathlib import Path
from typing import Any

from pathtrace import __version__
from pathtrace.analyze.probes import trace_probes
from pathtrace.errors import BundleError, UsageError
from pathtrace.model.capture import Captured
from pathtrace.model.conntrack import ConntrackEntry
from pathtrace.model.event import EVENT_FORMAT_VERSION, Event
from pathtrace.model.options import RunOptions
from pathtrace.model.result import RunResult
from pathtrace.model.state import NamespaceState
from pathtrace.output import pcapng
from pathtrace.output.json_report import to_json
from pathtrace.output.markdown import markdown
from pathtrace.output.text import render
from pathtrace.system.safe_files import PARTIAL, BundleFolder, read_member, save_failed

FORMAT = "pathtrace.bundle"
WATCH_FORMAT = "pathtrace.watch"  # a watch's bundle (output/watch_bundle.py)
WATCH_READS = (1,)
_LAB_FIX = "pathtrace lab fix"  # what bundles of lab runs said before they saved it
# 2: report.json's verdicts carry a cause code and object references. A bundle is
# judged again from its events and state when read, so version 1 reads the same.
# 3: each namespace's state keeps the ruleset as nft's JSON too (ruleset_json); a
# bundle without it is modelled from the ruleset's words.
VERSION = 3
READS = (1, 2, 3)
DEFAULT_DIR = Path("captures")


def default_name(options: RunOptions, when: datetime | None = None) -> str:
    when = when or datetime.now(UTC)
    # No colons (an IPv6 address's): a folder name that scp, Windows and make take.
    target = f"{options.target}".replace(":", "-") + (f"_{options.port}" if options.port else "")
    return f"{when.strftime('%Y%m%dT%H%M%S')}Z-{options.kind}-{target}"


def destination(
    options: RunOptions, directory: Path | None = None, root: Path = DEFAULT_DIR
) -> BundleFolder:
    """Where a run's bundle will go, checked (and made ready) before the run.

    ``directory`` is the bundle's own folder; by default a new one under
    ``root`` named by the time and the probe (``-2``, ``-3``, ... when taken).
    """
    return new_folder(default_name(options), directory, root)


def new_folder(name: str, directory: Path | None, root: Path) -> BundleFolder:
    """``directory``, or a new folder ``name`` under ``root`` (``-2``, ``-3``, ...
    when taken), made ready for a save."""
    if directory is not None:
        return BundleFolder(str(directory)).prepare()
    base = str(root / name)
    for n in range(1, 1000):
        path = base if n == 1 else f"{base}-{n}"
        if not os.path.lexists(path):
            try:
                return BundleFolder(path).prepare()
            except UsageError:
                if not os.path.lexists(path):
                    raise  # not the name being taken meanwhile: a real refusal
    raise UsageError(f"--save: {base}-* are all taken; name a folder")


def save(
    result: RunResult,
    directory: Path | BundleFolder | None = None,
    topology_text: str | None = None,
) -> Path:
    """Writes the bundle; it is complete under its name, or absent (SaveError)."""
    folder = (
        directory if isinstance(directory, BundleFolder) else destination(result.options, directory)
    )
    return commit(folder, lambda f: _write(f, result, topology_text))


def commit(folder: BundleFolder, write: Callable[[BundleFolder], None]) -> Path:
    """``write`` into the folder, then the folder under its name; or nothing at all
    (SaveError), whatever stopped it."""
    try:
        write(folder)
        return Path(folder.commit())
    except OSError as error:
        folder.abandon()
        raise save_failed(folder.path, error) from None
    except BaseException:
        folder.abandon()
        raise


def _write(folder: BundleFolder, result: RunResult, topology_text: str | None) -> None:
    with folder.create("trace.pcapng") as f:
        pcapng.write(f, result)
    write_events(folder, result.events, result.captures)
    text = io.StringIO()
    render(result, text, width=100)
    folder.write("report.txt", text.getvalue().encode())
    with folder.create("report.json") as f, io.TextIOWrapper(f, encoding="utf-8") as text_out:
        json.dump(to_json(result), text_out, indent=1)
    folder.write("report.md", markdown(result).encode())
    folder.write("facts.json", json.dumps(_facts(result), indent=1).encode())
    state = {ns: s.to_json() for ns, s in result.states.items()}
    folder.write(
        "state.json",
        json.dumps(
            {
                "namespaces": state,
                "conntrack": {
                    ns: [e.to_json() for e in found] for ns, found in result.conntrack.items()
                },
            },
            indent=1,
        ).encode(),
    )
    if topology_text:
        folder.write("topology.toml", topology_text.encode())
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "created": datetime.now(UTC).isoformat(),
        "pathtrace": __version__,
        "files": folder.files,
    }
    folder.write("bundle.json", json.dumps(manifest, indent=1).encode())


def write_events(folder: BundleFolder, events: list[Event], captures: list[Captured]) -> None:
    """events.jsonl (a header line, then an event a line) and captures.jsonl (each
    captured packet's place and time): a run's and a watch's alike."""
    with folder.create("events.jsonl") as f:
        header = {"format": "pathtrace.events", "version": EVENT_FORMAT_VERSION}
        f.write((json.dumps(header) + "\n").encode())
        for event in events:
            f.write((json.dumps(event.to_json()) + "\n").encode())
    with folder.create("captures.jsonl") as f:
        for c in captures:
            line = {
                "namespace": c.namespace,
                "ifname": c.ifname,
                "direction": c.direction,
                "time_ns": c.time_ns,
                "wirelen": c.wirelen,
                "length": len(c.data),
            }
            f.write((json.dumps(line) + "\n").encode())


def _facts(result: RunResult) -> dict[str, Any]:
    o = result.options
    return {
        "run": f"{result.run_id:08x}",
        "started": result.started,
        "kernel": result.kernel,
        "options": {**asdict(o), "target": str(o.target)},
        "source_namespace": result.source_namespace,
        "namespaces": result.namespaces,
        "hooks": result.hooks,
        "lost_events": result.lost,
        "send_errors": {str(k): v for k, v in result.send_errors.items()},
        "fragmented": {str(k): list(v) for k, v in result.fragmented.items()},
        "restore": result.restore,
        "interrupted": result.interrupted,
        "versions": result.versions,
        "clock": "events: CLOCK_TAI converted to UTC; captures: kernel SO_TIMESTAMPNS (UTC)",
        "capture": {
            "mode": o.capture,
            "interfaces": result.capture_interfaces,
            "on": [f"{ns}\t{ifname}" for ns, ifname in result.capture_on or []]
            if result.capture_on is not None
            else None,
            "packets": len(result.captures),
            "dropped": result.capture_drops,
        },
    }


# --- reading -------------------------------------------------------------------
# A bundle is untrusted input (anyone may hand one over): only regular files are
# read, each up to its limit, and whatever does not parse as pathtrace wrote it
# is one line and exit 8. The limits leave room for -c 1000 with full capture.
MiB = 1 << 20
LIMITS = {
    "bundle.json": 1 * MiB,
    "facts.json": 16 * MiB,
    "state.json": 64 * MiB,
    "events.jsonl": 128 * MiB,
    "captures.jsonl": 64 * MiB,
    "trace.pcapng": 256 * MiB,
    "report.json": 64 * MiB,
    "report.txt": 64 * MiB,
    "report.md": 64 * MiB,
    "topology.toml": 1 * MiB,
}
# What a bundle's values may be at most, checked before they are used.
_MAX_EVENTS = 1_000_000


class _Folder:
    """A bundle's folder, opened once; its files read by name, within their limits."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except NotADirectoryError:
            raise BundleError(f"{path}: not a folder (a bundle is a folder)") from None
        except FileNotFoundError:
            raise BundleError(f"{path}: no such bundle folder") from None

    def read(self, name: str) -> bytes:
        try:
            return read_member(self.fd, name, LIMITS[name], str(self.path))
        except FileNotFoundError:
            raise BundleError(
                f"{self.path}: not a complete pathtrace bundle ({name} is missing)"
            ) from None

    def has(self, name: str) -> bool:
        try:
            os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except OSError:
            return False
        return True

    def json(self, name: str) -> Any:
        return _parse_json(self.read(name), f"{self.path}/{name}")

    def close(self) -> None:
        os.close(self.fd)


def _parse_json(data: bytes, where: str) -> Any:
    try:
        return json.loads(data)
    except RecursionError:
        raise BundleError(f"{where}: corrupt (nested too deeply)") from None
    except (ValueError, UnicodeDecodeError):
        raise BundleError(f"{where}: corrupt (not JSON)") from None


def _expect(value: Any, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(value, kind) or isinstance(value, bool) and kind in (int, float):
        raise BundleError(
            f"{where}: corrupt ({type(value).__name__} where pathtrace wrote another)"
        )
    return value


def load(path: Path) -> tuple[RunResult, dict[str, Any]]:
    """The run saved in ``path``, rebuilt; and its facts."""
    try:
        folder = _Folder(path)
    except PermissionError:
        raise BundleError(f"{path}: cannot read it: permission denied") from None
    except OSError as error:
        raise BundleError(f"{path}: cannot read it: {error.strerror}") from None
    try:
        return _load(folder)
    except PermissionError as error:
        raise BundleError(f"{path}: cannot read {error.filename}: permission denied") from None
    except OSError as error:
        raise BundleError(f"{path}: cannot read it: {error.strerror}") from None
    finally:
        folder.close()


def manifest(folder: _Folder) -> dict[str, Any]:
    """The bundle's manifest, checked: a pathtrace bundle of a version this reads."""
    found = folder.json("bundle.json")
    if isinstance(found, dict) and found.get("format") == WATCH_FORMAT:
        raise BundleError(
            f"{folder.path}: a watch's bundle, not a run's: `pathtrace bundle show "
            f"{folder.path}` prints its report"
        )
    if not isinstance(found, dict) or found.get("format") != FORMAT:
        raise BundleError(f"{folder.path}: not a pathtrace bundle")
    if found.get("version") not in READS:
        raise BundleError(
            f"{folder.path}: bundle format version {found.get('version')!r}; this "
            f"pathtrace reads versions {', '.join(map(str, READS))}: upgrade pathtrace"
        )
    return found


def _load(folder: _Folder) -> tuple[RunResult, dict[str, Any]]:
    path = folder.path
    manifest(folder)
    facts = _expect(folder.json("facts.json"), dict, f"{path}/facts.json")
    state = _expect(folder.json("state.json"), dict, f"{path}/state.json")
    try:
        events = _read_events(folder)
        captures = _read_captures(folder)
        o = _expect(facts["options"], dict, f"{path}/facts.json options")
        options = RunOptions(**{**o, "target": ip_address(o["target"])})
        namespaces = _expect(state["namespaces"], dict, f"{path}/state.json namespaces")
        states = {ns: NamespaceState.from_json(s) for ns, s in namespaces.items()}
        capture = _expect(facts["capture"], dict, f"{path}/facts.json capture")
        versions = _expect(facts["versions"], dict, f"{path}/facts.json versions")
        conntrack = _expect(state.get("conntrack", {}), dict, f"{path}/state.json conntrack")
        result = RunResult(
            options=options,
            run_id=int(_expect(facts["run"], str, "run"), 16),
            started=_expect(facts["started"], str, "started"),
            kernel=_expect(facts["kernel"], str, "kernel"),
            version=str(versions.get("pathtrace", "?")),
            source_namespace=_expect(facts["source_namespace"], str, "source_namespace"),
            namespaces=_expect(facts["namespaces"], dict, "namespaces"),
            hooks=_expect(facts["hooks"], list, "hooks"),
            lost=_expect(facts["lost_events"], dict, "lost_events"),
            events=events,
            probes=[],
            states=states,
            send_errors={int(k): str(v) for k, v in facts.get("send_errors", {}).items()},
            fragmented={
                int(k): (int(v[0]), int(v[1])) for k, v in facts.get("fragmented", {}).items()
            },
            captures=captures,
            capture_drops=_expect(capture["dropped"], int, "capture dropped"),
            capture_interfaces=_expect(capture["interfaces"], int, "capture interfaces"),
            conntrack={
                ns: [ConntrackEntry.from_json(x) for x in found] for ns, found in conntrack.items()
            },
            versions={str(k): str(v) for k, v in versions.items()},
            # Bundles before "restore" was saved: a lab run is one with its topology.
            restore=facts.get("restore", _LAB_FIX if folder.has("topology.toml") else None),
            interrupted=bool(facts.get("interrupted", False)),
            capture_on=_capture_on(capture.get("on"), f"{path}/facts.json capture on"),
        )
        _check_result(result, str(path))
        # Judged again by the same analysis as a live run: the same hops and verdicts.
        result.probes, result.correlation = trace_probes(
            events,
            captures if result.capture_interfaces else None,
            result.setting,
            sum(result.lost.values()),
            result.send_errors,
            result.capture_on,
        )
    except BundleError:
        raise
    except RecursionError:
        raise BundleError(f"{path}: corrupt bundle (nested too deeply)") from None
    except (
        KeyError,
        TypeError,
        ValueError,
        IndexError,
        AttributeError,
        OverflowError,
        UsageError,
    ) as error:
        raise BundleError(
            f"{path}: corrupt or truncated bundle ({type(error).__name__}: {error})"
        ) from None
    return result, facts


def _check_result(result: RunResult, where: str) -> None:
    """Types the analysis relies on, where a bundle could put others."""
    for name, value in result.namespaces.items():
        _expect(value, str, f"{where}: node of {name}")
    for hook_name, count in result.lost.items():
        _expect(count, int, f"{where}: lost events of {hook_name}")
    for hook in result.hooks:
        _expect(hook, dict, f"{where}: hook")
    if result.capture_drops < 0 or result.capture_interfaces < 0:
        raise BundleError(f"{where}: corrupt (a negative count)")


def _read_events(folder: _Folder) -> list[Event]:
    where = f"{folder.path}/events.jsonl"
    lines = folder.read("events.jsonl").splitlines()
    header = _parse_json(lines[0], where) if lines else {}
    if not isinstance(header, dict) or header.get("format") != "pathtrace.events":
        raise BundleError(f"{where}: not pathtrace events")
    if header.get("version") != EVENT_FORMAT_VERSION:
        raise BundleError(
            f"{where}: event format version {header.get('version')!r}; this "
            f"pathtrace reads {EVENT_FORMAT_VERSION}: upgrade pathtrace"
        )
    if len(lines) > _MAX_EVENTS:
        raise BundleError(f"{where}: more than {_MAX_EVENTS} events")
    return [
        Event.from_json(_expect(_parse_json(line, where), dict, where))
        for line in lines[1:]
        if line.strip()
    ]


def _capture_on(value: Any, where: str) -> list[tuple[str, str]] | None:
    """The captured interfaces, as "namespace<TAB>interface" (None before 2026-11-29)."""
    if value is None:
        return None
    found = []
    for item in _expect(value, list, where):
        namespace, tab, ifname = _expect(item, str, where).partition("\t")
        if not tab:
            raise BundleError(f"{where}: {item!r} is not namespace<TAB>interface")
        found.append((namespace, ifname))
    return found


def _read_captures(folder: _Folder) -> list[Captured]:
    """Capture metadata with the packets' bytes from trace.pcapng (tags need them)."""
    if not folder.has("captures.jsonl"):
        return []
    where = f"{folder.path}/captures.jsonl"
    meta = [
        _expect(_parse_json(line, where), dict, where)
        for line in folder.read("captures.jsonl").splitlines()
        if line.strip()
    ]
    frames = pcapng.read_frames(folder.read("trace.pcapng"), f"{folder.path}/trace.pcapng")
    if len(frames) != len(meta):
        raise BundleError(
            f"{folder.path}: trace.pcapng holds {len(frames)} packets, "
            f"captures.jsonl {len(meta)}: truncated or corrupt"
        )
    return [
        Captured(
            _expect(m["namespace"], str, where),
            _expect(m["ifname"], str, where),
            _expect(m["direction"], str, where),
            _expect(m["time_ns"], int, where),
            _expect(m["wirelen"], int, where),
            frame,
        )
        for m, frame in zip(meta, frames, strict=True)
    ]


def watch_report(path: Path, form: str = "text") -> tuple[str, bool] | None:
    """A watch's bundle's report as it was saved (``form``: text, json, markdown),
    and whether every flow was answered or delivered; None for a run's bundle."""
    folder = _Folder(path)
    try:
        found = folder.json("bundle.json")
        if not isinstance(found, dict) or found.get("format") != WATCH_FORMAT:
            return None
        if found.get("version") not in WATCH_READS:
            raise BundleError(
                f"{path}: watch bundle version {found.get('version')!r}; this pathtrace "
                f"reads {', '.join(map(str, WATCH_READS))}: upgrade pathtrace"
            )
        report = _expect(folder.json("report.json"), dict, f"{path}/report.json")
        flows = _expect(report.get("flows", []), list, f"{path}/report.json flows")
        failed = [f for f in flows if f.get("verdict", {}).get("outcome") in _FAILED]
        name = {"json": "report.json", "markdown": "report.md"}.get(form, "report.txt")
        return folder.read(name).decode(errors="replace"), not failed
    finally:
        folder.close()


_FAILED = ("dropped", "lost", "rejected")


def summary(path: Path) -> str:
    """One line for ``bundle list``: when, what, and the first probe's verdict."""
    folder = _Folder(path)
    try:
        found = folder.json("bundle.json")
        if isinstance(found, dict) and found.get("format") == WATCH_FORMAT:
            report = _expect(folder.json("report.json"), dict, f"{path}/report.json")
            flows = report.get("flows") or []
            failed = sum(
                isinstance(f, dict) and f.get("verdict", {}).get("outcome") in _FAILED
                for f in flows
            )
            return (
                f"{path}  {report.get('started')}  watch {report.get('expression')!r}: "
                f"{len(flows)} flows, {failed} failed"
            )
        manifest(folder)
        facts = _expect(folder.json("facts.json"), dict, f"{path}/facts.json")
        report = _expect(folder.json("report.json"), dict, f"{path}/report.json")
        try:
            verdict = str(report["probes"][0]["verdict"]["summary"])
            o = facts["options"]
            what = f"{o['kind']} {o['target']}" + (f":{o['port']}" if o["port"] else "")
            return f"{path}  {facts['started']}  {what} from {o['source']}: {verdict}"
        except (KeyError, IndexError, TypeError):
            raise BundleError(f"{path}: corrupt report or facts") from None
    finally:
        folder.close()


def find(root: Path = DEFAULT_DIR) -> list[Path]:
    """Folders under ``root`` that hold a bundle manifest (newest first).

    Symlinked folders are not entered, and half-written saves (hidden
    ``.NAME.partial-PID`` folders) are not bundles.
    """
    if not root.is_dir():
        return []
    found = []
    for manifest_path in root.rglob("bundle.json"):
        folder = manifest_path.parent
        if any(PARTIAL in part for part in folder.relative_to(root).parts):
            continue
        try:
            info = manifest_path.lstat()
        except OSError:
            continue
        found.append((info.st_mtime, folder))
    return [p for _, p in sorted(found, key=lambda t: t[0], reverse=True)]
