"""The analysis on its own, without root or a kernel: decoding, tag recognition, hops
and verdicts, from records and saved runs (the real-kernel tests cover them end to end)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, UDPerror
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from pathtrace.analyze.hops import HopBuilder
from pathtrace.analyze.probes import build_probes
from pathtrace.analyze.verdict import Judge
from pathtrace.kernel.decode import CLOCK_TAI, DecodeContext, KernelClock, decode
from pathtrace.kernel.layout import BYTE_FIELDS, FIELDS
from pathtrace.model import tag
from pathtrace.model.event import Event, Hook
from pathtrace.model.result import Setting
from pathtrace.model.state import NamespaceState

EXAMPLES = Path(__file__).resolve().parents[2] / "captures" / "examples"
RUN = 0x1234ABCD


def saved(name: str) -> tuple[list[Event], Setting]:
    """A saved run's events and setting, read straight from its files."""
    folder = EXAMPLES / name
    lines = (folder / "events.jsonl").read_text().splitlines()[1:]
    events = [Event.from_json(json.loads(line)) for line in lines if line.strip()]
    facts = json.loads((folder / "facts.json").read_text())
    states = {
        ns: NamespaceState.from_json(s)
        for ns, s in json.loads((folder / "state.json").read_text())["namespaces"].items()
    }
    setting = Setting(
        int(facts["run"], 16),
        facts["source_namespace"],
        facts["options"]["target"],
        facts["options"]["count"],
        states,
        "pathtrace lab fix",
    )
    return events, setting


# -- decoding -------------------------------------------------------------------


class _FixedClock(KernelClock):
    def __init__(self) -> None:
        self.tai_offset_ns = 37_000_000_000
        self.boot_offset_ns = 0


def _zeros() -> dict[str, object]:
    """A record of zeros, as the layout unpacks one."""
    return {name: bytes(width) if name in BYTE_FIELDS else 0 for name, width in FIELDS.items()}


def test_decode_names_everything_the_record_holds_in_numbers() -> None:
    raw = _zeros()
    raw |= {
        "time_ns": 1_000_000_037_000_000_000,
        "clock": CLOCK_TAI,
        "hook": 3,  # PT_HOOK_DROP
        "via": 1,
        "netns": 4026532001,
        "ifname": b"veth-host1\0\0\0\0\0\0",
        "run": RUN,
        "index": 2,
        "tag_kind": 2,
        "protocol": 1,
        "saddr": 0x08080808,
        "daddr": 0xC6336402,
        "icmp_type": 0,
        "drop_reason": 2,
        "location": 0,
        "ct": 0xFFFF0001,
        "ct_orig_src": 0xC0A86402,
        "ct_orig_dst": 0x08080808,
        "ct_reply_src": 0x08080808,
        "ct_reply_dst": 0xC6336402,
        "ct_status": 1 << 4,
        "dmac": bytes.fromhex("9e0190731a4c"),
    }
    ctx = DecodeContext(_FixedClock(), {4026532001: "pt-host"}, {2: "NOT_SPECIFIED"})
    event = decode(raw, ctx)
    assert event.time_ns == 1_000_000_000_000_000_000  # TAI less the offset: UTC
    assert (event.hook, event.via, event.tag) == (Hook.DROP, "tp_btf", "reply")
    assert (event.namespace, event.ifname, event.index) == ("pt-host", "veth-host1", 2)
    assert (event.src, event.dst, event.protocol) == ("8.8.8.8", "198.51.100.2", "icmp")
    assert event.drop_reason == "NOT_SPECIFIED" and event.tcp_flags is None
    assert event.conntrack is not None and event.conntrack.snat
    assert event.conntrack.original.src == "192.168.100.2"
    assert (event.dmac, event.smac) == ("9e:01:90:73:1a:4c", "")  # no MAC set: none
    assert Event.from_json(event.to_json()) == event  # the stable form round-trips


