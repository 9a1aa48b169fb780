"""The state fuzzer with a fixed seed: no broken probe blamed on something else,
and what is named is mostly healed by the fix as printed. (The full sweep is run
by hand: `python -m tests.faults.fuzz --seed N --count M`; figures in README.)"""

from __future__ import annotations

import pytest

from tests.faults.fuzz import fuzz, summary

pytestmark = pytest.mark.root


def test_a_fixed_seed_blames_nothing_wrongly() -> None:
    scored = fuzz(seed=69, count=8)
    print(summary(scored))
    assert len(scored) >= 10  # the seed breaks probes of several kinds
    assert len({s.mutation.kind for s in scored}) >= 5
    wrong = [f"{s.mutation.label}: {s.verdict.cause}" for s in scored if s.mark == "wrong"]
    assert not wrong, wrong
    named = [s for s in scored if s.mark == "named"]
    assert len(named) >= 0.8 * len(scored)
    assert sum(bool(s.healed) for s in named) >= 0.75 * len(named)
