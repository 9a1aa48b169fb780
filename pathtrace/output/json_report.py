"""The run as JSON: a documented, versioned form (schema: pathtrace/output/schema.json)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from pathtrace.model.result import RunResult

SCHEMA = "pathtrace.run/1"


def capture_summary(result: RunResult) -> dict[str, Any]:
    c = result.correlation
    events, captures = result.events, result.captures

    def event_text(n: int) -> str:
        e = events[n]
        return f"{e.hook} {e.where} probe {e.index + 1} {e.tag}"

    def capture_text(n: int) -> str:
        p = captures[n]
        return f"{p.namespace}/{p.ifname} {p.direction} {p.wirelen} bytes"

    return {
        "mode": result.options.capture,
        "interfaces": result.capture_interfaces,
        "packets": len(captures),
        "dropped": result.capture_drops,
        "events_without_capture": [event_text(n) for n in c.events_without_capture] if c else [],
        "captures_without_event": [capture_text(n) for n in c.captures_without_event] if c else [],
    }


def to_json(result: RunResult, with_events: bool = True) -> dict[str, Any]:
    o = result.options
    data: dict[str, Any] = {
        "schema": SCHEMA,
        "run": {
            "id": f"{result.run_id:08x}",
            "started": result.started,
            "kernel": result.kernel,
            "pathtrace": result.version,
            "probe": {
                "kind": o.kind,
                "target": str(o.target),
                "port": o.port,
                "source": o.source,
                "count": o.count,
                "interval": o.interval,
                "size": o.size,
                "ttl": o.ttl,
                "dont_fragment": o.dont_fragment,
                **({"query": o.query} if o.kind == "dns" else {}),
            },
            "source_namespace": result.source_namespace,
        },
        "hooks": result.hooks,
        "lost_events": result.lost,
        "capture": capture_summary(result),
        "namespaces": result.namespaces,
        "notes": result.notes,
        "warnings": result.degraded,
        "interrupted": result.interrupted,
        "summary": {
            "count": len(result.probes),
            "answered": result.answered,
            "delivered": result.delivered,
        },
        "probes": [asdict(p) for p in result.probes],
    }
    if with_events:
        data["events"] = [e.to_json() for e in result.events]
    # Tuples and other Python shapes become what JSON has (lists, strings).
    native: dict[str, Any] = _native(data)
    return native


def _native(value: Any) -> Any:
    """Tuples become lists, in place where it can (a copy of the whole report would
    double what -c 1000 holds)."""
    if isinstance(value, dict):
        for key, item in value.items():
            value[key] = _native(item)
        return value
    if isinstance(value, list | tuple):
        items = value if isinstance(value, list) else list(value)
        for i, item in enumerate(items):
            items[i] = _native(item)
        return items
    return value