def test_an_unknown_hook_decodes_without_guessing() -> None:
    raw = _zeros() | {"hook": 99}
    event = decode(raw, DecodeContext(_FixedClock(), {}, {}))
    assert event.hook == "hook99" and event.namespace == "" and event.tag == "unknown"


# -- the tag in a frame ---------------------------------------------------------


def frame(packet: IP) -> bytes:
    return bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / packet)


@pytest.mark.parametrize(
    ("packet", "expected"),
    [
        (IP(src="192.168.100.2", dst="8.8.8.8") / ICMP(type=8) / Raw(tag.payload(RUN, 4, 56)),
         (4, "request")),
        (IP(src="8.8.8.8", dst="198.51.100.2") / ICMP(type=0) / Raw(tag.payload(RUN, 4, 56)),
         (4, "reply")),
        (IP(dst="8.8.8.8") / UDP(dport=53) / Raw(tag.payload(RUN, 7, 20)), (7, "request")),
        (IP(src="8.8.8.8") / UDP(sport=53)
         / Raw(tag.payload(RUN, 7, 20).replace(b"PTRC", b"PTRR", 1)), (7, "reply")),
        (IP(dst="198.51.100.2") / TCP(flags="S", seq=tag.tcp_isn(RUN, 9)), (9, "request")),
        (IP(src="198.51.100.2") / TCP(flags="SA", ack=tag.tcp_isn(RUN, 9) + 1), (9, "reply")),
        (IP(src="198.51.100.2") / TCP(flags="RA", ack=tag.tcp_isn(RUN, 9) + 1), (9, "reply")),
        (IP(src="198.51.100.1") / ICMP(type=3, code=3)
         / IPerror(src="198.51.100.2", dst="8.8.8.8", proto=17)
         / UDPerror(dport=53) / Raw(tag.payload(RUN, 5, 12)), (5, "icmp_error")),
        (IP(dst="8.8.8.8") / ICMP(type=8) / Raw(tag.payload(RUN ^ 1, 4, 56)), None),
        (IP(dst="8.8.8.8") / ICMP(type=8) / Raw(b"\0" * 56), None),
        (IP(dst="8.8.8.8") / TCP(flags="A", seq=tag.tcp_isn(RUN, 9)), None),
    ],
)  # fmt: skip
def test_classify_finds_the_tag_where_each_kind_carries_it(
    packet: IP, expected: tuple[int, str] | None
) -> None:
    assert tag.classify(frame(packet), RUN) == expected


def test_the_capture_filter_selects_the_run_only() -> None:
    expression = tag.capture_filter(RUN)
    assert f"{RUN:#x}" in expression and f"{tag.MAGIC:#x}" in expression
    assert f"{RUN ^ 1:#x}" not in expression


# -- hops -----------------------------------------------------------------------


def test_hops_of_a_masqueraded_ping_in_the_tutorials_words() -> None:
    events, setting = saved("ping-answered")
    builder = HopBuilder(setting.states, None)
    request = builder.build(
        0, "request", [(i, e) for i, e in enumerate(events) if e.index == 0 and e.tag == "request"]
    )
    texts = [h.text for h in request.hops]
    assert texts[0] == "container1 sends on veth-cont1"
    assert any(t.startswith("br0 ") for t in texts)  # the bridge, named as such
    snat = next(h for h in request.hops if h.translation)
    assert snat.translation is not None and snat.translation.kind == "SNAT"
    assert "masquerade" in (snat.translation.rule or "")
    assert snat.packet.src == "198.51.100.2"  # the hop shows the packet after it
    assert [h.time_ns for h in request.hops] == sorted(h.time_ns for h in request.hops)
    assert request.hops[0].offset_us == 0


