"""Fixes the model applies that name tables other than the nft ruleset: a static
neighbour entry, a VTEP's FDB entry, an iptables-legacy rule by position (on a
real namespace's legacy tables, read as pathtrace reads them)."""

from __future__ import annotations

import os

import pytest

from pathtrace.analyze.network import Network
from pathtrace.analyze.proof import apply_fix
from pathtrace.model.state import NamespaceState
from tests import scratch

_LEGACY = """
import json, subprocess
from pathtrace.system import observe
def sh(c):
    subprocess.run(c, shell=True, check=True)
sh("ip netns add t1")
sh("ip netns exec t1 iptables-legacy -A FORWARD -s 10.1.0.0/16 -j DROP")
sh("ip netns exec t1 iptables-legacy -A FORWARD -d 10.2.0.0/16 -j DROP")
sh("ip netns exec t1 iptables-legacy -t nat -A POSTROUTING -s 10.1.0.0/16 -j MASQUERADE")
print(json.dumps(observe.state("t1", "t1").to_json()))
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="namespaces need root")
def test_an_iptables_legacy_rule_is_deleted_by_its_position() -> None:
    state = NamespaceState.from_json(scratch.result(_LEGACY))
    net = Network({"t1": state}, None)
    texts = [r.text for r in state.rules().rules if r.chain == "FORWARD"]
    assert len(texts) == 2 and "10.1.0.0/16" in texts[0], texts
    changed = apply_fix(net, f"{net.run_in('t1')}iptables-legacy -t filter -D FORWARD 1")
    assert changed is not None
    left = changed["t1"].rules().rules
    assert [r.text for r in left if r.chain == "FORWARD"] == texts[1:]
    assert [r.chain for r in left if r.table == "nat"] == ["POSTROUTING"]  # untouched
    assert apply_fix(net, f"{net.run_in('t1')}iptables-legacy -t filter -D FORWARD 3") is None


def test_a_static_neighbour_and_a_vtep_entry_are_applied() -> None:
    state = NamespaceState("ns", "node", sysctls={})
    state.neighbours = ["10.0.0.1 dev eth0 lladdr 02:00:00:00:00:09 STALE"]
    net = Network({"ns": state}, None)
    run = net.run_in("node")
    changed = apply_fix(
        net,
        f"{run}ip neigh replace 10.0.0.1 lladdr 02:00:00:00:00:01 dev eth0 nud permanent && "
        f"{run}bridge fdb append 02:00:00:00:01:01 dev flannel.1 dst 172.30.0.2 self permanent",
    )
    assert changed is not None
    entries = changed["ns"].neighbour_entries()
    assert [(n.dst, n.lladdr, n.state) for n in entries] == [
        ("10.0.0.1", "02:00:00:00:00:01", "PERMANENT")
    ]
    (fdb,) = changed["ns"].fdb
    assert (fdb.mac, fdb.dev, fdb.dst) == ("02:00:00:00:01:01", "flannel.1", "172.30.0.2")
    # add refuses an entry that exists; append adds another VTEP for it
    again = f"{run}bridge fdb add 02:00:00:00:01:01 dev flannel.1 dst 172.30.0.3 self"
    assert apply_fix(Network(changed, None), again) is None
