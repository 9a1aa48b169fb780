"""A two-node VXLAN overlay as flannel builds it, traced through its encapsulation.

In a scratch host: node-a and node-b joined by an underlay veth (ul0), each with
flannel.1 (VXLAN VNI 1, UDP 8472, no learning), a bridge cni0 and a pod; the
static route, neighbour and FDB entries flannel writes. Ground truth beside
pathtrace: tcpdump on node-b's ul0 (the VXLAN datagrams, decoded by tcpdump),
the nft counter of the drop rule, `bridge fdb`, the links' MTUs.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests import scratch

pytestmark = pytest.mark.root

OVERLAY = r"""
import json, subprocess, sys, time
from tests.overlay import SETUP

def sh(command):
    done = subprocess.run(["bash", "-c", command], check=True, capture_output=True, text=True)
    return done.stdout

sh(SETUP)

def run(*extra):
    done = subprocess.run([sys.executable, "-m", "pathtrace", "run", "ping", "10.244.1.2",
                           "--from", "pod-a", "-c", "2", "--json", *extra],
                          capture_output=True, text=True, timeout=90)
    return {"code": done.returncode, "report": json.loads(done.stdout or "null"),
            "stderr": done.stderr}

out = {}
dump = subprocess.Popen(["ip", "netns", "exec", "node-b", "tcpdump", "-i", "ul0", "-n", "-U",
                         "-w", "/tmp/ul0.pcap", "udp port 8472"], stderr=subprocess.DEVNULL)
time.sleep(1.0)
out["healthy"] = run()
time.sleep(1.0)
dump.terminate(); dump.wait()
out["tcpdump"] = sh("tcpdump -r /tmp/ul0.pcap -n -T vxlan")

