"""Networks pathtrace did not build, traced as they are: the tutorial's own script,
a namespace only a process holds, and a name that is both a lab node and the
user's namespace. Each in a scratch host (tests/scratch.py): the scratch
namespace plays the host, pathtrace runs inside it, the machine's own is never
touched, and every probe goes to an address that exists only in there."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests import scratch

pytestmark = pytest.mark.root

SEED = next((Path(__file__).resolve().parents[3] / "shared" / "seed").glob("*.txt"), None)


def tutorial_script() -> str:
    """Section 7.1 of the tutorial, verbatim but for `sudo`, from the seed file."""
    if SEED is None:
        pytest.skip("the tutorial (shared/seed) is not beside the project")
    text = SEED.read_text()
    start = text.index("#!/bin/bash")
    end = text.index("\n7.2", start)
    return re.sub(r"\bsudo ", "", text[start:end])


# Runs the tutorial's script in the scratch host, then gives it what the script
# leaves out: an uplink to a `wan` that owns 8.8.8.8 and has no route back.
SETUP = r"""
import json, os, subprocess, sys
from pathtrace.system import netns

def sh(command):
    subprocess.run(["bash", "-c", command], check=True, capture_output=True)

def pathtrace(*argv):
    done = subprocess.run([sys.executable, "-m", "pathtrace", *argv], capture_output=True,
                          text=True, timeout=60)
    return done.returncode, done.stdout, done.stderr

subprocess.run(["bash", "-c", SCRIPT], capture_output=True)  # its own pings fail: no uplink
sh("ip netns add wan && ip link add eth0 type veth peer name eth0 netns wan && "
   "ip addr add 198.51.100.2/24 dev eth0 && ip link set eth0 up && "
   "ip -n wan addr add 198.51.100.1/24 dev eth0 && ip -n wan link set eth0 up && "
   "ip -n wan link set lo up && ip -n wan addr add 8.8.8.8/32 dev lo && "
   "ip route add default via 198.51.100.1")
"""


def program(body: str) -> str:
    return f"SCRIPT = {tutorial_script()!r}\n" + SETUP + body


def test_the_tutorials_network_is_traced_as_it_is() -> None:
    seen = scratch.result(
        program(
            r"""
out = {}
for name, target in (("bridged", "192.168.100.3"), ("internet", "8.8.8.8")):
    code, stdout, stderr = pathtrace("run", "ping", target, "--from", "container1", "-c", "1",
                                     "--json")
    out[name] = [code, json.loads(stdout) if stdout else stderr]
out["namespaces"] = netns.names()
print(json.dumps(out))
"""
        )
    )
    assert not [n for n in seen["namespaces"] if n.startswith("pt-")]  # no lab was made
    for name in ("bridged", "internet"):
        code, report = seen[name]
        assert code == 0, report
        assert set(report["namespaces"].values()) >= {"container1", "host"}
        request = report["probes"][0]["request"]["hops"]
        assert request[0]["node"] == "container1"
        assert any(h["node"] == "host" and h["captured"] for h in request)  # captured there
        snat = next(h for h in request if h["translation"])
        assert snat["node"] == "host" and snat["translation"]["kind"] == "SNAT"
        # The script's own rule, as iptables-nft wrote it, with its handle.
        assert "masquerade" in snat["translation"]["rule"]
        assert "ip saddr 192.168.100.0/24" in snat["translation"]["rule"]
        assert "packets" not in snat["translation"]["rule"]  # no live counters in citations
    # The surprise the tutorial's rule holds: no -o, so with br_netfilter the
    # bridged ping between the containers is masqueraded to the bridge's address.
    bridged = seen["bridged"][1]["probes"][0]
    snat = next(h for h in bridged["request"]["hops"] if h["translation"])
    assert snat["translation"]["after"].startswith("192.168.100.1:")
    assert any(
        "br0 sends it out of port veth-host2" in h["text"] for h in bridged["request"]["hops"]
    )
    assert bridged["reply"]["hops"][0]["packet"]["dst"] == "192.168.100.1"
    assert seen["internet"][1]["probes"][0]["verdict"]["outcome"] == "answered"


def test_a_name_both_a_lab_node_and_the_users_namespace() -> None:
    seen = scratch.result(
        program(
            r"""
out = {}
pathtrace("lab", "up")
out["clash"] = pathtrace("run", "ping", "192.168.100.3", "--from", "container1", "-c", "1")
out["theirs"] = pathtrace("run", "ping", "192.168.100.3", "--from", "netns:container1", "-c",
                          "1", "--json")[0]
out["lab"] = pathtrace("run", "ping", "8.8.8.8", "--from", "lab:container1", "-c", "1")[0]
pathtrace("lab", "down")
print(json.dumps(out))
"""
        )
    )
    code, stdout, stderr = seen["clash"]
    assert code == 2 and stderr.count("\n") == 1, stderr
    assert "pt-container1" in stderr and "/run/netns/container1" in stderr
    assert "lab:container1" in stderr and "netns:container1" in stderr
    assert seen["theirs"] == 0 and seen["lab"] == 0


def test_a_namespace_only_a_process_holds_is_found_and_named() -> None:
    seen = scratch.result(
        r"""
import json, os, subprocess, sys
from pathtrace.system import netns

def sh(command):
    subprocess.run(["bash", "-c", command], check=True, capture_output=True)

holder = subprocess.Popen(["unshare", "--net", "sleep", "120"])
for _ in range(100):  # until it has its own namespace
    if os.stat(f"/proc/{holder.pid}/ns/net").st_ino != os.stat("/proc/self/ns/net").st_ino:
        break
    __import__("time").sleep(0.01)
pid = holder.pid
sh(f"ip link add h0 type veth peer name p0 netns /proc/{pid}/ns/net && "
   f"ip addr add 10.9.0.1/24 dev h0 && ip link set h0 up && "
   f"nsenter -t {pid} -n sh -c 'ip addr add 10.9.0.2/24 dev p0 && ip link set p0 up && "
   f"ip link set lo up'")
# A namespace on the same machine that the path cannot reach: left alone.
sh("ip netns add island && ip -n island link add i0 type veth peer name i1 && "
   "ip -n island link set i0 up && ip -n island link set i1 up")
done = subprocess.run([sys.executable, "-m", "pathtrace", "run", "ping", "10.9.0.1",
                       "--from", str(pid), "-c", "1", "--json"], capture_output=True, text=True)
holder.kill()
print(json.dumps({"code": done.returncode, "report": json.loads(done.stdout or "null"),
                  "stderr": done.stderr, "pid": pid}))
"""
    )
    assert seen["code"] == 0, seen["stderr"]
    report = seen["report"]
    nodes = set(report["namespaces"].values())
    assert "host" in nodes and "island" not in nodes  # what the path reaches, nothing else
    held = next(n for n in nodes if n != "host")
    assert re.fullmatch(rf"netns:\d+ \(pid {seen['pid']}, (sleep|unshare)\)", held), held
    verdict = report["probes"][0]["verdict"]
    assert verdict["outcome"] == "answered" and verdict["where"] == "host"
    assert "pathtrace lab" not in str(report)  # no lab advice on a network it did not build
