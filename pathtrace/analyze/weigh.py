"""The measured stop weighed against the predicted path.

Where the Judge could not say why (code ``unknown``) and the prediction, passing
nothing it does not model, stops in the namespace where the run stopped, the state
that stops the prediction is the cause: the verdict takes its code and objects,
and keeps the Judge's own words as evidence. Where the two part and nothing in the
state explains it, the verdict says so, with the predicted path; it never takes a
cause from a prediction that stops elsewhere.
"""

from __future__ import annotations

from pathtrace.model.prediction import Prediction
from pathtrace.model.trace import Verdict


def weigh(verdict: Verdict) -> None:
    if verdict.outcome in ("answered", "delivered") or not verdict.predicted:
        return
    stop = next((p for p in verdict.predicted if p.outcome != "delivered"), None)
    unknowns = [u for p in verdict.predicted for u in p.unknowns]
    node = (verdict.where or "").split("/")[0].split(" ")[0]
    if verdict.code in (None, "unknown"):
        if _explains(stop, node) and not unknowns and stop is not None:
            verdict.evidence = [f"the run alone: {verdict.cause}", *verdict.evidence]
            verdict.code, verdict.objects = stop.code, list(stop.objects)
            verdict.cause = f"the saved state stops it where the run did: {stop.why}"
        return
    if stop is None and not unknowns:
        verdict.evidence.append(
            "the saved state alone predicts it gets through (there and back): what stopped "
            "it is something the prediction does not model, or not in the state (a program, "
            "a change during the run)"
        )
    elif stop is not None and stop.outcome == "stopped" and stop.node != node:
        verdict.evidence.append(
            f"the saved state alone predicts a stop in {stop.node} ({stop.why}), "
            f"not in {node} where the run stopped"
        )


def _explains(stop: Prediction | None, node: str) -> bool:
    return stop is not None and stop.outcome == "stopped" and bool(stop.code) and stop.node == node
