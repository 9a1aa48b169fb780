"""`watch`'s events -> flows: each conversation the filter picked, its packets'
paths, and a verdict.

The probes number a flow (the event's index) when the filter picks its first
packet, and know the flow's later packets and answers by their keys; a packet
is one sk_buff (the event's skb id), plus the copies a bridge flooded of it.
The verdict is the Judge's, the same code that judges `run`'s probes, on the
flow's first packet and the first answer that came after it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from statistics import median

from pathtrace.analyze.causes.netfilter import conntrack_messages
from pathtrace.analyze.copies import split_copies
from pathtrace.analyze.hops import HopBuilder
from pathtrace.analyze.verdict import Judge
from pathtrace.model.event import ICMP_ERRORS, Event, Hook, TagKind, Tuple
from pathtrace.model.flow import Flow, Place
from pathtrace.model.state import NamespaceState
from pathtrace.model.trace import Direction, Series, Verdict

Positioned = tuple[int, Event]
_DIRECTIONS: dict[str, Direction] = {
    TagKind.REQUEST: "request",
    TagKind.REPLY: "reply",
    TagKind.ICMP_ERROR: "icmp_error",
}
# conntrack's status bits (enum ip_conntrack_status)
_SEEN_REPLY, _ASSURED = 1 << 1, 1 << 2
_DATAGRAMS = ("udp", "icmp", "icmpv6")  # each request waits for an answer of its own


def build_flows(
    events: Sequence[Event],
    states: dict[str, NamespaceState],
    lost: int = 0,
    later: dict[int, int] | None = None,
) -> list[Flow]:
    """Events (time order) -> one Flow per flow number, in the order they started;
    ``later``: per flow, the sk_buffs seen past the ones kept (counted only)."""
    by_flow: dict[int, list[Positioned]] = defaultdict(list)
    for position, event in enumerate(events):
        by_flow[event.index].append((position, event))
    builder = HopBuilder(states, None, events, None)
    flows = [_flow(index, found, builder, states, lost) for index, found in sorted(by_flow.items())]
    runs = _conntrack_runs(events, states)
    for flow in flows:
        flow.not_kept = (later or {}).get(flow.index, 0)
        flow.invalid = _invalid([e for _, e in by_flow[flow.index]], runs, states)
    return flows


def _flow(
    index: int,
    found: list[Positioned],
    builder: HopBuilder,
    states: dict[str, NamespaceState],
    lost: int,
) -> Flow:
    packets, copies = _packets(found, states)
    origin = found[0][1].time_ns
    built: list[Series] = []
    for direction, items in packets:
        path, flooded = split_copies(items, states)
        series = builder.build(index, direction, path, origin, flooded)
        series.copies = [builder.build(index, direction, c, origin, copy=True) for c in flooded]
        built.append(series)
    requests = [s for s in built if s.direction == "request" and s.hops]
    first = requests[0] if requests else (built[0] if built else Series(index, "request"))
    start = first.hops[0] if first.hops else None
    source = start.node if start else ""
    namespace = next((ns for ns, st in states.items() if st.node == source), source)
    verdict = _verdict(first, built, found, states, namespace, lost)
    counts: dict[str, int] = defaultdict(int)
    for series in built:
        counts[series.direction] += 1
    return Flow(
        index=index,
        protocol=start.packet.protocol if start else found[0][1].protocol,
        client=start.packet.endpoint("src") if start else "",
        server=start.packet.endpoint("dst") if start else "",
        source=source,
        packets=built,
        verdict=verdict,
        counts=dict(counts),
        resets=_resets(built, found),
        retransmissions=_retransmissions(built, found),
        icmp_errors=[
            f"{s.hops[0].node}: ICMP type {e.icmp_type} code {e.icmp_code}"
            for s, e in _firsts(built, found)
            if s.direction == "icmp_error" and s.hops
        ],
        translations=list(
            dict.fromkeys(h.translation.describe() for s in built for h in s.hops if h.translation)
        ),
        conntrack=_conntrack([e for _, e in found]),
        unanswered=_unanswered(built, source),
        places=_places(built),
        copies=copies,
    )


def _packets(
    found: list[Positioned], states: dict[str, NamespaceState]
) -> tuple[list[tuple[Direction, list[Positioned]]], int]:
    """The flow's events by packet: one sk_buff each, a bridge's flooded clones with
    the frame they copy; and how many sk_buffs were seen only when freed (copies:
    a capture socket's, a clone some layer made and let go), which are no packets."""
    by_skb: dict[int, list[Positioned]] = {}
    for item in found:
        by_skb.setdefault(item[1].skb_id, []).append(item)
    packets: list[tuple[Direction, list[Positioned]]] = []
    taps = 0
    for items in by_skb.values():
        first = items[0][1]
        if all(e.hook == Hook.CONSUME for _, e in items):
            taps += 1
            continue
        direction = _DIRECTIONS.get(first.tag, "request")
        if _icmp_error(first):
            direction = "icmp_error"
        starts_on_port = first.hook in (Hook.DEV_XMIT, Hook.BR_FORWARD) and _is_port(first, states)
        earlier = [p for d, p in packets if d == direction and p[0][1].time_ns <= first.time_ns]
        if starts_on_port and earlier:
            earlier[-1].extend(items)  # a flooded clone: with the frame it copies
            earlier[-1].sort(key=lambda x: x[0])
            continue
        packets.append((direction, list(items)))
    packets.sort(key=lambda p: p[1][0][0])
    return packets, taps


def _is_port(e: Event, states: dict[str, NamespaceState]) -> bool:
    state = states.get(e.namespace)
    link = state.link(e.ifname) if state else None
    return link is not None and bool(link.master)


def _icmp_error(e: Event) -> bool:
    return e.icmp_type in ICMP_ERRORS.get(e.protocol, ())


def _verdict(
    first: Series,
    built: list[Series],
    found: list[Positioned],
    states: dict[str, NamespaceState],
    namespace: str,
    lost: int,
) -> Verdict:
    """The flow's first packet and the first answer after it, judged as a probe is."""
    if not first.hops:
        return Verdict("lost", "no hook saw a whole packet of this flow", confidence="unknown")
    begun = first.hops[0].time_ns
    reply = next(
        (s for s in built if s.direction == "reply" and s.hops and s.hops[0].time_ns >= begun),
        None,
    )
    errors = [s for s in built if s.direction == "icmp_error" and s.hops]
    judge = Judge(states, namespace, first.hops[0].packet.dst, lost)
    own = [e for _, e in found]
    return judge.judge(first, reply, errors, own)


def _firsts(built: list[Series], found: list[Positioned]) -> list[tuple[Series, Event]]:
    """Each packet with the event of its first hop."""
    events = dict(found)
    return [(s, events[s.hops[0].events[0]]) for s in built if s.hops and s.hops[0].events]


def _resets(built: list[Series], found: list[Positioned]) -> list[str]:
    """Who sent each TCP RST (the node of its first hop), and which way it went."""
    return [
        f"{series.hops[0].node} ({series.title})"
        for series, e in _firsts(built, found)
        if e.protocol == "tcp" and (e.tcp_flags or 0) & 0x04
    ]


def _retransmissions(built: list[Series], found: list[Positioned]) -> list[str]:
    """TCP segments sent again: one that takes sequence space (data, SYN, FIN) with a
    sequence number its sender already sent, as its first hop saw it."""
    first_sent: dict[tuple[object, ...], int] = {}
    said = []
    for series, e in sorted(_firsts(built, found), key=lambda x: x[1].time_ns):
        if e.protocol != "tcp" or e.tcp_seq is None:
            continue
        flags = e.tcp_flags or 0
        control = [name for bit, name in ((0x02, "SYN"), (0x01, "FIN")) if flags & bit]
        if not (e.tcp_payload or control):
            continue  # a bare ACK takes no sequence space: many share a number
        key = (e.src, e.sport, e.dst, e.dport, e.tcp_seq)
        if key not in first_sent:
            first_sent[key] = e.time_ns
            continue
        what = "+".join(control + ([f"{e.tcp_payload} bytes"] if e.tcp_payload else []))
        gap = (e.time_ns - first_sent[key]) / 1e9
        said.append(
            f"{series.hops[0].node} sent seq {e.tcp_seq} ({what}) again, {gap:.3f} s after "
            f"the first ({series.title})"
        )
    return said


def _conntrack(events: list[Event]) -> str | None:
    """The flow's conntrack entry as the last hook that read it found it."""
    last = next((e for e in reversed(events) if e.conntrack is not None), None)
    if last is None or last.conntrack is None:
        return None
    ct = last.conntrack
    state = (
        "assured"
        if ct.status & _ASSURED
        else "replied"
        if ct.status & _SEEN_REPLY
        else ("unreplied")
    )
    o, r = ct.original, ct.reply
    if last.protocol in ("icmp", "icmpv6"):
        # An ICMP tuple holds the echo id where a port is, the type and code after.
        def tuple_of(t: Tuple) -> str:
            return f"{t.src} -> {t.dst} id {t.sport} type {t.dport >> 8} code {t.dport & 0xFF}"

        return f"{state} in {last.namespace}: {tuple_of(o)}, reply {tuple_of(r)}"
    return (
        f"{state} in {last.namespace}: {o.src}:{o.sport} -> {o.dst}:{o.dport}, "
        f"reply {r.src}:{r.sport} -> {r.dst}:{r.dport}"
    )


# Hooks where pathtrace's netfilter programs run after conntrack's (priority
# -200; ours next to NAT's -100): a packet without an entry there was looked at.
_AFTER_CONNTRACK = ("PREROUTING", "OUTPUT")
_NF = (Hook.NF_BEFORE, Hook.NF_AFTER)


def _conntrack_runs(
    events: Sequence[Event], states: dict[str, NamespaceState]
) -> dict[tuple[str, int], str]:
    """Per (namespace, IP version), what shows conntrack runs there: a packet it gave
    an entry to at a netfilter hook, or the ruleset's NAT chains and ct rules."""
    runs: dict[tuple[str, int], str] = {}
    for e in events:
        if e.hook in _NF and e.ct_state not in (None, "none", "untracked"):
            version = 6 if ":" in e.src else 4
            runs.setdefault((e.namespace, version), f"it gave {e.src} > {e.dst} an entry")
    for ns, state in states.items():
        for version, family in ((4, "ip"), (6, "ip6")):
            users = state.rules().conntrack_users(family) if state.has_rules else []
            if users and (ns, version) not in runs:
                runs[(ns, version)] = f"it serves {users[0]}"
    return runs


def _invalid(
    events: list[Event], runs: dict[tuple[str, int], str], states: dict[str, NamespaceState]
) -> list[str]:
    """Packets of the flow that conntrack looked at and gave no entry: INVALID, as
    `ct state invalid` and `-m conntrack --ctstate INVALID` match them."""
    said: dict[tuple[int, str], str] = {}

    def node_of(namespace: str) -> str:
        return states[namespace].node if namespace in states else namespace

    def say(e: Event, where: str, looked: str) -> None:
        """``e``'s packet has no entry at ``where``; ``looked``: what shows conntrack
        looked at it. Then why, in conntrack's words (its log_invalid calls, made
        whether or not its logging is on), where the kernel lets kprobes read them."""
        flags = f" [{_tcp_flags(e.tcp_flags)}]" if e.tcp_flags is not None else ""
        own = conntrack_messages(events, {e.skb_id}, e.namespace)
        said[(e.skb_id, e.namespace)] = (
            f"{node_of(e.namespace)} at {where}: {e.protocol} {e.src}:{e.sport} > "
            f"{e.dst}:{e.dport}{flags} has no conntrack entry after conntrack looked at it "
            f"({looked})"
            + ("; conntrack's message: " + "; ".join(f'"{m}"' for m in own) if own else "")
        )

    for e in events:
        if e.hook not in _NF or e.nf_hook not in _AFTER_CONNTRACK or e.ct_state != "none":
            continue
        why = runs.get((e.namespace, 6 if ":" in e.src else 4))
        if why is None or (e.skb_id, e.namespace) in said:
            continue  # conntrack may not run there: no entry says nothing
        say(e, e.nf_hook or "", f"conntrack runs in {node_of(e.namespace)}: {why}")
    # Where no netfilter hook shows the packet after conntrack (kernels before 6.4
    # have no BPF netfilter links): its tracker's log_invalid call shows conntrack
    # looked at it, and the next hook of that namespace that it left it no entry.
    # A tracker also logs packets it ignores and lets keep their entry: those are
    # not INVALID, and neither is one no later hook there saw (unknown, not said).
    for told in events:
        if told.hook != Hook.CT_INVALID or (told.skb_id, told.namespace) in said:
            continue
        after = min(
            (
                e
                for e in events
                if e.skb_id == told.skb_id
                and e.namespace == told.namespace
                and e.time_ns > told.time_ns
                and e.hook != Hook.CT_INVALID
                and e.ct_state is not None
            ),
            key=lambda e: e.time_ns,
            default=None,
        )
        if after is not None and after.ct_state == "none":
            say(
                told, f"{after.hook} {after.ifname}".strip(), "its tracker called log_invalid on it"
            )
    return list(said.values())


def _tcp_flags(flags: int) -> str:
    """As tcpdump writes them: S, F, R, P, . for ACK, U, E, W."""
    order = ((0x02, "S"), (0x01, "F"), (0x04, "R"), (0x08, "P"), (0x10, "."), (0x20, "U"))
    return "".join(c for bit, c in (*order, (0x40, "E"), (0x80, "W")) if flags & bit) or "none"


def _unanswered(built: list[Series], source: str) -> int:
    """Requests after the last answer that reached the flow's source: for datagrams,
    answers that never came (an answer dropped on the way is not one). Not for TCP:
    its last segments (an ACK, a FIN) wait for no answer, and the events carry no
    sequence numbers to tell which ones did."""
    if not any(s.hops and s.hops[0].packet.protocol in _DATAGRAMS for s in built):
        return 0
    arrived = [
        s.hops[0].time_ns
        for s in built
        if s.direction == "reply"
        and any(h.node == source and h.action in ("cross", "receive", "deliver") for h in s.hops)
    ]
    last_answer = max(arrived, default=0)
    return sum(
        1 for s in built if s.direction == "request" and s.hops and s.hops[0].time_ns > last_answer
    )


def _places(built: list[Series]) -> list[Place]:
    """Every place the flow's packets went through, in the first packet's order."""
    seen: dict[tuple[str, str, str, str], list[float]] = {}
    for series in built:
        if series.direction not in ("request", "reply"):
            continue
        for hop in series.hops:
            key = (series.direction, hop.node, hop.interface, hop.action)
            seen.setdefault(key, []).append(hop.latency_us)
    return [
        Place(node, interface, action, direction, len(lat), round(median(lat), 1))
        for (direction, node, interface, action), lat in seen.items()
    ]
