"""IPIP and GRE between two routers, followed through their encapsulation, on the
second kernel (this machine's kernel has neither; Debian's 6.1 builds them as
modules, which tests/vm/guest.sh loads).

In a scratch host: r1 and r2 joined by an underlay veth (ul, 172.31.0.1-2/24); an
IPIP tunnel (tip) and a GRE tunnel with key 7 (tgre) between them; r2 owns
10.60.0.2 and 10.61.0.2, routed from r1 into tip and tgre. Ground truth: tcpdump
on r2's underlay, which decodes the outer headers itself.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests import scratch

pytestmark = [pytest.mark.vm, pytest.mark.root]

TUNNELS = r"""
import json, subprocess, sys, time

def sh(command):
    done = subprocess.run(["bash", "-c", command], check=True, capture_output=True, text=True)
    return done.stdout

sh('''set -e
for n in r1 r2; do ip netns add $n; ip -n $n link set lo up; done
ip link add ul1 type veth peer name ul2
ip link set ul1 netns r1; ip link set ul2 netns r2
ip -n r1 link set ul1 name ul; ip -n r2 link set ul2 name ul
ip -n r1 addr add 172.31.0.1/24 dev ul; ip -n r2 addr add 172.31.0.2/24 dev ul
ip -n r1 link set ul up; ip -n r2 link set ul up
ip -n r1 link add tip type ipip local 172.31.0.1 remote 172.31.0.2
ip -n r2 link add tip type ipip local 172.31.0.2 remote 172.31.0.1
ip -n r1 link add tgre type gre local 172.31.0.1 remote 172.31.0.2 key 7
ip -n r2 link add tgre type gre local 172.31.0.2 remote 172.31.0.1 key 7
for n in r1 r2; do ip -n $n link set tip up; ip -n $n link set tgre up; done
ip -n r1 addr add 10.50.0.1/32 dev tip; ip -n r1 addr add 10.51.0.1/32 dev tgre
ip -n r2 addr add 10.60.0.2/32 dev lo; ip -n r2 addr add 10.61.0.2/32 dev lo
ip -n r1 route add 10.60.0.0/24 dev tip src 10.50.0.1
ip -n r1 route add 10.61.0.0/24 dev tgre src 10.51.0.1
ip -n r2 route add 10.50.0.0/24 dev tip; ip -n r2 route add 10.51.0.0/24 dev tgre
''')
dump = subprocess.Popen(["ip", "netns", "exec", "r2", "tcpdump", "-i", "ul", "-n", "-U", "-w",
                         "/tmp/ul.pcap", "ip proto 4 or ip proto 47"], stderr=subprocess.DEVNULL)
time.sleep(1.0)
out = {}
for name, target in (("ipip", "10.60.0.2"), ("gre", "10.61.0.2")):
    done = subprocess.run([sys.executable, "-m", "pathtrace", "run", "ping", target, "--from",
                           "r1", "-c", "2", "--json"], capture_output=True, text=True,
                          timeout=120)
    out[name] = {"code": done.returncode, "report": json.loads(done.stdout or "null"),
                 "stderr": done.stderr}
time.sleep(1.0)
dump.terminate(); dump.wait()
out["tcpdump"] = sh("tcpdump -r /tmp/ul.pcap -n")
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def seen() -> dict[str, Any]:
    return scratch.result(TUNNELS, timeout=600)  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("kind", "device", "outer"),
    [("ipip", "tip", "IP in IP, 172.31.0.1 -> 172.31.0.2"),
     ("gre", "tgre", "GRE key 7, 172.31.0.1 -> 172.31.0.2")],
)  # fmt: skip
def test_an_ip_tunnel_is_followed_through_its_encapsulation(
    seen: dict[str, Any], kind: str, device: str, outer: str
) -> None:
    case = seen[kind]
    assert case["code"] == 0, case["stderr"]
    for probe in case["report"]["probes"]:
        assert probe["verdict"]["outcome"] == "answered", probe["verdict"]
        hops = probe["request"]["hops"]
        places = [(h["node"], h["interface"]) for h in hops]
        at = places.index(("r1", "ul"))
        assert places[at - 1] == ("r1", device) and places[at + 1] == ("r2", "ul"), places
        assert hops[at]["text"].startswith(f"{device} ({kind}"), hops[at]["text"]
        assert f"encapsulates it ({outer}); r1 sends it out of ul" in hops[at]["text"]
        assert hops[at]["outer"]["kind"] == kind
        assert hops[at + 1]["text"].endswith("encapsulated"), hops[at + 1]
        assert hops[at]["captured"] and hops[at + 1]["captured"], hops[at : at + 2]
    rows = seen["tcpdump"].splitlines()
    inner = "IP 10.50.0.1 > 10.60.0.2" if kind == "ipip" else "IP 10.51.0.1 > 10.61.0.2"
    wrapped = [r for r in rows if "172.31.0.1 > 172.31.0.2" in r and inner in r]
    assert len(wrapped) == 2, rows  # (the kernel's own IPv6 solicitations also go by GRE)
    assert kind == "ipip" or all("GREv0, key=0x7" in r for r in wrapped), wrapped
