"""Which policy rules tie: same family and priority, different actions, and
selectors that one packet can meet at once."""

from __future__ import annotations

import pytest

from pathtrace.model.result import conflicts
from pathtrace.model.state import NamespaceState, Rule


def _tie(a: Rule, b: Rule) -> bool:
    state = NamespaceState("ns", "n1")
    state.route_rules = [a, b]
    return any("share priority" in c for c in conflicts({"ns": state}))


@pytest.mark.parametrize(
    ("a", "b", "tied"),
    [
        (Rule(100, "lookup", 10), Rule(100, "lookup", 11), True),
        (Rule(100, "lookup", 10), Rule(100, "lookup", 10), False),  # the same thing twice
        (Rule(100, "lookup", 10), Rule(101, "lookup", 11), False),
        (Rule(100, "lookup", 10, family=4), Rule(100, "lookup", 11, family=6), False),
        (Rule(100, "lookup", 10, dst="10.0.0.0/8"), Rule(100, "prohibit", dst="10.1.0.0/16"), True),
        (Rule(100, "lookup", 10, dst="10.0.0.0/8"), Rule(100, "prohibit", dst="11.0.0.0/8"), False),
        (Rule(100, "lookup", 10, iif="eth0"), Rule(100, "lookup", 11, iif="eth1"), False),
        (Rule(100, "lookup", 10, iif="eth0"), Rule(100, "lookup", 11), True),
        (Rule(100, "lookup", 10, fwmark=1), Rule(100, "lookup", 11, fwmark=2), False),
        (
            Rule(100, "lookup", 10, fwmark=1, fwmask=0xF0),
            Rule(100, "lookup", 11, fwmark=2, fwmask=0xF0),
            True,
        ),
        (Rule(100, "lookup", 10, fwmark=1), Rule(100, "lookup", 11, src="10.0.0.1/32"), True),
    ],
)
def test_rules_tie_only_where_one_packet_meets_both(a: Rule, b: Rule, tied: bool) -> None:
    assert _tie(a, b) is tied