# A real TCP conversation, watched: curl in pod-a to a web server in pod-b.
web = subprocess.Popen(["ip", "netns", "exec", "pod-b", sys.executable, "-m", "http.server",
                        "8000", "--bind", "10.244.1.2"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
w = subprocess.Popen([sys.executable, "-m", "pathtrace", "watch", "tcp port 8000", "--count",
                      "1", "--duration", "30", "--json"], stdout=subprocess.PIPE,
                     stderr=subprocess.PIPE, text=True)
w.stderr.readline()  # armed
time.sleep(0.3)  # the web server listening
curl = subprocess.run(["ip", "netns", "exec", "pod-a", "curl", "-s", "-o", "/dev/null", "-w",
                       "%{http_code}", "http://10.244.1.2:8000/"], capture_output=True, text=True)
watched, err = w.communicate(timeout=60)
web.kill(); web.wait()
out["watch"] = {"curl": curl.stdout, "code": w.returncode, "report": json.loads(watched or "null"),
                "stderr": err}

sh('''ip netns exec node-b nft -f - <<'X'
table inet under { chain input { type filter hook input priority 0; policy accept;
  udp dport 8472 counter drop; }; }
X''')
out["firewall"] = run()
out["counter"] = sh("ip netns exec node-b nft list chain inet under input")
sh("ip netns exec node-b nft delete table inet under")

sh("ip netns exec node-a bridge fdb del 02:00:00:00:01:01 dev flannel.1 dst 172.30.0.2 self")
out["fdb_show"] = sh("ip netns exec node-a bridge fdb show dev flannel.1")
out["no_fdb"] = run()
sh("ip netns exec node-a bridge fdb add 02:00:00:00:01:01 dev flannel.1 dst 172.30.0.2 "
   "self permanent")

sh("ip -n node-a link set ul0 mtu 1400; ip -n node-b link set ul0 mtu 1400; "
   "ip -n node-a link set flannel.1 type vxlan df set")
out["mtu"] = run("-s", "1400", "--df")
out["links"] = sh("ip -n node-a -d link show")
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def seen() -> dict[str, Any]:
    return scratch.result(OVERLAY, timeout=400)  # type: ignore[no-any-return]


def _hops(probe: dict[str, Any], series: str) -> list[dict[str, Any]]:
    return (probe.get(series) or {}).get("hops", [])


def test_the_overlay_is_followed_through_its_encapsulation(seen: Any) -> None:
    case = seen["healthy"]
    assert case["code"] == 0, case["stderr"]
    for probe in case["report"]["probes"]:
        assert probe["verdict"]["outcome"] == "answered", probe["verdict"]
        request = _hops(probe, "request")
        places = [(h["node"], h["interface"]) for h in request]
        at = places.index(("node-a", "ul0"))
        # pod-a, node-a's bridge and flannel.1, the underlay out of node-a and into
        # node-b, node-b's flannel.1 and bridge, pod-b: in that order.
        assert places[at - 1] == ("node-a", "flannel.1"), places
        assert places[at + 1] == ("node-b", "ul0"), places
        assert places[at + 2] == ("node-b", "flannel.1"), places
        assert places[-1][0] == "pod-b", places
        out = request[at]
        assert out["text"].startswith(
            "flannel.1 (vxlan, VNI 1, UDP port 8472, local 172.30.0.1, on ul0) encapsulates it "
            "(VXLAN VNI 1, 172.30.0.1:"
        ), out["text"]
        assert out["text"].endswith("-> 172.30.0.2:8472); node-a sends it out of ul0")
        assert out["outer"]["dst"] == "172.30.0.2" and out["outer"]["vni"] == 1
        assert out["packet"]["dst"] == "10.244.1.2"  # the packet stays the probe
        assert request[at + 1]["text"] == (
            "crosses the veth pair node-a/ul0 -> node-b/ul0, encapsulated"
        )
        assert request[at + 2]["text"].startswith("flannel.1 (vxlan, VNI 1") and (
            "decapsulates it" in request[at + 2]["text"]
        )
        texts = [h["text"] for s in ("request", "reply") for h in _hops(probe, s)]
        assert not [t for t in texts if "veth pair node-a/flannel.1" in t], texts
        # Every device hop of the underlay was seen by the capture too.
        assert all(h["captured"] for h in request if h["interface"] == "ul0"), request
        # Predicted from the state alone: through flannel.1, the underlay and back.
        predicted = probe["verdict"]["predicted"]
        assert [p["outcome"] for p in predicted] == ["delivered", "delivered"], predicted
        assert predicted[0]["node"] == "pod-b" and not predicted[0]["unknowns"], predicted
        said = [s["text"] for s in predicted[0]["steps"]]
        assert any("flannel.1 sends it to 172.30.0.2:8472" in t for t in said), said
        assert any("node-b takes it off flannel.1" in t for t in said), said
    # tcpdump decodes the same datagrams: VNI 1 to node-b's VTEP, two requests.
    rows = [r for r in seen["tcpdump"].splitlines() if "172.30.0.1." in r and ".8472:" in r]
    assert len(rows) >= 2 and all("VXLAN" in r and "vni 1" in r for r in rows), rows


def test_a_watched_tcp_flow_is_followed_through_the_overlay(seen: Any) -> None:
    case = seen["watch"]
    assert case["curl"] == "200" and case["code"] == 0, case["stderr"]
    (flow,) = case["report"]["flows"]
    assert flow["protocol"] == "tcp" and flow["server"] == "10.244.1.2:8000", flow
    assert flow["source"] == "pod-a" and flow["verdict"]["outcome"] == "answered"
    first = next(p for p in flow["packets"] if p["direction"] == "request")["hops"]
    places = [(h["node"], h["interface"]) for h in first]
    at = places.index(("node-a", "ul0"))
    assert places[at - 1] == ("node-a", "flannel.1") and places[at + 1] == ("node-b", "ul0")
    assert places[0][0] == "pod-a" and places[-1][0] == "pod-b", places
    assert first[at]["outer"]["vni"] == 1 and first[at]["outer"]["dst"] == "172.30.0.2"
    assert first[at]["packet"]["dst"] == "10.244.1.2"  # the flow's own packet, inside
    answer = next(p for p in flow["packets"] if p["direction"] == "reply")["hops"]
    assert answer[0]["node"] == "pod-b" and answer[-1]["node"] == "pod-a", answer
    # A whole HTTP exchange: handshake, request, response, close, both ways.
    assert flow["counts"]["request"] >= 4 and flow["counts"]["reply"] >= 3, flow["counts"]
    # The client's last ACK waits for nothing: no "answers never came" for TCP.
    assert flow["unanswered"] == 0, flow


def test_an_underlay_firewall_drop_is_the_probes_with_its_rule(seen: Any) -> None:
    case = seen["firewall"]
    assert case["code"] == 1, case["stderr"]
    for probe in case["report"]["probes"]:
        verdict = probe["verdict"]
        assert verdict["outcome"] == "dropped" and verdict["where"] == "node-b/ul0", verdict
        assert "udp dport 8472" in verdict["cause"] and "VXLAN VNI 1" in verdict["cause"]
        assert verdict["fix"].endswith("nft delete rule inet under input handle 2"), verdict
        (predicted,) = verdict["predicted"]  # the datagram's rule, from the state alone
        assert (predicted["node"], predicted["code"]) == ("node-b", "nf.drop"), predicted
        assert predicted["objects"] == verdict["objects"], (predicted, verdict)
    assert "counter packets 2 " in seen["counter"], seen["counter"]


def test_a_missing_vtep_fdb_entry_is_named_with_the_vtep(seen: Any) -> None:
    assert seen["fdb_show"].strip() == ""  # ground truth: flannel.1 has no FDB entry
    case = seen["no_fdb"]
    assert case["code"] == 1, case["stderr"]
    for probe in case["report"]["probes"]:
        verdict = probe["verdict"]
        assert verdict["where"] == "node-a/flannel.1", verdict
        assert "has no FDB entry for 02:00:00:00:01:01" in verdict["cause"], verdict
        assert "node-b's VTEP at 172.30.0.2" in verdict["cause"], verdict
        assert verdict["fix"] == (
            "ip netns exec node-a bridge fdb append 02:00:00:00:01:01 dev flannel.1 "
            "dst 172.30.0.2 self permanent"
        )
        (predicted,) = verdict["predicted"]
        assert (predicted["node"], predicted["code"]) == ("node-a", "tunnel.fdb"), predicted
        assert predicted["objects"] == verdict["objects"], (predicted, verdict)


def test_overlay_mtu_advice_counts_the_encapsulation(seen: Any) -> None:
    assert "mtu 1400" in seen["links"]
    case = seen["mtu"]
    assert case["code"] == 1, case["stderr"]
    for probe in case["report"]["probes"]:
        verdict = probe["verdict"]
        assert verdict["where"] == "node-a/ul0", verdict
        assert "1478-byte datagram (50 bytes of encapsulation)" in verdict["cause"], verdict
        # The overlay's MTU is the underlay's less the encapsulation, not 1488.
        assert verdict["fix"].startswith("ip netns exec node-a ip link set flannel.1 mtu 1350")
        (predicted,) = verdict["predicted"]
        assert (predicted["node"], predicted["code"]) == ("node-a", "tunnel.mtu"), predicted
        assert predicted["objects"] == verdict["objects"], (predicted, verdict)
        assert "1478-byte datagram" in predicted["why"], predicted
