"""On a kernel with kprobes and fentry but no BPF netfilter links (Debian 6.1,
booted by virtme-ng: `make test-vm`), the engine uses fentry/kprobe hooks on
veth_xmit, the bridge and the NAT function, and still follows a tagged ping
through SNAT and back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP

from pathtrace.inject import send
from pathtrace.lab import topology
from pathtrace.model.options import RunOptions
from pathtrace.session import Run
from tests.conftest import pathtrace
from tests.matchers import assert_ordered_subset
from tests.tracing import Session, ping

pytestmark = [pytest.mark.vm, pytest.mark.root]


def test_doctor_uses_fentry_or_kprobes(lab: topology.Topology) -> None:
    # The doctor loads every build the emulated CPU verifies: minutes on a busy host.
    result = pathtrace("doctor", "--json", timeout=300)
    data = json.loads(result.stdout)
    print(json.dumps(data["hooks"], indent=1))
    used = {h["family"]: h["via"] for h in data["hooks"] if h["state"] == "used"}
    assert used.get("device") == "tp_btf"
    for family in ("veth", "bridge", "nat"):
        assert used.get(family) in ("fentry", "kprobe"), (family, data["hooks"])
    assert used.get("conntrack") == "kprobe", data["hooks"]
    nf = next(h for h in data["hooks"] if h["family"] == "netfilter")
    assert nf["state"] == "unavailable" and "6.4" in nf["reason"], os.uname().release
    # 6.1 has no read-only cast of any address: the helper-reading builds, saying why.
    for family in ("device", "drop"):
        hook = next(h for h in data["hooks"] if h["family"] == family and h["state"] == "used")
        assert hook["probe_object"] == f"{family}.compat.bpf.o", hook
        assert "plain loads refused" in hook["reason"], hook


def test_tagged_ping_through_snat_seen_by_the_nat_function(traced: Session) -> None:
    traced.send("container1", ping("8.8.8.8"))
    lab = traced.lab
    c1, host, wan = (lab.namespace(n) for n in ("container1", "host", "wan"))
    events = traced.collect(
        lambda evs: any(
            e.tag == "reply" and e.namespace == c1 and e.hook == "dev_recv" for e in evs
        ),
        timeout=20,
    )
    assert_ordered_subset(
        events,
        [
            {"hook": "veth_xmit", "namespace": c1, "ifname": "veth-cont1", "tag": "request"},
            {"hook": "br_handle_frame", "namespace": host, "ifname": "veth-host1"},
            {"hook": "nat_before", "nf_hook": "SNAT", "namespace": host, "src": "192.168.100.2"},
            {"hook": "nat_after", "namespace": host, "src": "198.51.100.2"},
            {"hook": "dev_xmit", "namespace": host, "ifname": "eth0", "src": "198.51.100.2"},
            {"hook": "dev_recv", "namespace": wan, "ifname": "eth0", "tag": "request"},
            {"hook": "dev_recv", "namespace": host, "ifname": "eth0", "tag": "reply"},
            {"hook": "nat_after", "namespace": host, "dst": "192.168.100.2", "tag": "reply"},
            {"hook": "dev_recv", "namespace": c1, "ifname": "veth-cont1", "tag": "reply"},
        ],
    )


def test_conntrack_says_why_it_refuses_a_segment(traced: Session) -> None:
    """A tagged SYN+FIN through the host's masquerade: conntrack's TCP tracker
    refuses it (INVALID), and its call to log that (made with logging off: the
    sysctl is tested inside) gives its words, read by the conntrack kprobes."""
    c1, host = traced.lab.namespace("container1"), traced.lab.namespace("host")
    probe = send.Probe("tcp", IPv4Address("8.8.8.8"), port=80)
    packet = IP(send.build(probe, send.source_address(c1, probe.dst), traced.tracer.run, 0))
    packet[TCP].flags = "SF"
    del packet[IP].chksum, packet[TCP].chksum
    with send.Sender(c1) as sender:
        sender.send(bytes(packet), probe.dst)
    events = traced.collect(lambda evs: any(e.hook == "ct_invalid" for e in evs), timeout=20)
    said = [(e.namespace, e.location) for e in events if e.hook == "ct_invalid"]
    assert said and said[0] == (host, "invalid tcp flag combination"), said


def test_bridge_forwarding_seen_by_br_forward(traced: Session) -> None:
    traced.send("container1", ping("192.168.100.3"))
    lab = traced.lab
    host = lab.namespace("host")
    events = traced.collect(
        lambda evs: any(
            e.tag == "reply" and e.hook == "dev_recv" and e.ifname == "veth-cont1" for e in evs
        ),
        timeout=20,
    )
    assert_ordered_subset(
        events,
        [
            {
                "hook": "br_handle_frame",
                "namespace": host,
                "ifname": "veth-host1",
                "tag": "request",
            },
            {"hook": "br_forward", "namespace": host, "ifname": "veth-host2", "tag": "request"},
        ],
    )


# The same namespace tests as on this kernel, in the second one too: per-thread
# namespaces (create, enter, leave from threads; the lab from a thread) and a
# network pathtrace did not build, found through RTM_GETNSID and traced.
from tests.e2e.test_foreign import (  # noqa: E402
    test_a_namespace_only_a_process_holds_is_found_and_named as test_foreign_namespace_in_the_vm,
)
from tests.lab.test_threads import (  # noqa: E402
    test_create_enter_leave_from_many_threads_at_once as test_threads_in_the_vm,
)
from tests.lab.test_threads import (  # noqa: E402
    test_lab_up_and_down_from_a_thread_leave_the_host_as_it_was as test_lab_from_a_thread_in_the_vm,
)

__all__ = [
    "test_foreign_namespace_in_the_vm",
    "test_lab_from_a_thread_in_the_vm",
    "test_threads_in_the_vm",
]


def test_ipv6_through_nat66_on_this_kernel(lab: topology.Topology) -> None:
    """Tagged IPv6 followed by the kprobe/fentry NAT hooks (no netfilter links here)."""
    result = Run(RunOptions.parse("ping", "2001:4860:4860::8888", count=1), lab).execute()
    probe = result.probes[0]
    assert probe.verdict.outcome == "answered", probe.verdict
    snat = next(h for h in probe.request.hops if h.translation)
    assert snat.translation is not None and snat.translation.kind == "SNAT"
    assert snat.translation.after.startswith("[2001:db8::2]:icmpv6/")
    assert "masquerade6" in (snat.translation.rule or ""), snat.translation


def test_watch_follows_a_real_ping_through_the_masquerade(
    lab: topology.Topology, topology_file: Path
) -> None:
    """6.1's verifier explores the helper-reading builds' watch programs within
    its million instructions only with the parse verified apart (PT_SPLIT; it
    refused them whole: E2BIG). A real ping, untagged, followed out through the
    masquerade and back, with the NAT hop seen by the kprobe/fentry NAT probe."""
    watch = subprocess.Popen(
        [sys.executable, "-m", "pathtrace", "watch", "icmp", "--from", "container1",
         "--count", "1", "--duration", "60", "--json", "--topology", str(topology_file)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    armed = watch.stderr.readline() if watch.stderr else ""
    pinged = subprocess.run(
        ["ip", "netns", "exec", lab.namespace("container1"), "ping", "-c", "1", "-W", "5",
         "8.8.8.8"], capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    out, err = watch.communicate(timeout=300)
    assert "watching 'icmp'" in armed, armed + err
    assert pinged.returncode == 0 and watch.returncode == 0, (pinged.stdout, err)
    (flow,) = json.loads(out)["flows"]
    assert flow["source"] == "container1" and flow["verdict"]["outcome"] == "answered", flow
    request = next(p for p in flow["packets"] if p["direction"] == "request" and p["hops"])
    assert request["hops"][0]["node"] == "container1" and request["hops"][-1]["node"] == "wan"
    (snat,) = [h["translation"] for h in request["hops"] if h["translation"]]
    assert snat["kind"] == "SNAT" and snat["after"].startswith("198.51.100.2"), snat
    reply = next(p for p in flow["packets"] if p["direction"] == "reply" and p["hops"])
    assert reply["hops"][-1]["node"] == "container1", reply["hops"]


def test_a_watched_segment_conntrack_refuses_is_said_so_in_its_words(
    lab: topology.Topology, topology_file: Path
) -> None:
    """Watch and the conntrack kprobes on one kernel: an untagged SYN+FIN from
    container1 through the masquerade is INVALID to conntrack in host, and the
    flow's line says why in the TCP tracker's own words."""
    watch = subprocess.Popen(
        [sys.executable, "-m", "pathtrace", "watch", "tcp port 80", "--from", "container1",
         "--duration", "8", "--json", "--topology", str(topology_file)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    armed = watch.stderr.readline() if watch.stderr else ""
    c1 = lab.namespace("container1")
    dst = IPv4Address("8.8.8.8")
    packet = IP(src=str(send.source_address(c1, dst)), dst=str(dst)) / TCP(
        sport=40123, dport=80, flags="SF"
    )
    with send.Sender(c1) as sender:
        sender.send(bytes(packet), dst)
    out, err = watch.communicate(timeout=300)
    assert "watching 'tcp port 80'" in armed, armed + err
    (flow,) = json.loads(out)["flows"]
    assert flow["invalid"] and flow["invalid"][0].startswith("host at "), flow["invalid"]
    assert flow["invalid"][0].endswith('; conntrack\'s message: "invalid tcp flag combination"')
