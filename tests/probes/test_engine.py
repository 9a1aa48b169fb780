"""The probe engine on the real kernel and the real lab."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import pytest

from pathtrace.errors import ProbesMissing
from pathtrace.inject import send
from pathtrace.kernel import libbpf
from pathtrace.kernel.engine import RING_BYTES, Tracer, probes_dir, ring_for
from pathtrace.kernel.refusals import Refusals
from pathtrace.lab import topology
from pathtrace.model import tag
from pathtrace.model.event import Hook, TagKind
from pathtrace.model.options import RunOptions
from pathtrace.model.result import RunResult
from pathtrace.session import Run, drop_ready, ready_next
from pathtrace.system import netns
from tests.conftest import pathtrace
from tests.matchers import assert_ordered_subset
from tests.tracing import Session, ping

pytestmark = pytest.mark.root


def test_tagged_ping_to_the_internet_hop_by_hop(traced: Session) -> None:
    _ping_the_internet_hop_by_hop(traced)
    states = {s.family: s for s in traced.tracer.used}
    # This kernel (6.18) allows the read-only cast: packets are read with plain loads.
    assert {states[f].probe_object for f in ("device", "drop", "netfilter")} == {
        "device.bpf.o",
        "drop.bpf.o",
        "netfilter.bpf.o",
    }


def test_helper_reading_builds_see_the_same_hops(lab: topology.Topology, tmp_path: Path) -> None:
    """What a kernel without the read-only cast runs (the VM's 6.1 does), here."""
    for built in probes_dir().glob("*.bpf.o"):
        if ".compat." not in built.name:
            compat = built.with_name(built.name.replace(".bpf.o", ".compat.bpf.o"))
            (tmp_path / built.name).symlink_to(compat if compat.exists() else built)
    tracer = Tracer(tag.new_run(), [lab.namespace(n) for n in lab.nodes], directory=tmp_path)
    with tracer:
        _ping_the_internet_hop_by_hop(Session(lab, tracer))
        assert {s.family for s in tracer.used} >= {"device", "drop", "netfilter"}


def _ping_the_internet_hop_by_hop(traced: Session) -> None:
    # No sleep after arming: the first packet must be seen (the readiness barrier).
    traced.send("container1", ping("8.8.8.8"))
    lab = traced.lab
    c1, host, wan = (lab.namespace(n) for n in ("container1", "host", "wan"))
    events = traced.collect(
        lambda evs: any(
            e.tag == "reply" and e.namespace == c1 and e.hook == "dev_recv" for e in evs
        )
    )
    assert_ordered_subset(
        events,
        [
            {
                "hook": "dev_xmit",
                "namespace": c1,
                "ifname": "veth-cont1",
                "tag": "request",
                "src": "192.168.100.2",
                "dst": "8.8.8.8",
            },
            {"hook": "dev_recv", "namespace": host, "ifname": "veth-host1", "tag": "request"},
            # the bridge step: br0 delivers it up to the host
            {"hook": "dev_recv", "namespace": host, "ifname": "br0", "tag": "request"},
            {
                "hook": "nf_before",
                "nf_hook": "POSTROUTING",
                "namespace": host,
                "src": "192.168.100.2",
                "tag": "request",
            },
            {
                "hook": "nf_after",
                "nf_hook": "POSTROUTING",
                "namespace": host,
                "src": "198.51.100.2",
                "tag": "request",
            },  # MASQUERADE
            {"hook": "dev_xmit", "namespace": host, "ifname": "eth0", "src": "198.51.100.2"},
            {"hook": "dev_recv", "namespace": wan, "ifname": "eth0", "tag": "request"},
            {
                "hook": "dev_xmit",
                "namespace": wan,
                "ifname": "eth0",
                "tag": "reply",
                "src": "8.8.8.8",
                "dst": "198.51.100.2",
            },
            {"hook": "dev_recv", "namespace": host, "ifname": "eth0", "tag": "reply"},
            {
                "hook": "nf_before",
                "nf_hook": "PREROUTING",
                "namespace": host,
                "dst": "198.51.100.2",
                "tag": "reply",
            },
            {
                "hook": "nf_after",
                "nf_hook": "PREROUTING",
                "namespace": host,
                "dst": "192.168.100.2",
                "tag": "reply",
            },  # de-NAT
            {"hook": "dev_xmit", "namespace": host, "ifname": "veth-host1", "tag": "reply"},
            {
                "hook": "dev_recv",
                "namespace": c1,
                "ifname": "veth-cont1",
                "tag": "reply",
                "dst": "192.168.100.2",
            },
        ],
    )
    snat = next(
        e
        for e in events
        if e.hook == "nf_after" and e.nf_hook == "POSTROUTING" and e.namespace == host
    )
    assert snat.conntrack is not None and snat.conntrack.snat
    assert snat.conntrack.original.src == "192.168.100.2"
    assert snat.conntrack.reply.dst == "198.51.100.2"
    assert traced.tracer.lost() == {}


def test_bridge_forwarding_between_containers(traced: Session) -> None:
    traced.send("container1", ping("192.168.100.3"))
    lab = traced.lab
    c2, host = lab.namespace("container2"), lab.namespace("host")
    events = traced.collect(
        lambda evs: any(
            e.tag == "reply" and e.namespace == lab.namespace("container1") and e.hook == "dev_recv"
            for e in evs
        )
    )
    assert_ordered_subset(
        events,
        [
            {"hook": "dev_recv", "namespace": host, "ifname": "veth-host1", "tag": "request"},
            {"hook": "dev_xmit", "namespace": host, "ifname": "veth-host2", "tag": "request"},
            {"hook": "dev_recv", "namespace": c2, "ifname": "veth-cont2", "tag": "request"},
            {"hook": "dev_xmit", "namespace": c2, "ifname": "veth-cont2", "tag": "reply"},
            {"hook": "dev_xmit", "namespace": host, "ifname": "veth-host1", "tag": "reply"},
        ],
    )
    # Bridged, not routed: br0 never took it up to the host.
    assert not [e for e in events if e.ifname == "br0" and e.hook == "dev_recv"]


def test_an_icmp_error_made_by_the_host_is_seen_from_its_output_hook(traced: Session) -> None:
    # TTL 1: the host cannot forward it and answers with time exceeded, a new
    # packet whose first hook is OUTPUT (the one netfilter hook that reads tags).
    traced.send("container1", ping("8.8.8.8", ttl=1))
    lab = traced.lab
    c1, host = lab.namespace("container1"), lab.namespace("host")
    events = traced.collect(
        lambda evs: any(e.tag == "icmp_error" and e.namespace == c1 for e in evs)
    )
    assert_ordered_subset(
        events,
        [
            {"hook": "dev_recv", "namespace": host, "ifname": "br0", "tag": "request"},
            {"hook": "nf_before", "namespace": host, "nf_hook": "OUTPUT", "tag": "icmp_error"},
            {"hook": "nf_after", "namespace": host, "nf_hook": "POSTROUTING", "tag": "icmp_error"},
            {"hook": "dev_xmit", "namespace": host, "ifname": "veth-host1", "tag": "icmp_error"},
            {"hook": "dev_recv", "namespace": c1, "ifname": "veth-cont1", "tag": "icmp_error"},
        ],
    )
    # The host's own answer: time exceeded, quoting our request.
    post = [e for e in events if e.nf_hook == "POSTROUTING" and e.tag == "icmp_error"]
    assert post and all(e.icmp_type == 11 for e in post)


def test_untagged_traffic_makes_no_events(traced: Session) -> None:
    c1 = traced.lab.namespace("container1")
    netns.run(c1, ["ping", "-c", "3", "-i", "0.01", "-W", "1", "192.168.100.3"])
    netns.run(c1, ["ping", "-c", "3", "-i", "0.01", "-W", "1", "8.8.8.8"])
    assert traced.collect(lambda evs: False, timeout=0.3) == []


def test_skb_addresses_reused_by_thousands_of_flows_keep_no_history(traced: Session) -> None:
    """Tagged and untagged packets interleave, so freed skb addresses are reused often."""
    c1 = traced.lab.namespace("container1")
    flood = netns.popen(
        c1, ["ping", "-f", "-c", "3000", "-W", "1", "192.168.100.3"], stdout=subprocess.DEVNULL
    )
    count = 1500
    try:
        dst = ping("192.168.100.3").dst
        src = send.source_address(c1, dst)
        with send.Sender(c1) as sender:
            for index in range(count):
                sender.send(send.build(ping("192.168.100.3"), src, traced.tracer.run, index), dst)
                if index % 100 == 99:
                    # The reader (a Python thread) gets its turn: 1500 probes sent in
                    # one burst make ~36,000 events, more than the ring holds unread
                    # (events were lost 1 run in 7-12, this tree and the one before).
                    time.sleep(0.005)
    finally:
        flood.wait(timeout=60)
    events = traced.collect(
        lambda evs: (
            len({e.index for e in evs if e.tag == "reply" and e.hook == "dev_recv"}) >= count
        ),
        timeout=10,
    )
    by_skb: dict[int, set[tuple[int, str]]] = defaultdict(set)
    for e in events:
        by_skb[e.skb_id].add((e.index, e.tag))
        # Every event belongs to a tagged packet: its own ICMP id, ours.
        assert e.sport == traced.tracer.run & 0xFFFF, e
        assert e.dport == e.index & 0xFFFF, e
    mixed = {skb: owners for skb, owners in by_skb.items() if len(owners) > 1}
    assert not mixed, f"skb ids that carried two packets: {list(mixed.items())[:5]}"
    replies = {e.index for e in events if e.tag == "reply" and e.hook == "dev_recv"}
    # A flood may lose a few to queue limits.
    assert len(replies) >= count * 0.99, (len(replies), traced.tracer.lost())
    assert traced.tracer.lost() == {}


def test_hooks_the_kernel_refuses_are_reported_and_the_rest_trace(traced: Session) -> None:
    states = {(s.family, s.via): s for s in traced.tracer.statuses}
    assert states[("device", "tp_btf")].state == "used"
    assert states[("netfilter", "netfilter")].state == "used"
    for family in ("veth", "bridge", "nat"):
        used = [s for s in traced.tracer.statuses if s.family == family and s.state == "used"]
        refused = [s for s in traced.tracer.statuses if s.family == family and s.state != "used"]
        if not used:  # this kernel (KERNEL.md): no kprobes, fentry refused
            assert refused and all(s.reason for s in refused)


def test_a_hook_refused_this_boot_is_not_asked_again(
    lab: topology.Topology, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "refusals.json"
    namespaces = [lab.namespace("container1")]
    with Tracer(1, namespaces, refusals=Refusals(store)) as first:
        refused = {(s.family, s.via): s.reason for s in first.statuses if s.state == "failed"}
        used = {s.family for s in first.used}
    if not refused:
        pytest.skip("this kernel refuses no hook")
    opened: list[str] = []
    real_init = libbpf.BpfObject.__init__

    def spy(self: libbpf.BpfObject, path: str) -> None:
        opened.append(Path(path).name)
        real_init(self, path)

    monkeypatch.setattr(libbpf.BpfObject, "__init__", spy)
    with Tracer(2, namespaces, refusals=Refusals(store)) as second:
        again = {(s.family, s.via): s.reason for s in second.statuses if s.state == "failed"}
    assert again == {
        k: f"{r} (earlier this boot; `pathtrace doctor` asks again)" for k, r in refused.items()
    }
    assert sorted(opened) == sorted(
        f"{family}.bpf.o" for family in used
    )  # nothing refused was loaded
    # Asked again (as the doctor does), the kernel answers afresh and is believed.
    opened.clear()
    with Tracer(3, namespaces, refusals=Refusals(store), ask_kernel_again=True) as third:
        assert {
            (s.family, s.via): s.reason for s in third.statuses if s.state == "failed"
        } == refused
    assert len(opened) == len(used) + len({family for family, _ in refused})


def test_a_kernel_without_btf_is_one_clear_error(lab: topology.Topology) -> None:
    # No mock: a private mount namespace where /sys/kernel/btf is an empty tmpfs,
    # so neither pathtrace nor libbpf finds the kernel's BTF.
    hidden = 'mount -t tmpfs none /sys/kernel/btf && exec "$@"'
    argv = ["unshare", "-m", "sh", "-c", hidden, "sh", sys.executable, "-m", "pathtrace"]
    run = subprocess.run(
        [*argv, "run", "ping", "8.8.8.8", "-c", "1", "--topology", str(lab.source)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 6, run.stderr
    assert run.stderr.count("\n") == 1 and "BTF" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr
    doctor = subprocess.run([*argv, "doctor", "--json"], capture_output=True, text=True, timeout=60)
    assert json.loads(doctor.stdout)["btf"] is False


def test_missing_probe_objects_is_one_clear_error(lab: topology.Topology, tmp_path: Path) -> None:
    tracer = Tracer(1, [lab.namespace("host")], directory=tmp_path)
    with pytest.raises(ProbesMissing) as caught:
        tracer.start()
    assert "make setup" in str(caught.value) and caught.value.exit_code == 7


def test_no_program_stays_attached_after_sigkill(lab: topology.Topology) -> None:
    script = (
        "import sys, time\n"
        "from pathtrace.kernel.engine import Tracer\n"
        f"t = Tracer(99, {[lab.namespace(n) for n in lab.nodes]!r}).start()\n"
        "print('armed', flush=True)\n"
        "time.sleep(60)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "armed"
    assert _our_programs(), "the child's programs should be loaded"
    os.kill(child.pid, signal.SIGKILL)
    child.communicate()
    # The kernel frees programs after their last fd closes, from a work queue.
    deadline = time.monotonic() + 5
    while _our_programs() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _our_programs() == []


def _our_programs() -> list[str]:
    out = subprocess.run(
        ["bpftool", "-j", "prog", "show"], capture_output=True, text=True, check=True
    ).stdout
    return [p["name"] for p in json.loads(out) if p.get("name", "").startswith("pt_")]


def test_probes_verified_ahead_serve_the_next_such_run_only(
    lab: topology.Topology, topology_file: Path
) -> None:
    """`ready_next` (the TUI after each run): verified, attached to nothing, taken by
    the next run of the same options, which traces as a run loading its own does."""
    text = topology_file.read_text()
    options = RunOptions.parse("ping", "8.8.8.8", count=2, interval=0.02)
    first = Run(options, lab, text).execute()
    try:
        ready = ready_next(options)
        time.sleep(0.5)  # verified by now, most likely; taken either way
        assert _our_links() == [], "verified ahead, but attached to nothing yet"
        # Its ring buffer sized for two probes' events: the least, 1 MB (a watch: 8).
        rings = json.loads(
            subprocess.run(
                ["bpftool", "-j", "map", "show", "name", "pt_events"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            or "[]"
        )
        rings = rings if isinstance(rings, list) else [rings]
        assert [r["max_entries"] for r in rings] == [ring_for(2)] == [1 << 20]
        assert ring_for(1000) == RING_BYTES == 8 << 20 and ring_for(100) == 4 << 20
        other = Run(replace(options, count=1), lab, text).execute()
        assert other.run_id != ready  # loaded for a count of 2: not this run's
        second = Run(options, lab, text).execute()
        assert second.run_id == ready
        for result in (first, second):
            assert [p.verdict.outcome for p in result.probes] == ["answered", "answered"]
            for i in (0, 1):  # each request seen before and after the host's SNAT
                sources = {
                    e.src
                    for e in result.events
                    if e.index == i and e.tag == TagKind.REQUEST and e.hook == Hook.NF_AFTER
                }
                assert len(sources) == 2, sources

        def hops(result: RunResult) -> list[list[tuple[str, str, str]]]:
            return [
                [(h.node, h.interface, h.action) for s in p.series for h in s.hops]
                for p in result.probes
            ]

        assert hops(second) == hops(first)
        # Taken: the next run of those options loads its own again.
        assert Run(options, lab, text).execute().run_id != ready
    finally:
        drop_ready()
    # The kernel frees programs after their last fd closes, from a work queue.
    deadline = time.monotonic() + 5
    while _our_programs() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _our_links() == [] and _our_programs() == []


def _our_links() -> list[int]:
    out = subprocess.run(
        ["bpftool", "-j", "link", "show"], capture_output=True, text=True, check=True
    ).stdout
    ours = set(_our_program_ids())
    return [link["id"] for link in json.loads(out) if link.get("prog_id") in ours]


def _our_program_ids() -> list[int]:
    out = subprocess.run(
        ["bpftool", "-j", "prog", "show"], capture_output=True, text=True, check=True
    ).stdout
    return [p["id"] for p in json.loads(out) if p.get("name", "").startswith("pt_")]


def test_doctor_reports_every_hook(lab: topology.Topology) -> None:
    result = pathtrace("doctor", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    families = {h["family"] for h in data["hooks"]}
    assert families == {"device", "drop", "netfilter", "veth", "bridge", "nat", "conntrack"}
    assert all(h["state"] in ("used", "unavailable", "failed") for h in data["hooks"])
    assert data["btf"] is True and data["probes_built"] is True
    # This kernel has netfilter links (KERNEL.md): the doctor really made one.
    netfilter = next(h for h in data["hooks"] if h["family"] == "netfilter")
    assert netfilter["state"] == "used" and "pt-doctor-" in netfilter["reason"]
    assert not [n for n in netns.names() if n.startswith("pt-doctor")]


def test_probes_are_package_data() -> None:
    """Found beside the package's own modules, not by climbing out of it."""
    import pathtrace.kernel.engine as engine

    assert probes_dir() == Path(engine.__file__).resolve().parent / "bpf"
    assert (probes_dir() / "device.bpf.o").exists()
