"""`watch --json` streams its report (watch_report.write_json): the same document
as ``to_json``, built a flow and an event at a time."""

from __future__ import annotations

import io
import json
from pathlib import Path

from pathtrace.analyze.flows import build_flows
from pathtrace.model.event import Event
from pathtrace.model.flow import WatchResult
from pathtrace.model.state import NamespaceState
from pathtrace.output.watch_report import to_json, write_json

EXAMPLE = Path(__file__).resolve().parents[2] / "captures" / "examples" / "tcp-dnat"


def _result(events: list[Event], states: dict[str, NamespaceState]) -> WatchResult:
    return WatchResult(
        expression="tcp port 8080", started="2026-12-07T00:00:00+00:00", kernel="k",
        version="v", namespaces={ns: s.node for ns, s in states.items()},
        filtered_in=["container1"], flow_limit=10, ended="duration", seconds=1.0,
        flows=build_flows(events, states) if events else [], events=events,
        stats={"filtered": 3, "matched": 1, "over_limit": 0},
    )  # fmt: skip


def test_the_streamed_report_is_the_report() -> None:
    lines = (EXAMPLE / "events.jsonl").read_text().splitlines()[1:]
    events = sorted((Event.from_json(json.loads(line)) for line in lines), key=lambda e: e.time_ns)
    saved = json.loads((EXAMPLE / "state.json").read_text())["namespaces"]
    states = {ns: NamespaceState.from_json(s) for ns, s in saved.items()}
    for result in (_result(events, states), _result([], states)):
        out = io.StringIO()
        write_json(result, out, capture={"packets": 0})
        whole = json.dumps(to_json(result) | {"capture": {"packets": 0}})
        assert json.loads(out.getvalue()) == json.loads(whole)
    assert to_json(_result(events, states))["flows"]  # the example makes flows
