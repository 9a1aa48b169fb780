"""The benchmarks run by hand, not in CI: at least each must import (one once
imported a helper another benchmark no longer had)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

BENCHES = sorted(p.stem for p in (Path(__file__).parents[1] / "bench").glob("bench_*.py"))


@pytest.mark.parametrize("name", BENCHES)
def test_benchmark_imports(name: str) -> None:
    module = importlib.import_module(f"tests.bench.{name}")
    assert callable(module.main)
