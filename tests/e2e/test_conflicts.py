"""Conflicts in the state are said even when the probes pass: an address two
namespaces hold, a neighbour entry pointing at a MAC whose owner does not hold
the address. In a scratch host: c1, c2 and c3 on a bridge in the host; c3 takes
c2's address too; c1's neighbour entry for it is pinned to c3's MAC; then to the
bridge's own."""

from __future__ import annotations

import pytest

from tests import scratch

pytestmark = pytest.mark.root

DUPLICATE = r"""
import json, subprocess, sys

def sh(command):
    return subprocess.run(["bash", "-c", command], check=True, capture_output=True,
                          text=True).stdout

sh('''set -e
ip link add br0 type bridge; ip link set br0 up
for n in 1 2 3; do
  ip netns add c$n; ip -n c$n link set lo up
  ip link add h$n type veth peer name eth0 netns c$n
  ip link set h$n master br0; ip link set h$n up; ip -n c$n link set eth0 up
done
ip -n c1 addr add 10.5.0.1/24 dev eth0; ip -n c2 addr add 10.5.0.2/24 dev eth0
ip -n c3 addr add 10.5.0.2/24 dev eth0 nodad 2>/dev/null || ip -n c3 addr add 10.5.0.2/24 dev eth0
''')
# Two rules that tie (same priority, both match c1's probe), two that cannot.
sh("ip -n c1 rule add to 10.5.0.0/24 lookup 100 pref 1000; "
   "ip -n c1 rule add from 10.5.0.1 lookup main pref 1000; "
   "ip -n c1 rule add fwmark 1 lookup 100 pref 1001; "
   "ip -n c1 rule add fwmark 2 lookup 101 pref 1001")
mac3 = sh("ip -n c3 -br link show eth0").split()[2]
sh(f"ip -n c1 neigh replace 10.5.0.2 lladdr {mac3} dev eth0 nud permanent")
done = subprocess.run([sys.executable, "-m", "pathtrace", "run", "ping", "10.5.0.2", "--from", "c1",
                       "-c", "1", "--json"], capture_output=True, text=True, timeout=60)
# The entry now names the bridge's own MAC: the host, traced, does not hold 10.5.0.2.
sh("ip -n c3 addr del 10.5.0.2/24 dev eth0")
mac_br = sh("ip -br link show br0").split()[2]
sh(f"ip -n c1 neigh replace 10.5.0.2 lladdr {mac_br} dev eth0 nud permanent")
pinned = subprocess.run([sys.executable, "-m", "pathtrace", "run", "ping", "10.5.0.2", "--from",
                         "c1", "-c", "1", "--json"], capture_output=True, text=True, timeout=60)
print(json.dumps({"code": done.returncode, "report": json.loads(done.stdout or "null"),
                  "stderr": done.stderr, "mac3": mac3, "mac_br": mac_br,
                  "pinned": json.loads(pinned.stdout or "null")}))
"""


def test_a_duplicate_address_is_a_warning_even_when_answered() -> None:
    seen = scratch.result(DUPLICATE)
    report = seen["report"]
    assert seen["code"] == 0, seen["stderr"]
    assert report["probes"][0]["verdict"]["outcome"] == "answered"
    assert report["probes"][0]["verdict"]["where"] == "c3"  # whose MAC c1 holds
    warnings = report["warnings"]
    assert "conflict: 10.5.0.2 is held by c2/eth0 and c3/eth0" in " ".join(warnings), warnings
    assert (
        any(
            w.startswith(f"conflict: c1's neighbour entry says 10.5.0.2 is at {seen['mac3']}")
            for w in warnings
        )
        is False
    ), warnings  # c3 does hold 10.5.0.2: the entry itself is no conflict
    assert "warning: conflict: 10.5.0.2" in seen["stderr"], seen["stderr"]


def test_a_neighbour_entry_pointing_at_another_hosts_mac_is_a_warning() -> None:
    seen = scratch.result(DUPLICATE)
    report = seen["pinned"]
    warnings = report["warnings"]
    assert (
        f"conflict: c1's neighbour entry says 10.5.0.2 is at {seen['mac_br']}, which is "
        "host/br0's, and host does not hold 10.5.0.2"
    ) in " ".join(warnings), warnings
    assert report["probes"][0]["verdict"]["outcome"] != "answered"


def test_rules_that_tie_are_a_warning_and_disjoint_ones_are_not() -> None:
    seen = scratch.result(DUPLICATE)
    warnings = seen["report"]["warnings"]
    tied = [w for w in warnings if "share priority" in w]
    assert tied == [
        "conflict: c1's rules '1000: from all to 10.5.0.0/24 lookup 100' and "
        "'1000: from 10.5.0.1/32 lookup main' share priority 1000 and can match the same "
        "packet: the kernel takes the one added first (listed first by `ip rule`)"
    ], warnings
