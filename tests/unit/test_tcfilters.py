"""tc filters read from netlink as typed records, in a scratch host's namespace,
checked against what `tc filter show` says of the same filters."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from pathtrace.model.state import NamespaceState, TcFilter
from tests import scratch

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="namespaces need root")

_READ = """
import json, socket, subprocess
from pathtrace.system import observe
def sh(c):
    subprocess.run(c, shell=True, check=True)
sh("ip netns add t1")
for c in (
    "ip link add va type veth peer name vb", "ip link add sink type veth peer name sink1",
    "ip link set va up", "ip link set vb up", "tc qdisc add dev va clsact",
    "tc filter add dev va ingress u32 match u32 0 0 action mirred egress redirect dev sink",
    "tc filter add dev va egress protocol ip pref 7 u32 match ip dst 10.0.0.0/8 "
    "action mirred egress redirect dev sink",
    "tc filter add dev va egress protocol ipv6 pref 8 u32 match u32 0 0 "
    "action mirred egress mirror dev sink1",
):
    sh("ip netns exec t1 " + c)
state = observe.state("t1", "t1")
shown = subprocess.run("ip netns exec t1 tc filter show dev va egress", shell=True,
                       capture_output=True, text=True).stdout
print(json.dumps([state.to_json()["tc"], shown]))
"""


@pytest.fixture(scope="module")
def read() -> tuple[list[dict[str, Any]], str]:
    tc, shown = scratch.result(_READ)
    return tc, shown


def test_filters_are_records(read: tuple[list[dict[str, Any]], str]) -> None:
    tc, shown = read
    filters = [TcFilter.from_json(f) for f in tc]
    assert [(f.dev, f.direction, f.kind, f.protocol) for f in filters] == [
        ("va", "ingress", "u32", "all"),
        ("va", "egress", "u32", "ip"),
        ("va", "egress", "u32", "ipv6"),
    ]
    every, dst, mirror = filters
    assert every.every is True and every.redirects_to() == "sink" and every.pref == 49152
    # The key tc shows, as tc shows it: value/mask at the offset.
    assert dst.every is False and dst.matches == ("0a000000/ff000000 at 16",)
    assert "match 0a000000/ff000000 at 16" in shown and "pref 7" in shown
    assert mirror.every is True and mirror.actions == ("mirror dev sink1",)
    assert mirror.redirects_to() is None and not mirror.drops()


def test_records_survive_a_bundle_and_older_lines_still_read(
    read: tuple[list[dict[str, Any]], str],
) -> None:
    tc, _ = read
    records = [TcFilter.from_json(f) for f in tc]
    state = NamespaceState("ns", "node", tc=records, sysctls={})
    assert NamespaceState.from_json(json.loads(json.dumps(state.to_json()))).tc == records
    old = TcFilter.from_json(
        "veth-host1 ingress: filter protocol all pref 49152 u32 chain 0 fh 800::800 order "
        "2048 key ht 800 bkt 0 terminal flowid not_in_hw match 00000000/00000000 at 0 action "
        "order 1: mirred (Egress Redirect to device tcsink) stolen index 1 ref 1 bind 1"
    )
    assert (old.dev, old.direction, old.every, old.redirects_to()) == (
        "veth-host1",
        "ingress",
        True,
        "tcsink",
    )
