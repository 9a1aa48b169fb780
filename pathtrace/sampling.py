"""`watch`'s sampling: how many of the new flows a filter matches are followed.

The reader of the ring buffer keeps up with one busy flow (10,000 packets a
second, every hop an event) but not with a filter that matches everything on a
busy host. When events are lost, the watch follows 1 in N of the new flows from
then on (the probes follow the others silently, so that none is picked up again
mid-way) and doubles N while losses go on; after a calm spell it halves N again.
Every change is kept with its time and its reason, for the report: sampling is
never silent. ``--sample N`` fixes the rate instead (1: every flow, never
sampled, losses said).
"""

from __future__ import annotations

from collections.abc import Callable

from pathtrace.model.flow import SamplingStep

# How often the rate is reconsidered, the calm spell before it is lowered, and
# the most flows one followed flow may stand for.
EVERY_S = 0.5
CALM_S = 5.0
MOST = 4096


class Sampler:
    """Decides the rate from the events lost so far; ``fixed``: the user's rate."""

    def __init__(self, fixed: int | None = None) -> None:
        self.fixed = fixed
        self.every = fixed or 1
        self.steps: list[SamplingStep] = []
        if fixed is not None and fixed > 1:
            self.steps.append(SamplingStep(0.0, fixed, "--sample"))
        self._lost = 0
        self._checked = 0.0
        self._calm_since = 0.0

    def consider(self, now_s: float, lost: Callable[[], int]) -> int | None:
        """The new rate to write at ``now_s`` (seconds since arming), or None to keep
        the rate; ``lost`` reads the events lost in all (asked only when due)."""
        if self.fixed is not None or now_s - self._checked < EVERY_S:
            return None
        total = lost()
        fresh, self._lost = total - self._lost, total
        since, self._checked = now_s - self._checked, now_s
        if fresh > 0:
            self._calm_since = now_s
            if self.every >= MOST:
                return None
            self.every = min(self.every * 2, MOST)
            why = f"{fresh} events lost in the {since:.1f} s before"
        elif self.every > 1 and now_s - self._calm_since >= CALM_S:
            self._calm_since = now_s
            self.every //= 2
            why = f"no event lost for {CALM_S:.0f} s"
        else:
            return None
        self.steps.append(SamplingStep(round(now_s, 3), self.every, why))
        return self.every
