"""A watched packet conntrack found INVALID, on a kernel without BPF netfilter
links (6.1): its tracker's log_invalid call (the conntrack family's ct_invalid
event) shows conntrack looked at it, and the next hook of that namespace that
it left it no entry. Each of the facts missing leaves nothing said."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from pathtrace.analyze.flows import build_flows
from pathtrace.model.event import Event, Hook
from pathtrace.model.state import NamespaceState

EXAMPLE = Path(__file__).resolve().parents[2] / "captures" / "examples" / "tcp-dnat"
MESSAGE = "invalid tcp flag combination"


def _saved() -> tuple[list[Event], dict[str, NamespaceState]]:
    lines = (EXAMPLE / "events.jsonl").read_text().splitlines()[1:]
    events = sorted((Event.from_json(json.loads(line)) for line in lines), key=lambda e: e.time_ns)
    saved = json.loads((EXAMPLE / "state.json").read_text())["namespaces"]
    # As on 6.1: no netfilter hooks, every event says what conntrack left (no entry yet).
    no_nf = [replace(e, ct_state="none") for e in events if e.hook not in ("nf_before", "nf_after")]
    return no_nf, {ns: NamespaceState.from_json(s) for ns, s in saved.items()}


def _invalid(host: str, keep_later: bool = True, elsewhere: str = "none") -> list[str]:
    """The flow's INVALID lines with conntrack's message on the answer where host
    received it, the answer's later events in host leaving it ``host``, those in
    other namespaces ``elsewhere``."""
    events, states = _saved()
    at = next(
        i for i, e in enumerate(events)
        if e.tag == "reply" and e.namespace == "pt-host" and e.hook == "dev_recv"
    )  # fmt: skip
    received = events[at]
    told = replace(
        received, hook=Hook.CT_INVALID, via="kprobe", location=MESSAGE, ifname="",
        time_ns=received.time_ns + 1,
    )  # fmt: skip
    later = [
        replace(e, ct_state=host if e.namespace == "pt-host" else elsewhere)
        if e.skb_id == received.skb_id
        else e
        for e in events[at + 1 :]
        if keep_later or not (e.skb_id == received.skb_id and e.namespace == "pt-host")
    ]
    (flow,) = build_flows([*events[: at + 1], told, *later], states)
    return flow.invalid


def test_no_entry_after_the_trackers_call_is_invalid_in_its_words() -> None:
    (line,) = _invalid("none")
    assert line.startswith("host at dev_recv br0: tcp 192.168.100.2:80 > 198.51.100.1:"), line
    assert "has no conntrack entry after conntrack looked at it" in line
    assert line.endswith(f'; conntrack\'s message: "{MESSAGE}"'), line


def test_an_entry_kept_after_the_call_is_not_invalid() -> None:
    # Trackers log packets they ignore too, which keep their entry.
    assert _invalid("established reply") == []


def test_no_later_hook_there_says_nothing() -> None:
    assert _invalid("none", keep_later=False, elsewhere="established reply") == []


def test_no_entry_in_another_namespace_says_nothing_of_this_one() -> None:
    # Crossing into another namespace leaves a packet no entry there, whatever it
    # was: with no later hook in host, wan's events must not stand in for one.
    assert _invalid("established reply", keep_later=False, elsewhere="none") == []
