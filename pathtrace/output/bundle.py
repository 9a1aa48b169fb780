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
from dataclasses import asdict
from datetime import UTC, datetime
from ipaddress import ip_address
from pathlib import Path
from typing import Any

from pathtrace import __version__
from pathtrace.analyze.probes import trace_probes
from pathtrace.errors import BundleError, UsageError
from pathtrace.model.capture import Captured
from pathtrace.model.event import EVENT_FORMAT_VERSION, Event
from pathtrace.model.options import RunOptions
from pathtrace.model.result import RunResult
from pathtrace.model.state import NamespaceState
from pathtrace.output import pcapng
from pathtrace.output.json_report import to_json
from pathtrace.output.markdown import markdown
from pathtrace.output.text import render

FORMAT = "pathtrace.bundle"
_LAB_FIX = "pathtrace lab fix"  # what bundles of lab runs said before they saved it
VERSION = 1
DEFAULT_DIR = Path("captures")


def default_name(result: RunResult) -> str:
    o = result.options
    when = result.started.replace(":", "").replace("-", "").split(".")[0]
    target = f"{o.target}" + (f"_{o.port}" if o.port else "")
    return f"{when}Z-{o.kind}-{target}"


def save(
    result: RunResult, directory: Path | None = None, topology_text: str | None = None
) -> Path:
    path = directory or DEFAULT_DIR / default_name(result)
    path.mkdir(parents=True, exist_ok=True)
    pcapng.write(path / "trace.pcapng", result)
    with open(path / "events.jsonl", "w") as f:
        f.write(json.dumps({"format": "pathtrace.events", "version": EVENT_FORMAT_VERSION}) + "\n")
        for event in result.events:
            f.write(json.dumps(event.to_json()) + "\n")
    with open(path / "captures.jsonl", "w") as f:
        for c in result.captures:
            f.write(
                json.dumps(
                    {
                        "namespace": c.namespace,
                        "ifname": c.ifname,
                        "direction": c.direction,
                        "time_ns": c.time_ns,
                        "wirelen": c.wirelen,
                        "length": len(c.data),
                    }
                )
                + "\n"
            )
    text = io.StringIO()
    render(result, text, width=100)
    (path / "report.txt").write_text(text.getvalue())
    (path / "report.json").write_text(json.dumps(to_json(result), indent=1))
    (path / "report.md").write_text(markdown(result))
    (path / "facts.json").write_text(json.dumps(_facts(result), indent=1))
    state = {ns: s.to_json() for ns, s in result.states.items()}
    (path / "state.json").write_text(
        json.dumps({"namespaces": state, "conntrack": result.conntrack}, indent=1)
    )
    if topology_text:
        (path / "topology.toml").write_text(topology_text)
    files = sorted(p.name for p in path.iterdir() if p.name != "bundle.json")
    (path / "bundle.json").write_text(
        json.dumps(
            {
                "format": FORMAT,
                "version": VERSION,
                "created": datetime.now(UTC).isoformat(),
                "pathtrace": __version__,
                "files": files,
            },
            indent=1,
        )
    )
    return path


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
        "restore": result.restore,
        "versions": result.versions,
        "clock": "events: CLOCK_TAI converted to UTC; captures: kernel SO_TIMESTAMPNS (UTC)",
        "capture": {
            "mode": o.capture,
            "interfaces": result.capture_interfaces,
            "packets": len(result.captures),
            "dropped": result.capture_drops,
        },
    }


# --- reading -------------------------------------------------------------------


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise BundleError(
            f"{path.parent}: not a complete pathtrace bundle ({path.name} is missing)"
        ) from None
    except (ValueError, UnicodeDecodeError):
        raise BundleError(f"{path}: corrupt (not JSON)") from None


def load(path: Path) -> tuple[RunResult, dict[str, Any]]:
    """The run saved in ``path``, rebuilt; and its facts."""
    try:
        return _load(path)
    except PermissionError as error:
        raise BundleError(f"{path}: cannot read {error.filename}: permission denied") from None
    except OSError as error:
        raise BundleError(f"{path}: cannot read it: {error.strerror}") from None


