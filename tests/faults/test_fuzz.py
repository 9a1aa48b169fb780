"""The state fuzzer with fixed seeds, on the lab and on a routed path: no broken
probe blamed on something else, and what is named is mostly healed by the fix as
printed. (The full sweeps are run by hand: `python -m tests.faults.fuzz
[--topology routed] --seed N --count M`; figures in README.)"""

from __future__ import annotations

import pytest

from tests.faults.fuzz import fuzz, summary

pytestmark = pytest.mark.root


@pytest.mark.parametrize(
    "on, seed, count, broken, kinds, healed",
    [("lab", 52, 8, 8, 4, 0.75), ("routed", 3, 5, 10, 4, 0.6)],
)
def test_fixed_seeds_blame_nothing_wrongly(
    on: str, seed: int, count: int, broken: int, kinds: int, healed: float
) -> None:
    scored = fuzz(seed=seed, count=count, on=on)
    print(summary(scored))
    assert len(scored) >= broken  # the seed breaks probes of several kinds
    assert len({s.mutation.kind for s in scored}) >= kinds
    wrong = [f"{s.mutation.label}: {s.verdict.cause}" for s in scored if s.mark == "wrong"]
    assert not wrong, wrong
    named = [s for s in scored if s.mark == "named"]
    assert len(named) >= 0.8 * len(scored)
    assert sum(bool(s.healed) for s in named) >= healed * len(named)
