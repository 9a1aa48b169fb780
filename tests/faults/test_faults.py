"""Every fault of the corpus, made by hand on a fresh lab: the verdict's outcome,
place, cause and fix are right, and its bundle reads back with the same verdict."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest

from pathtrace.output import bundle
from tests.faults.corpus import BY_NAME, FAULTS, NAMES, Fault
from tests.faults.harness import run_fault, score

pytestmark = pytest.mark.root


def test_the_corpus_is_wide() -> None:
    assert len(FAULTS) >= 30
    assert len({f.name for f in FAULTS}) == len(FAULTS)
    assert set(NAMES) == set(BY_NAME)  # each fault says the code and objects it expects
    assert {"link", "l2", "routing", "mtu", "netfilter", "delivery", "sysctl", "tc"} <= {
        f.layer for f in FAULTS
    }


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_fault_is_diagnosed(fault: Fault, tmp_path: Path) -> None:
    result = run_fault(fault)
    verdict = result.probes[0].verdict
    said = f"{verdict.outcome} | {verdict.where} | {verdict.cause} | {verdict.fix}"
    marks = score(fault, verdict)
    said += f" | {verdict.code} {verdict.objects}"
    assert marks.cause != "wrong", f"a wrong cause: {said}"
    assert marks.right, said
    assert verdict.evidence, f"no evidence quoted: {said}"
    saved = bundle.save(result, tmp_path / "bundle")
    again, _facts = bundle.load(saved)
    assert asdict(again.probes[0].verdict) == asdict(verdict)