def test_hops_say_where_each_event_came_from() -> None:
    events, setting = saved("ping-answered")
    builder = HopBuilder(setting.states, None)
    own = [(i, e) for i, e in enumerate(events) if e.index == 0 and e.tag == "request"]
    request = builder.build(0, "request", own)
    used = {p for h in request.hops for p in h.events}
    assert used and used <= {i for i, _ in own}
    assert all(h.captured is None for h in request.hops)  # nothing captured: not claimed


# -- verdicts -------------------------------------------------------------------


def test_verdicts_of_the_saved_runs() -> None:
    events, setting = saved("ping-answered")
    assert all(p.verdict.outcome == "answered" for p in build_probes(events, setting))
    events, setting = saved("forward-drop")
    verdict = build_probes(events, setting)[0].verdict
    assert verdict.outcome == "dropped" and "FORWARD" in (verdict.cause or "")
    # A concrete command for that node, the lab's restore beside it.
    assert verdict.fix is not None and verdict.fix.endswith("(or `pathtrace lab fix`)")
    assert verdict.fix.startswith("ip netns exec pt-host nft delete rule ip filter FORWARD handle")
    assert verdict.evidence and "handle" in verdict.evidence[0]
    # On a network nobody can restore with one command, the fix stands alone.
    bare = build_probes(events, replace(setting, restore=None))[0].verdict
    assert bare.fix is not None and "pathtrace lab" not in bare.fix


def test_a_netfilter_drop_quotes_what_conntrack_said_of_the_packet() -> None:
    """Where the conntrack family runs (kprobes: tests/vm shows the kernel's event),
    its message on the dropped sk_buff, in the drop's namespace, ends the cause."""
    events, setting = saved("forward-drop")
    plain = build_probes(events, setting)[0].verdict
    drop = next(i for i, e in enumerate(events) if e.hook == "drop" and e.index == 0)
    told = replace(
        events[drop], hook="ct_invalid", via="kprobe", drop_reason=None,
        location="invalid tcp flag combination", time_ns=events[drop].time_ns - 1,
    )  # fmt: skip
    elsewhere = replace(told, namespace="pt-wan", location="another packet's")
    verdict = build_probes([*events[:drop], told, elsewhere, *events[drop:]], setting)[0].verdict
    assert verdict.cause == (
        f'{plain.cause}; conntrack\'s message on it in host: "invalid tcp flag combination"'
    )
    assert "conntrack's message" not in (plain.cause or "")


def test_a_probe_never_sent_is_judged_from_the_source_alone() -> None:
    _, setting = saved("ping-answered")
    probes = build_probes([], setting, send_errors={0: "Network is unreachable"})
    verdict = probes[0].verdict
    assert (verdict.outcome, verdict.where) == ("dropped", "container1")
    assert verdict.summary == "container1 could not send it: Network is unreachable"


def test_the_judge_goes_by_the_whole_series_not_one_sysctl() -> None:
    """A host with ip_forward=0 in its state, and events that show the packet forwarded
    and answered: answered (the events win); without the reply, delivered, not blamed
    on the sysctl the packet got through."""
    events, setting = saved("ping-answered")
    host = next(ns for ns, s in setting.states.items() if s.node == "host")
    states = dict(setting.states)
    states[host] = replace(
        states[host], sysctls={**states[host].sysctls, "net.ipv4.ip_forward": "0"}
    )
    judge = Judge(states, setting.source, setting.target, 0, None)
    builder = HopBuilder(states, None)

    def series(kind: str) -> list[tuple[int, Event]]:
        return [(i, e) for i, e in enumerate(events) if e.index == 0 and e.tag == kind]

    request = builder.build(0, "request", series("request"))
    reply = judge.settle_reply(builder.build(0, "reply", series("reply")))
    answered = judge.judge(request, reply, [], [e for _, e in series("request") + series("reply")])
    assert answered.outcome == "answered" and answered.where == "wan"
    unanswered = judge.judge(request, None, [], [e for _, e in series("request")])
    assert unanswered.outcome == "delivered" and "ip_forward" not in (unanswered.cause or "")
