"""Networks pathtrace did not build, traced as they are: the tutorial's own script,
a namespace only a process holds, and a name that is both a lab node and the
user's namespace. Each in a scratch host (tests/scratch.py): the scratch
namespace plays the host, pathtrace runs inside it, the machine's own is never
touched, and every probe goes to an address that exists only in there."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests import networks, scratch

pytestmark = pytest.mark.root


def tutorial_script() -> str:
    """Section 7.1 of the tutorial, verbatim but for `sudo`, from the seed file."""
    script = networks.tutorial_script()
    if script is None:
        pytest.skip("the tutorial (shared/seed) is not beside the project")
    return script


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

from tests.networks import WAN_SETUP
subprocess.run(["bash", "-c", SCRIPT], capture_output=True)  # its own pings fail: no uplink
sh(WAN_SETUP)
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
    assert set(seen["bridged"][1]["namespaces"].values()) == {"container1", "host", "container2"}
    assert set(seen["internet"][1]["namespaces"].values()) == {"container1", "host", "wan"}
    bridged = seen["bridged"][1]["probes"][0]
    snat = next(h for h in bridged["request"]["hops"] if h["translation"])
    assert snat["translation"]["after"].startswith("192.168.100.1:")
    # Between two ports of br0, with the SNAT in between: forwarded (or flooded) from
    # port to port, as the FDB and the frame's MAC say.
    texts = [h["text"] for h in bridged["request"]["hops"]]
    assert any(
        t.startswith(
            (
                "br0 forwards it from veth-host1 to veth-host2 (FDB: ",
                "br0 floods it from veth-host1 out of veth-host2 (",
            )
        )
        for t in texts
    ), texts
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


def held_by_a_process(holder: str, also: str = "", source: str = "") -> Any:
    """A namespace that only a process holds (``holder``, a shell command that
    ends by exec'ing ``sleep``), a veth pair to it from the scratch host, ``also``
    run in the host, and `run ping` from ``source`` (default: the holder's pid):
    what it printed."""
    return scratch.result(
        rf"""
import json, os, subprocess, sys, time

def sh(command):
    subprocess.run(["bash", "-c", command], check=True, capture_output=True)

holder = subprocess.Popen(["sh", "-c", {holder!r}])
for _ in range(300):  # until the holder is in its namespaces, its last command running
    if os.readlink(f"/proc/{{holder.pid}}/exe").endswith("sleep"):
        break
    time.sleep(0.01)
pid = holder.pid
sh(f"ip link add h0 type veth peer name p0 netns /proc/{{pid}}/ns/net && "
   f"ip addr add 10.9.0.1/24 dev h0 && ip link set h0 up && "
   f"nsenter -t {{pid}} -n sh -c 'ip addr add 10.9.0.2/24 dev p0 && ip link set p0 up && "
   f"ip link set lo up'")
sh({also!r} or "true")
done = subprocess.run([sys.executable, "-m", "pathtrace", "run", "ping", "10.9.0.1",
                       "--from", {source!r} or str(pid), "-c", "1", "--json"],
                      capture_output=True, text=True)
holder.kill()
print(json.dumps({{"code": done.returncode, "report": json.loads(done.stdout or "null"),
                  "stderr": done.stderr, "pid": pid}}))
"""
    )


def test_a_namespace_only_a_process_holds_is_found_and_named() -> None:
    seen = held_by_a_process(
        "exec unshare --net sleep 120",
        # A namespace on the same machine that the path cannot reach: left alone.
        "ip netns add island && ip -n island link add i0 type veth peer name i1 && "
        "ip -n island link set i0 up && ip -n island link set i1 up",
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


# What the configurator programs share: a shell, pathtrace's JSON, the kernel's
# per-rule counters (which rule matched, as the kernel counts), and an uplink to a
# `wan` owning 8.8.8.8 (WAN(), once the configurator has made the host's side).
CONFIGURATOR_PRELUDE = r"""
import hashlib, json, os, re, subprocess, sys, time
from pathtrace.system import netns

def sh(command, **kw):
    return subprocess.run(["bash", "-c", command], check=True, capture_output=True, text=True, **kw)

def pathtrace(*argv):
    done = subprocess.run([sys.executable, "-m", "pathtrace", *argv], capture_output=True,
                          text=True, timeout=60)
    return done.returncode, json.loads(done.stdout) if done.stdout else done.stderr

def counters():
    # handle -> packets, from the host's own ruleset: which rule matched, as the kernel counts.
    text = sh("nft -a list ruleset").stdout
    return {int(h): int(p) for p, h in re.findall(r"packets (\d+) .*# handle (\d+)", text)}

def WAN():
    from tests.networks import WAN_SETUP
    sh(WAN_SETUP)
"""


CNI = (
    CONFIGURATOR_PRELUDE
    + r"""

from tests.networks import cni, CNI_BRIDGE as bridge

os.makedirs("/run/cni", exist_ok=True)
results = {}
for pod in ("pod1", "pod2"):
    sh(f"ip netns add {pod}")
    results[pod] = cni("bridge", pod, bridge)
cni("portmap", "pod1", {"cniVersion": "1.0.0", "name": "testnet", "type": "portmap",
                        "capabilities": {"portMappings": True},
                        "runtimeConfig": {"portMappings": [
                            {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]},
                        "prevResult": results["pod1"]})
WAN()
listener = subprocess.Popen(["nsenter", "--net=/run/netns/pod1", sys.executable, "-c",
    "import socket, time; s = socket.socket(); s.bind(('0.0.0.0', 80)); s.listen(); "
    "print('ready', flush=True); time.sleep(120)"], stdout=subprocess.PIPE, text=True)
listener.stdout.readline()
pod1 = results["pod1"]["ips"][0]["address"].split("/")[0]
pod2 = results["pod2"]["ips"][0]["address"].split("/")[0]
out = {"pod1": pod1, "pod2": pod2}
before = counters()
out["internet"] = pathtrace("run", "ping", "8.8.8.8", "--from", "pod1", "-c", "1", "--json")
out["internet_counted"] = [h for h, n in counters().items() if n > before.get(h, 0)]
out["pods"] = pathtrace("run", "ping", pod2, "--from", "pod1", "-c", "1", "--json")
before = counters()
out["hostport"] = pathtrace("run", "tcp", "198.51.100.2:8080", "--from", "wan", "-c", "1",
                            "--json")
out["hostport_counted"] = [h for h, n in counters().items() if n > before.get(h, 0)]
listener.kill()
for pod in ("pod2", "pod1"):
    cni("bridge", pod, bridge, "DEL")
print(json.dumps(out))
"""
)


def test_a_cni_network_is_traced_with_its_rules() -> None:
    if not Path("/usr/lib/cni/bridge").exists():
        pytest.fail("the CNI plugins are not installed: make setup installs them")
    seen = scratch.result(CNI)

    def hops(name: str, series: str = "request") -> list[dict[str, object]]:
        code, report = seen[name]
        assert code == 0, report
        return report["probes"][0][series]["hops"]  # type: ignore[no-any-return]

    # pod -> internet: the CNI chain's masquerade, reached by a jump from POSTROUTING.
    snat = next(h for h in hops("internet") if h["translation"])
    rule = snat["translation"]["rule"]  # type: ignore[index]
    assert snat["node"] == "host" and "nat POSTROUTING -> CNI-" in rule, rule
    assert "masquerade" in rule and 'comment: name: "testnet" id: "pod1"' in rule, rule
    assert "iptables: -A CNI-" in rule and "-j MASQUERADE" in rule, rule
    handle = int(re.search(r"CNI-\w+ handle (\d+)", rule).group(1))  # type: ignore[union-attr]
    assert handle in seen["internet_counted"]  # the kernel's own count agrees
    # pod -> pod: bridged by cni0, no translation (the CNI chain accepts its subnet).
    texts = [str(h["text"]) for h in hops("pods")]
    assert any(t.startswith("cni0 forwards it from veth") for t in texts), texts
    assert not any(h["translation"] for h in hops("pods"))
    # wan -> the hostPort: portmap's DNAT, through its chains.
    dnat = next(h for h in hops("hostport") if h["translation"])
    rule = dnat["translation"]["rule"]  # type: ignore[index]
    assert dnat["translation"]["kind"] == "DNAT" and "CNI-HOSTPORT-DNAT" in rule, rule  # type: ignore[index]
    assert str(dnat["translation"]["after"]).startswith(f"{seen['pod1']}:80")  # type: ignore[index]
    handle = int(re.findall(r"handle (\d+)", rule)[0])
    assert handle in seen["hostport_counted"], (rule, seen["hostport_counted"])
    assert seen["hostport"][1]["probes"][0]["verdict"]["outcome"] == "answered"
    nodes = set(seen["internet"][1]["namespaces"].values())
    assert nodes == {"pod1", "host", "wan"}  # pod2, beside the path, is left alone
    assert set(seen["pods"][1]["namespaces"].values()) == {"pod1", "host", "pod2"}
    # wan -> host:8080 reaches pod1 through the DNAT: pod1 is traced too.
    assert set(seen["hostport"][1]["namespaces"].values()) == {"wan", "host", "pod1"}


def test_legacy_iptables_rules_are_read() -> None:
    """Rules nft cannot list (x_tables, made by iptables-legacy) are read with
    iptables-legacy-save: the SNAT names its rule, a drop cites its rule, and the
    fix, run as printed, heals."""
    seen = scratch.result(
        r"""
import json, re, subprocess, sys

def sh(command):
    subprocess.run(["bash", "-c", command], check=True, capture_output=True)

def run():
    done = subprocess.run([sys.executable, "-m", "pathtrace", "run", "ping", "8.8.8.8",
                           "--from", "c", "-c", "1", "--json"], capture_output=True, text=True)
    return json.loads(done.stdout or "null"), done.stderr

sh("ip netns add c && ip link add v0 type veth peer name v1 netns c && "
   "ip addr add 10.7.0.1/24 dev v0 && ip link set v0 up && "
   "ip -n c addr add 10.7.0.2/24 dev v1 && ip -n c link set v1 up && "
   "ip -n c route add default via 10.7.0.1 && sysctl -qw net.ipv4.ip_forward=1 && "
   "ip netns add wan && ip link add eth0 type veth peer name eth0 netns wan && "
   "ip addr add 198.51.100.2/24 dev eth0 && ip link set eth0 up && "
   "ip -n wan addr add 198.51.100.1/24 dev eth0 && ip -n wan link set eth0 up && "
   "ip -n wan link set lo up && ip -n wan addr add 8.8.8.8/32 dev lo && "
   "ip route add default via 198.51.100.1 && "
   "iptables-legacy -t nat -A POSTROUTING -s 10.7.0.0/24 -o eth0 -j MASQUERADE")
answered, err = run()
sh("iptables-legacy -A FORWARD -s 10.7.0.0/24 -p icmp -j DROP")
dropped, _ = run()
fix = dropped["probes"][0]["verdict"]["fix"] if dropped else ""
command = re.match(r"^(iptables-legacy [^(]+?)(?: \(|$)", fix or "")
if command:
    sh(command.group(1))
healed, _ = run()
doctor = subprocess.run([sys.executable, "-m", "pathtrace", "doctor", "--json"],
                        capture_output=True, text=True)
sh("iptables-legacy -t nat -F && iptables-legacy -F")
print(json.dumps({"run": answered, "err": err, "dropped": dropped, "healed": healed,
                  "doctor": json.loads(doctor.stdout or "null")}))
"""
    )
    report = seen["run"]
    assert report is not None, seen["err"]
    assert report["probes"][0]["verdict"]["outcome"] == "answered"
    assert any("read with iptables-legacy-save" in n for n in report["notes"])
    snat = next(h for h in report["probes"][0]["request"]["hops"] if h["translation"])
    assert snat["translation"]["kind"] == "SNAT"
    assert "iptables-legacy: -A POSTROUTING -s 10.7.0.0/24 -o eth0 -j MASQUERADE" in str(
        snat["translation"]["rule"]
    )
    verdict = seen["dropped"]["probes"][0]["verdict"]
    assert verdict["outcome"] == "dropped" and verdict["code"] == "nf.drop", verdict
    assert verdict["objects"] == ["nf:host/ip filter FORWARD rule 1"]
    assert "filter FORWARD rule 1" in verdict["cause"], verdict["cause"]
    assert verdict["fix"].startswith("iptables-legacy -t filter -D FORWARD 1"), verdict["fix"]
    assert seen["healed"]["probes"][0]["verdict"]["outcome"] == "answered"
    assert sorted(seen["doctor"]["legacy_iptables"]) == ["filter", "nat"]


def test_the_advised_fix_for_someone_elses_rule_works() -> None:
    """A drop by a rule the user made with iptables (no nft comment, and no warning
    from nft for that table): cited in iptables' words, and the fix, run as printed,
    makes the same probe answered."""
    seen = scratch.result(
        program(
            r"""
sh("iptables -I FORWARD -d 192.168.100.3 -j DROP")
code, before, _ = pathtrace("run", "ping", "192.168.100.3", "--from", "container1", "-c", "1")
verdict = json.loads(pathtrace("run", "ping", "192.168.100.3", "--from", "container1", "-c",
                               "1", "--json")[1])["probes"][0]["verdict"]
command = verdict["fix"]  # a network with no restore command: the fix is one command
sh(command)
after = pathtrace("run", "ping", "192.168.100.3", "--from", "container1", "-c", "1")[0]
print(json.dumps({"code": code, "text": before, "verdict": verdict, "command": command,
                  "after": after}))
"""
        )
    )
    assert seen["code"] == 1 and seen["verdict"]["outcome"] == "dropped"
    assert "iptables: -A FORWARD -d 192.168.100.3/32 -j DROP" in seen["verdict"]["cause"]
    assert seen["command"] == "iptables -t filter -D FORWARD -d 192.168.100.3/32 -j DROP"
    assert seen["after"] == 0  # the fix, as printed, fixed it
    # The text report wraps the cause under itself, never back at column 0.
    why = seen["text"].split("  why:   ", 1)[1].split("\n  fix:")[0].splitlines()
    assert len(why) > 1 and all(line.startswith(" " * 9) for line in why[1:]), why


def test_the_host_sends_when_named_so_and_only_inside_the_machine() -> None:
    seen = scratch.result(
        program(
            r"""
out = {}
for name, target in (("bridged", "192.168.100.3"), ("wan", "8.8.8.8")):
    code, stdout, stderr = pathtrace("run", "ping", target, "--from", "host", "-c", "1", "--json")
    out[name] = [code, json.loads(stdout) if stdout else stderr]
# Nobody here owns it: it would leave the machine.
out["nobody"] = pathtrace("run", "ping", "203.0.113.5", "--from", "host", "-c", "1")
# wan owns it, but the host's route to it goes out of a tun device.
sh("ip -n wan addr add 8.8.4.4/32 dev lo && ip tuntap add tun9 mode tun && "
   "ip link set tun9 up && ip route add 8.8.4.4/32 dev tun9")
out["tun"] = pathtrace("run", "ping", "8.8.4.4", "--from", "host", "-c", "1")
out["pid"] = pathtrace("run", "ping", "8.8.8.8", "--from", str(os.getpid()), "-c", "1")
pathtrace("lab", "up")
out["clash"] = pathtrace("run", "ping", "8.8.8.8", "--from", "host", "-c", "1")
out["netns"] = pathtrace("run", "ping", "8.8.8.8", "--from", "netns:host", "-c", "1",
                         "--json")
out["lab"] = pathtrace("run", "ping", "8.8.8.8", "--from", "lab:host", "-c", "1", "--json")[:2]
pathtrace("lab", "down")
print(json.dumps(out))
"""
        )
    )
    for name, owner in (("bridged", "container2"), ("wan", "wan")):
        code, report = seen[name]
        assert code == 0, report
        probe = report["probes"][0]
        assert probe["verdict"]["outcome"] == "answered"
        assert probe["request"]["hops"][0]["node"] == "host"
        assert probe["request"]["hops"][0]["captured"]
        assert owner in report["namespaces"].values()
    bridged = seen["bridged"][1]["probes"][0]["request"]["hops"]
    assert any(
        h["text"].startswith(("br0 sends it out of port veth-host2", "br0 floods it out of port"))
        for h in bridged
    ), bridged
    for name, words in (("nobody", "not an address of any namespace"), ("tun", "out of tun9")):
        code, stdout, stderr = seen[name]
        assert code == 2 and stderr.count("\n") == 1 and words in stderr, stderr
        assert "pathtrace sends from the host only to namespaces on this machine" in stderr
    code, _, stderr = seen["pid"]
    assert code == 2 and "say --from host" in stderr, stderr
    code, _, stderr = seen["clash"]
    assert code == 2 and "lab:host" in stderr and "netns:host" in stderr, stderr
    # netns:host is the scratch host itself; lab:host the lab's pt-host.
    code, stdout, stderr = seen["netns"]
    assert code == 0, stderr
    assert json.loads(stdout)["probes"][0]["request"]["hops"][0]["node"] == "host"
    code, stdout = seen["lab"]
    report = json.loads(stdout)
    assert code == 0 and report["run"]["source_namespace"] == "pt-host", report["run"]


NETAVARK = (
    CONFIGURATOR_PRELUDE
    + r"""

NETWORK = {"name": "podman", "id": hashlib.sha256(b"podman").hexdigest(),
           "driver": "bridge", "network_interface": "podman0",
           "subnets": [{"subnet": "10.88.0.0/16", "gateway": "10.88.0.1"}],
           "ipv6_enabled": False, "internal": False, "dns_enabled": False,
           "ipam_options": {"driver": "host-local"}}
os.makedirs("/run/netavark", exist_ok=True)
for pod, address, ports in (("web", "10.88.0.14", [{"host_ip": "", "container_port": 80,
                            "host_port": 8080, "range": 1, "protocol": "tcp"}]),
                            ("db", "10.88.0.15", [])):
    sh(f"ip netns add {pod}")
    # What podman hands netavark for a container: its network options, on stdin.
    options = {"container_id": hashlib.sha256(pod.encode()).hexdigest(),
               "container_name": pod, "port_mappings": ports,
               "networks": {"podman": {"static_ips": [address], "interface_name": "eth0"}},
               "network_info": {"podman": NETWORK}}
    sh(f"/usr/lib/podman/netavark --config /run/netavark setup /run/netns/{pod}",
       input=json.dumps(options))
WAN()
listener = subprocess.Popen(["nsenter", "--net=/run/netns/web", sys.executable, "-c",
    "import socket, time; s = socket.socket(); s.bind(('0.0.0.0', 80)); s.listen(); "
    "print('ready', flush=True); time.sleep(120)"], stdout=subprocess.PIPE, text=True)
listener.stdout.readline()
out = {}
before = counters()
out["internet"] = pathtrace("run", "ping", "8.8.8.8", "--from", "web", "-c", "1", "--json")
out["internet_counted"] = [h for h, n in counters().items() if n > before.get(h, 0)]
out["pods"] = pathtrace("run", "ping", "10.88.0.15", "--from", "web", "-c", "1", "--json")
before = counters()
out["hostport"] = pathtrace("run", "tcp", "198.51.100.2:8080", "--from", "wan", "-c", "1",
                            "--json")
out["hostport_counted"] = [h for h, n in counters().items() if n > before.get(h, 0)]
listener.kill()
print(json.dumps(out))
"""
)


def test_a_netavark_network_is_traced_with_its_rules() -> None:
    """podman's own configurator, called as podman calls it (network options on
    stdin, a namespace path), writing its iptables rules through iptables-nft."""
    if not Path("/usr/lib/podman/netavark").exists():
        pytest.fail("netavark is not installed: make setup installs it")
    seen = scratch.result(NETAVARK)

    def hops(name: str) -> list[dict[str, object]]:
        code, report = seen[name]
        assert code == 0, report
        return report["probes"][0]["request"]["hops"]  # type: ignore[no-any-return]

    snat = next(h for h in hops("internet") if h["translation"])
    rule = str(snat["translation"]["rule"])  # type: ignore[index]
    assert snat["node"] == "host" and "nat POSTROUTING -> NETAVARK-" in rule, rule
    assert "iptables: -A NETAVARK-" in rule and "-j MASQUERADE" in rule, rule
    handle = int(re.search(r"NETAVARK-\w+ handle (\d+)", rule).group(1))  # type: ignore[union-attr]
    assert handle in seen["internet_counted"], (rule, seen["internet_counted"])
    texts = [str(h["text"]) for h in hops("pods")]
    assert any(
        t.startswith(("podman0 forwards it from veth", "podman0 floods it from veth"))
        for t in texts
    ), texts
    assert not any(h["translation"] for h in hops("pods"))
    dnat = next(h for h in hops("hostport") if h["translation"])
    rule = str(dnat["translation"]["rule"])  # type: ignore[index]
    assert dnat["translation"]["kind"] == "DNAT", dnat  # type: ignore[index]
    assert "NETAVARK-HOSTPORT-DNAT" in rule and "dnat name: podman id: " in rule, rule
    assert str(dnat["translation"]["after"]).startswith("10.88.0.14:80")  # type: ignore[index]
    handle = int(re.findall(r"handle (\d+)", rule)[-1])
    assert handle in seen["hostport_counted"], (rule, seen["hostport_counted"])
    assert seen["hostport"][1]["probes"][0]["verdict"]["outcome"] == "answered"
    assert set(seen["internet"][1]["namespaces"].values()) == {"web", "host", "wan"}
    # One name per namespace across the whole report: the host is "host" in every
    # series (a namespace first seen mid-run once renamed it "root").
    report = seen["hostport"][1]
    probe = report["probes"][0]
    series = [probe["request"], probe["reply"], *probe["others"]]
    nodes = {h["node"] for s in series for h in s["hops"]}
    assert nodes == {"wan", "host", "web"}, nodes


def test_a_container_is_named_by_its_own_hostname() -> None:
    """A namespace held by a process with a UTS namespace of its own (as every
    container has) is called by that hostname."""
    seen = held_by_a_process(
        "exec unshare --net --uts sh -c 'hostname web-1 && exec sleep 120'", source="web-1"
    )
    assert seen["code"] == 0, seen["stderr"]  # --from takes the name it is shown by
    names = set(seen["report"]["namespaces"].values())
    held = next(n for n in names if n != "host")
    assert held == "web-1", held
    assert seen["report"]["probes"][0]["request"]["hops"][0]["node"] == held


DOCKER = (
    CONFIGURATOR_PRELUDE
    + r"""

# dockerd of its own in the scratch host: its state under the private /run, its
# socket there; it writes docker0 and its iptables rules here, as on any node.
os.makedirs("/run/dk/rootfs/bin")
os.environ["DOCKER_HOST"] = "unix:///run/dk/docker.sock"
daemon = subprocess.Popen(["dockerd", "--data-root", "/run/dk/data", "--exec-root",
                           "/run/dk/exec", "-H", "unix:///run/dk/docker.sock", "--pidfile",
                           "/run/dk/docker.pid", "--bip", "172.17.0.1/16"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
for _ in range(150):
    if os.path.exists("/run/dk/docker.sock"):
        break
    time.sleep(0.1)
# An image without a registry: busybox alone, imported.
sh("cp /bin/busybox /run/dk/rootfs/bin/busybox && "
   "tar -C /run/dk/rootfs -c . | docker import - bb:1")
sh("docker run -d --name web -p 8080:80 bb:1 /bin/busybox httpd -f -p 80")
sh("docker run -d --name db bb:1 /bin/busybox sleep 300")
pid = {n: int(sh(f"docker inspect -f '{{{{.State.Pid}}}}' {n}").stdout) for n in ("web", "db")}
ip = {n: sh(f"docker inspect -f '{{{{.NetworkSettings.IPAddress}}}}' {n}").stdout.strip()
      for n in ("web", "db")}
web_id = sh("docker inspect -f '{{.Id}}' web").stdout.strip()
WAN()
out = {"ip": ip, "web_id": web_id, "pid": pid}
before = counters()
out["internet"] = pathtrace("run", "ping", "8.8.8.8", "--from", str(pid["web"]), "-c", "1",
                            "--json")
out["internet_counted"] = [h for h, n in counters().items() if n > before.get(h, 0)]
# Containers by the names Docker gives them: its name, an id prefix.
out["containers"] = pathtrace("run", "ping", ip["db"], "--from", "web", "-c", "1", "--json")
out["by_id"] = pathtrace("run", "ping", ip["db"], "--from", web_id[:8], "-c", "1", "--json")
out["unknown"] = pathtrace("run", "ping", ip["db"], "--from", "nosuchbox", "-c", "1")
before = counters()
out["hostport"] = pathtrace("run", "tcp", "198.51.100.2:8080", "--from", "wan", "-c", "1",
                            "--json")
out["hostport_counted"] = [h for h, n in counters().items() if n > before.get(h, 0)]
subprocess.run(["docker", "rm", "-f", "web", "db"], capture_output=True)
daemon.terminate()
daemon.wait(timeout=20)
print(json.dumps(out))
"""
)


def test_a_docker_network_is_traced_with_its_rules() -> None:
    """Docker's own daemon (in the scratch host), two containers of an imported
    busybox image, one publishing 8080: its MASQUERADE, its DNAT in the DOCKER
    chain behind PREROUTING's addrtype jump, its FORWARD policy drop with the
    accepts it writes, containers found through /proc and named as `docker ps` names
    them, and given to --from by name or id prefix."""
    if shutil.which("dockerd") is None:
        pytest.fail("docker.io is not installed: make setup installs it")
    seen = scratch.result(DOCKER, timeout=240)

    def hops(name: str) -> list[dict[str, object]]:
        code, report = seen[name]
        assert code == 0, report
        return report["probes"][0]["request"]["hops"]  # type: ignore[no-any-return]

    snat = next(h for h in hops("internet") if h["translation"])
    rule = str(snat["translation"]["rule"])  # type: ignore[index]
    assert snat["node"] == "host" and "nat POSTROUTING handle" in rule, rule
    assert "iptables: -A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE" in rule, rule
    handle = int(re.search(r"POSTROUTING handle (\d+)", rule).group(1))  # type: ignore[union-attr]
    assert handle in seen["internet_counted"], (rule, seen["internet_counted"])
    assert hops("internet")[0]["node"] == "web"  # as `docker ps` names it, not its hostname
    assert seen["internet"][1]["probes"][0]["verdict"]["outcome"] == "answered"
    texts = [str(h["text"]) for h in hops("containers")]
    assert any(
        t.startswith(("docker0 forwards it from veth", "docker0 floods it from veth"))
        for t in texts
    ), texts
    assert seen["containers"][1]["probes"][0]["verdict"]["outcome"] == "answered"
    for case in ("containers", "by_id"):
        report = seen[case][1]
        source = report["run"]["source_namespace"]
        assert report["namespaces"][source] == "web", report["namespaces"]
        assert hops(case)[-1]["node"] == "db", hops(case)
    code, text = seen["unknown"]
    assert code == 2 and "unknown node 'nosuchbox'" in text, text
    dnat = next(h for h in hops("hostport") if h["translation"])
    rule = str(dnat["translation"]["rule"])  # type: ignore[index]
    assert "nat PREROUTING -> DOCKER handle" in rule, rule
    assert f"-j DNAT --to-destination {seen['ip']['web']}:80" in rule, rule
    handle = int(re.findall(r"handle (\d+)", rule)[-1])
    assert handle in seen["hostport_counted"], (rule, seen["hostport_counted"])
    assert seen["hostport"][1]["probes"][0]["verdict"]["outcome"] == "answered"
