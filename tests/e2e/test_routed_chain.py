"""A routed chain r1 - r2 - r3 that pathtrace did not build, in a scratch host: the
namespaces are found by the routes the kernel would take, so a router that does not
forward is traced, and its state explains the drop."""

from __future__ import annotations

import pytest

from tests import scratch

pytestmark = pytest.mark.root

CHAIN = r"""
import json, subprocess, sys
SETUP = '''
for n in r1 r2 r3; do ip netns add $n; ip -n $n link set lo up; done
ip link add va type veth peer name vb; ip link set va netns r1; ip link set vb netns r2
ip link add vc type veth peer name vd; ip link set vc netns r2; ip link set vd netns r3
ip -n r1 addr add 10.1.0.1/24 dev va; ip -n r2 addr add 10.1.0.2/24 dev vb
ip -n r2 addr add 10.2.0.1/24 dev vc; ip -n r3 addr add 10.2.0.2/24 dev vd
ip -n r1 link set va up; ip -n r2 link set vb up; ip -n r2 link set vc up; ip -n r3 link set vd up
ip -n r1 route add default via 10.1.0.2; ip -n r3 route add default via 10.2.0.1
'''
subprocess.run(["bash", "-ec", SETUP], check=True, capture_output=True)
seen = {}
for forwarding in ("0", "1"):  # a new namespace does not forward: the fault, then the fix
    subprocess.run(["ip", "netns", "exec", "r2", "sh", "-c",
                    f"echo {forwarding} > /proc/sys/net/ipv4/ip_forward"], check=True)
    counters = subprocess.run(["ip", "netns", "exec", "r2", "cat", "/proc/net/snmp"],
                              capture_output=True, text=True).stdout
    done = subprocess.run([sys.executable, "-m", "pathtrace", "run", "ping", "10.2.0.2",
                           "--from", "r1", "-c", "1", "--json"],
                          capture_output=True, text=True, timeout=60)
    after = subprocess.run(["ip", "netns", "exec", "r2", "cat", "/proc/net/snmp"],
                           capture_output=True, text=True).stdout
    seen[forwarding] = {"code": done.returncode, "stderr": done.stderr,
                        "report": json.loads(done.stdout or "null"),
                        "snmp": [counters, after]}
print(json.dumps(seen))
"""


def _addr_errors(snmp: str) -> int:
    """Ip: InAddrErrors from /proc/net/snmp: the kernel's own count of the drop."""
    lines = [line.split() for line in snmp.splitlines() if line.startswith("Ip:")]
    return int(lines[1][lines[0].index("InAddrErrors")])


def test_a_router_that_does_not_forward_is_traced_and_explained() -> None:
    seen = scratch.result(CHAIN)
    broken, fixed = seen["0"], seen["1"]
    assert broken["code"] == 1, broken["stderr"]
    report = broken["report"]
    assert set(report["namespaces"].values()) >= {"r1", "r2"}
    # Ground truth: r2's own counter of packets it would not forward went up by one.
    before, after = broken["snmp"]
    assert _addr_errors(after) - _addr_errors(before) == 1
    verdict = report["probes"][0]["verdict"]
    assert verdict["outcome"] == "dropped" and verdict["where"].startswith("r2"), verdict
    assert "ip_forward is 0" in verdict["cause"], verdict
    assert "sysctl -w net.ipv4.ip_forward=1" in verdict["fix"], verdict
    hops = [h["text"] for h in report["probes"][0]["request"]["hops"]]
    assert "crosses the veth pair r1/va -> r2/vb" in hops, hops
    # Fixed: the same chain answers, through r2 to r3 and back.
    assert fixed["code"] == 0, fixed["stderr"]
    assert set(fixed["report"]["namespaces"].values()) >= {"r1", "r2", "r3"}
    assert fixed["report"]["summary"]["answered"] == 1