def _load(path: Path) -> tuple[RunResult, dict[str, Any]]:
    if not path.is_dir():
        raise BundleError(f"{path}: no such bundle folder")
    manifest = _read_json(path / "bundle.json")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"{path}: not a pathtrace bundle")
    if manifest.get("version") != VERSION:
        raise BundleError(
            f"{path}: bundle format version {manifest.get('version')!r}; this "
            f"pathtrace reads version {VERSION}: upgrade pathtrace"
        )
    facts = _read_json(path / "facts.json")
    state = _read_json(path / "state.json")
    try:
        events = _read_events(path / "events.jsonl")
        captures = _read_captures(path / "captures.jsonl")
        o = facts["options"]
        options = RunOptions(**{**o, "target": ip_address(o["target"])})
        states = {ns: NamespaceState.from_json(s) for ns, s in state["namespaces"].items()}
        result = RunResult(
            options=options,
            run_id=int(facts["run"], 16),
            started=facts["started"],
            kernel=facts["kernel"],
            version=facts["versions"].get("pathtrace", "?"),
            source_namespace=facts["source_namespace"],
            namespaces=facts["namespaces"],
            hooks=facts["hooks"],
            lost=facts["lost_events"],
            events=events,
            probes=[],
            states=states,
            send_errors={int(k): v for k, v in facts.get("send_errors", {}).items()},
            captures=captures,
            capture_drops=facts["capture"]["dropped"],
            capture_interfaces=facts["capture"]["interfaces"],
            conntrack={ns: list(lines) for ns, lines in state.get("conntrack", {}).items()},
            versions=dict(facts["versions"]),
            # Bundles before "restore" was saved: a lab run is one with its topology.
            restore=facts.get("restore", _LAB_FIX if (path / "topology.toml").exists() else None),
        )
        # Judged again by the same analysis as a live run: the same hops and verdicts.
        result.probes, result.correlation = trace_probes(
            events,
            captures if result.capture_interfaces else None,
            result.setting,
            sum(result.lost.values()),
            result.send_errors,
        )
    except BundleError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, UsageError) as error:
        raise BundleError(
            f"{path}: corrupt or truncated bundle ({type(error).__name__}: {error})"
        ) from None
    return result, facts


def _read_events(path: Path) -> list[Event]:
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        raise BundleError(
            f"{path.parent}: not a complete pathtrace bundle (events.jsonl is missing)"
        ) from None
    header = json.loads(lines[0]) if lines else {}
    if header.get("format") != "pathtrace.events":
        raise BundleError(f"{path}: not pathtrace events")
    if header.get("version") != EVENT_FORMAT_VERSION:
        raise BundleError(
            f"{path}: event format version {header.get('version')!r}; this "
            f"pathtrace reads {EVENT_FORMAT_VERSION}: upgrade pathtrace"
        )
    return [Event.from_json(json.loads(line)) for line in lines[1:] if line.strip()]


def _read_captures(path: Path) -> list[Captured]:
    """Capture metadata with the packets' bytes from trace.pcapng (tags need them)."""
    if not path.exists():
        return []
    meta = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    frames = pcapng.read_frames(path.parent / "trace.pcapng")
    if len(frames) != len(meta):
        raise BundleError(
            f"{path.parent}: trace.pcapng holds {len(frames)} packets, "
            f"captures.jsonl {len(meta)}: truncated or corrupt"
        )
    return [
        Captured(m["namespace"], m["ifname"], m["direction"], m["time_ns"], m["wirelen"], frame)
        for m, frame in zip(meta, frames, strict=True)
    ]


def find(root: Path = DEFAULT_DIR) -> list[Path]:
    """Bundles under ``root`` (newest first)."""
    if not root.is_dir():
        return []
    found = [p.parent for p in root.rglob("bundle.json")]
    return sorted(found, key=lambda p: os.stat(p / "bundle.json").st_mtime, reverse=True)
