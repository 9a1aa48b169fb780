"""Links that are not veth pairs, in a scratch host: the report claims no veth pair
netlink does not show, and an answer is taken in wherever the kernel delivered it.

macvlan in bridge mode: a child in namespace mv1 and a host-side shim on the
same parent (a veth end: this kernel has no dummy device). The child's frames
reach mv1 in a second round of the parent's receive, past the receive
tracepoint; the answer is still freed NO_SOCKET by mv1's own stack.
"""

from __future__ import annotations

import pytest

from tests import scratch

pytestmark = pytest.mark.root

MACVLAN = r"""
import json, subprocess, sys

def sh(command):
    subprocess.run(["bash", "-c", command], check=True, capture_output=True)

sh("ip link add lan0 type veth peer name lan0p && ip link set lan0 up && ip link set lan0p up && "
   "ip netns add mv1 && ip link add mv1 link lan0 type macvlan mode bridge && "
   "ip link set mv1 netns mv1 && ip -n mv1 link set mv1 name eth0 && "
   "ip -n mv1 addr add 10.9.0.2/24 dev eth0 && ip -n mv1 link set eth0 up && "
   "ip -n mv1 link set lo up && "
   "ip link add shim link lan0 type macvlan mode bridge && "
   "ip addr add 10.9.0.1/24 dev shim && ip link set shim up && "
   "ip netns add mv2 && ip link add mv2 link lan0 type macvlan mode bridge && "
   "ip link set mv2 netns mv2 && ip -n mv2 link set mv2 name eth0 && "
   "ip -n mv2 addr add 10.9.0.3/24 dev eth0 && ip -n mv2 link set eth0 up")
kinds = subprocess.run(["ip", "-d", "-n", "mv1", "-o", "link", "show", "eth0"],
                       capture_output=True, text=True).stdout
done = subprocess.run([sys.executable, "-m", "pathtrace", "run", "ping", "10.9.0.1", "--from",
                       "mv1", "-c", "2", "--json"], capture_output=True, text=True, timeout=60)
# From the host (the scratch host) to a macvlan child: an address of a traced namespace.
from_host = subprocess.run([sys.executable, "-m", "pathtrace", "run", "ping", "10.9.0.2",
                            "--from", "host", "-c", "1", "--json"], capture_output=True,
                           text=True, timeout=60)
# Child to child: the lower device is only on the children's side in netlink.
child = subprocess.run([sys.executable, "-m", "pathtrace", "run", "ping", "10.9.0.3", "--from",
                        "mv1", "-c", "2", "--json"], capture_output=True, text=True, timeout=60)
print(json.dumps({"code": done.returncode, "report": json.loads(done.stdout or "null"),
                  "stderr": done.stderr, "kinds": kinds, "child": child.returncode,
                  "child_report": json.loads(child.stdout or "null"),
                  "from_host": from_host.returncode, "from_host_err": from_host.stderr}))
"""


def test_macvlan_is_not_called_a_veth_pair_and_its_answer_is_taken_in() -> None:
    seen = scratch.result(MACVLAN)
    assert "macvlan mode bridge" in seen["kinds"]  # the ground truth, from ip itself
    report = seen["report"]
    assert seen["code"] == 0, seen["stderr"]
    assert report["summary"]["answered"] == 2
    texts = [
        h["text"]
        for p in report["probes"]
        for s in ("request", "reply")
        for h in (p[s] or {}).get("hops", [])
    ]
    assert not [t for t in texts if "veth pair" in t], texts
    # The mode and the lower device are netlink's (IFLA_INFO_DATA, IFLA_LINK), as ip says.
    assert "mv1/eth0 (macvlan, bridge mode) hands it to its lower device host/lan0 (veth)" in (
        texts
    ), texts
    assert any(t.startswith("mv1 takes the answer in") for t in texts), texts
    for probe in report["probes"]:
        assert probe["verdict"]["outcome"] == "answered", probe["verdict"]
        # The capture saw the hops on the macvlan and its lower device (tcpdump does).
        device_hops = [h for h in probe["request"]["hops"] if h["captured"] is not None]
        assert device_hops and all(h["captured"] for h in device_hops), device_hops
    assert seen["from_host"] == 0, seen["from_host_err"]  # not refused as "no namespace's"

    # mv1 to mv2, both on lan0: mv2 is traced (found through its own link to the
    # host), and each hand-over is said as netlink links the devices.
    child = seen["child_report"]
    assert seen["child"] == 0, child
    assert "mv2" in child["namespaces"].values(), child["namespaces"]
    for probe in child["probes"]:
        assert probe["verdict"]["outcome"] == "answered" and probe["verdict"]["where"] == "mv2"
        reply = [h["text"] for h in probe["reply"]["hops"]]
        assert (
            "mv2/eth0 (macvlan, bridge mode) hands it to its lower device host/lan0 (veth)" in reply
        ), reply
