"""Findings as data: the cause vocabulary is closed, the schema and the code agree,
and older bundles (format 1) come back with codes and objects."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest

from pathtrace.analyze.routing import REFUSING
from pathtrace.model.cause import CAUSES, OBJECT_KINDS, Finding, parse_ref, ref
from pathtrace.output import bundle
from pathtrace.output.json_report import to_json

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "pathtrace" / "output" / "schema.json").read_text())
EXAMPLES = ROOT / "captures" / "examples"
_AREAS = "|".join({c.split(".")[0] for c in CAUSES})
_CODE = re.compile(rf'"((?:{_AREAS})\.[a-z_0-9]+)"')


def test_every_code_the_analysis_names_is_in_the_vocabulary() -> None:
    used = {
        m.group(1)
        for path in (ROOT / "pathtrace").rglob("*.py")
        for m in _CODE.finditer(path.read_text())
        if not path.name == "cause.py"
    }
    assert used and used <= set(CAUSES), used - set(CAUSES)
    # Codes made from a route lookup's end: f"route.{lookup.kind}".
    assert {f"route.{kind}" for kind in REFUSING} <= set(CAUSES)


def test_the_schema_lists_the_vocabulary() -> None:
    verdict = SCHEMA["$defs"]["probe"]["properties"]["verdict"]["properties"]
    assert verdict["code"]["oneOf"][1]["enum"] == list(CAUSES)
    pattern = re.compile(verdict["objects"]["items"]["pattern"])
    assert all(pattern.match(ref(kind, "host", "x")) for kind in OBJECT_KINDS)


def test_a_code_outside_the_vocabulary_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown cause code"):
        Finding("route.missing", (), "no route", None)
    with pytest.raises(ValueError, match="unknown object kind"):
        ref("chain", "host", "FORWARD")
    assert parse_ref("nf:host/ip filter FORWARD handle 7") == (
        "nf",
        "host",
        "ip filter FORWARD handle 7",
    )


@pytest.mark.parametrize("name", ["ping-answered", "tcp-dnat", "forward-drop", "ping6-nat66"])
def test_example_bundles_read_and_their_reports_validate(name: str) -> None:
    """Bundles of format 1 are judged again when read: their JSON has codes too."""
    result, _ = bundle.load(EXAMPLES / name)
    data = to_json(result)
    jsonschema.validate(data, SCHEMA, format_checker=jsonschema.FormatChecker())
    verdicts = [p["verdict"] for p in data["probes"]]
    if name == "forward-drop":
        assert verdicts[0]["code"] == "nf.drop"
        kind, node, name_ = parse_ref(verdicts[0]["objects"][0])
        assert (kind, node) == ("nf", "host") and "FORWARD handle" in name_
    else:
        assert all(v["code"] is None and v["objects"] == [] for v in verdicts)
