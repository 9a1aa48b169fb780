"""From the events of one packet to the hops a person reads.

Events come from several hooks that see the same moment (a device transmit
and veth_xmit; netfilter before and after a chain); a hop is one step of the
path in the words of the tutorial: "container1 sends on veth-cont1", "br0
forwards it from veth-host1 to veth-host2", "SNAT by masquerade: ...".
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from ipaddress import ip_address, ip_network
from typing import Literal

from pathtrace.analyze.copies import Fdb, is_group
from pathtrace.model.event import ENCAP_KINDS, Event, Hook, Outer
from pathtrace.model.ruleset import LiveRule
from pathtrace.model.state import Link, NamespaceState
from pathtrace.model.trace import Direction, Hop, Packet, Series, Translation

_CHAIN_OF_HOOK = {
    "PREROUTING": "PREROUTING",
    "OUTPUT": "OUTPUT",
    "POSTROUTING": "POSTROUTING",
    "INPUT": "INPUT",
}
# Hooks seen at the same moment as a device transmit, or inside the bridge.
_ALIASES = {Hook.VETH_XMIT, Hook.BR_HANDLE_FRAME, Hook.BR_FORWARD}


# How a packet's end at its destination reads (consume_skb there), by series.
_TAKES: dict[str, str] = {
    "request": "consumes it (delivered)",
    "reply": "takes the answer in (delivered)",
    "icmp_error": "takes the ICMP error in (delivered to its ICMP layer)",
    "source_rst": "takes the RST in",
    "source_icmp_error": "takes the ICMP error in",
}


def packet_of(event: Event) -> Packet:
    return Packet(
        event.protocol, event.src, event.dst, event.sport, event.dport, event.ttl, event.length
    )


def _same_packet(e: Event, namespace: str) -> tuple[object, ...]:
    """What a packet and a clone of it share, in a namespace."""
    return (namespace, e.index, e.tag, e.ip_id, e.src, e.dst, e.protocol, e.sport, e.dport)


class HopBuilder:
    def __init__(
        self,
        states: dict[str, NamespaceState],
        captured: set[int] | None = None,
        events: Sequence[Event] = (),
        capture_on: set[tuple[str, str]] | None = None,
    ) -> None:
        self.capture_on = capture_on
        """``captured``: positions of the events a capture matched (None: no capture);
        ``events``: the whole run's, for what the bridges learned during it."""
        self.states = states
        self.captured = captured
        self.fdb = Fdb(states, events)
        # Copies an IP socket read (a raw socket's clone, freed once read): the
        # same packet as a drop beside them in that namespace, by what it carries.
        # (A clone in a receive queue has no device: its namespace is its socket's.)
        self.read_copies: dict[tuple[object, ...], Event] = {
            _same_packet(e, e.socket.namespace): e
            for e in events
            if e.hook == Hook.CONSUME and e.socket and e.socket.inet and e.socket.receiving
        }

    def node(self, namespace: str) -> str:
        state = self.states.get(namespace)
        return state.node if state else namespace

    def build(
        self,
        index: int,
        direction: Direction,
        events: Sequence[tuple[int, Event]],
        origin: int | None = None,
        copies: Sequence[Sequence[tuple[int, Event]]] = (),
        copy: bool = False,
    ) -> Series:
        """``events``: (position in the run, event) of one packet and direction, in time
        order; offsets count from ``origin`` (the request's first hop) or, for the
        request itself, from its own first hop: a probe starts at +0.0. ``copies``:
        the flooded copies of this series (each a list of events); ``copy``: this is
        one of them."""
        series = Series(index, direction)
        if not events:
            return series
        # (namespace, bridge) -> ports a flooded copy went out of
        flooded: dict[tuple[str, str], list[str]] = {}
        for found in copies:
            first_copy = found[0][1]
            bridge_of = self._bridge(first_copy.namespace, first_copy.ifname)
            if bridge_of:
                flooded.setdefault((first_copy.namespace, bridge_of), []).append(first_copy.ifname)
        # (namespace, bridge) -> the port the frame came in on, until it leaves
        ingress: dict[tuple[str, str], str] = {}
        start = origin
        last_time: int | None = None
        previous: Event | None = None
        pending_nf: dict[tuple[str, str | None], tuple[int, Event]] = {}
        last_nf: dict[int, Event] = {}  # skb id -> the last netfilter event that saw it
        hooks_here: list[str] = []
        for n, (position, e) in enumerate(events):
            final = n == len(events) - 1
            hop: tuple[str, str] | None = None
            translation = None
            if e.hook in (Hook.NF_BEFORE, Hook.NF_AFTER, Hook.NAT_BEFORE, Hook.NAT_AFTER):
                if e.namespace:
                    last_nf[e.skb_id] = e
            if e.hook in (Hook.NF_BEFORE, Hook.NAT_BEFORE):
                pending_nf[(e.namespace, e.nf_hook)] = (position, e)
                continue
            if e.hook in (Hook.NF_AFTER, Hook.NAT_AFTER):
                before = pending_nf.pop((e.namespace, e.nf_hook), None)
                if e.hook == Hook.NAT_AFTER and before is None:
                    before = next(
                        ((p, b) for (ns, _), (p, b) in pending_nf.items() if ns == e.namespace),
                        None,
                    )
                if before is not None and packet_of(before[1]) != packet_of(e):
                    translation = self.translation(before[1], e, direction)
                    hop = ("translate", translation.describe())
                else:
                    continue
            elif e.hook in _ALIASES:
                hooks_here.append(_hook_name(e))
                if e.hook == Hook.BR_FORWARD:
                    bridge = self._bridge(e.namespace, e.ifname) or "the bridge"
                    hop = ("bridge-forward", f"{bridge} forwards it to {e.ifname}")
                else:
                    continue
            elif e.hook == Hook.DEV_XMIT:
                first = series.hops == []
                switch = self._bridge(e.namespace, e.ifname)
                came_in = ingress.pop((e.namespace, switch), None) if switch else None
                if copy and first and switch:
                    hop = ("bridge-forward", f"{switch} floods a copy out of {e.ifname}")
                elif switch and not first and previous is not None:
                    hop = self._switch(e, switch, came_in, previous, flooded)
                if hop is None:
                    hop = self._xmit(e, previous, first=first, direction=direction)
                if self._is_bridge(e.namespace, e.ifname):
                    ingress.pop((e.namespace, e.ifname), None)
            elif e.hook == Hook.DEV_RECV:
                hop = self._recv(e, previous)
                switch = self._bridge(e.namespace, e.ifname)
                if switch:
                    ingress[(e.namespace, switch)] = e.ifname
            elif e.hook == Hook.DROP:
                nf = last_nf.get(e.skb_id)
                if not e.namespace and nf is not None:
                    # Freed before any device (a netfilter drop in OUTPUT, say): it is
                    # in the namespace of the netfilter hook that saw it last.
                    e = replace(e, namespace=nf.namespace)
                where = f" (in {e.location})" if e.location else ""
                read = self.read_copies.get(_same_packet(e, e.namespace))
                if read is not None and read.skb_id != e.skb_id and read.socket is not None:
                    hop = (
                        "deliver",
                        f"{self.node(e.namespace)} delivers a copy to {read.socket.describe()}; "
                        f"the kernel frees the original: {e.drop_reason}{where}",
                    )
                else:
                    hop = ("drop", f"{self.node(e.namespace)} drops it: {e.drop_reason}{where}")
            elif e.hook == Hook.CONSUME:
                if not final or (series.hops and series.hops[-1].action in ("drop", "deliver")):
                    continue  # a clone (a tap, a raw socket's copy) at work
                if not e.namespace and previous is not None:
                    # Freed after leaving its device: it is where it was last seen.
                    e = replace(e, namespace=previous.namespace, ifname=previous.ifname)
                state = self.states.get(e.namespace)
                if state is None or state.owns(e.dst):
                    sk = e.socket
                    reader = (
                        f", read by {sk.describe()}"
                        if sk and sk.inet and sk.receiving and sk.namespace == e.namespace
                        else ""
                    )
                    hop = ("deliver", f"{self.node(e.namespace)} {_TAKES[direction]}{reader}")
                else:
                    hop = (
                        "end",
                        f"{self.node(e.namespace)} frees it without a drop reason "
                        "(consume_skb), short of its destination",
                    )
            if hop is None:
                continue
            action, text = hop
            if start is None:
                start = e.time_ns
            series.hops.append(
                Hop(
                    time_ns=e.time_ns,
                    offset_us=(e.time_ns - start) / 1000,
                    latency_us=(e.time_ns - last_time) / 1000 if last_time is not None else 0.0,
                    node=self.node(e.namespace),
                    interface=e.ifname,
                    action=action,
                    text=text,
                    hooks=tuple(dict.fromkeys([*hooks_here, _hook_name(e)])),
                    packet=packet_of(e),
                    translation=translation,
                    drop_reason=e.drop_reason if e.hook == Hook.DROP else None,
                    events=(position,),
                    captured=self._seen(position, e),
                    outer=e.outer,
                    mark=e.mark,
                )
            )
            hooks_here = []
            last_time = e.time_ns
            previous = e
        return series

    def _seen(self, position: int, e: Event) -> bool | None:
        """Whether the capture saw this hop; None where no capture could (not a device)."""
        if self.captured is None or e.hook not in (Hook.DEV_XMIT, Hook.DEV_RECV):
            return None
        if e.namespace not in self.states:
            return None  # a namespace the run did not trace: nothing captured there
        if self.capture_on is not None and (e.namespace, e.ifname) not in self.capture_on:
            return None  # a link leading away from the traced ones: no capture on it
        return position in self.captured

    def _bridge(self, namespace: str, ifname: str) -> str | None:
        state = self.states.get(namespace)
        link = state.link(ifname) if state else None
        return link.master if link else None

    def _is_bridge(self, namespace: str, ifname: str) -> bool:
        state = self.states.get(namespace)
        return bool(state and state.is_bridge(ifname))

    def _switch(
        self,
        e: Event,
        bridge: str,
        came_in: str | None,
        previous: Event,
        flooded: dict[tuple[str, str], list[str]],
    ) -> tuple[str, str] | None:
        """A bridge port transmits: forwarded by the FDB, or flooded, and why."""
        if came_in is None and (previous.ifname, previous.namespace) != (bridge, e.namespace):
            return None
        where = f"from {came_in} to {e.ifname}" if came_in else f"out of port {e.ifname}"
        copies = [p for p in flooded.get((e.namespace, bridge), []) if p != e.ifname]
        mac = e.dmac
        known = self.fdb.port(e.namespace, mac, e.time_ns) if mac else None
        if copies or is_group(mac) or (mac and known is None):
            if mac == "ff:ff:ff:ff:ff:ff":
                why = "a broadcast"
            elif is_group(mac):
                why = "a multicast MAC"
            elif known is not None:
                why = f"its FDB entry for {mac} was gone: aged out or flushed"
            else:
                why = f"{mac} is not in its FDB"
            also = f"; copies out of {', '.join(copies)}" if copies else ""
            if came_in:
                where = f"from {came_in} out of {e.ifname}"
            return ("bridge-forward", f"{bridge} floods it {where} ({why}{also})")
        verb = "forwards it" if came_in else "sends it"
        if known == e.ifname:
            return ("bridge-forward", f"{bridge} {verb} {where} (FDB: {mac} on {e.ifname})")
        return ("bridge-forward", f"{bridge} {verb} {where}")

    def _xmit(
        self, e: Event, previous: Event | None, first: bool, direction: str
    ) -> tuple[str, str]:
        node = self.node(e.namespace)
        if first:
            verb = "answers" if direction == "reply" else "sends"
            if direction == "icmp_error":
                verb = "reports an error"
            return ("send", f"{node} {verb} on {e.ifname}")
        state = self.states.get(e.namespace)
        if e.outer is not None and not (previous and previous.outer == e.outer):
            # Encapsulated here: routed by the outer destination, not the inner.
            route = state.route_for(e.outer.dst) if state else None
            via = f" via {route.gateway}" if route and route.gateway else ""
            tunnel = self._tunnel(e.namespace, e.outer, previous)
            by = f"{tunnel} ({tunnel_kind})" if (tunnel_kind := self._kind_of(e, tunnel)) else ""
            return (
                "route",
                f"{by or 'a tunnel'} encapsulates it ({e.outer.describe()}); "
                f"{node} sends it out of {e.ifname}{via}",
            )
        route = state.route_for(e.outer.dst if e.outer else e.dst) if state else None
        via = f" via {route.gateway}" if route and route.gateway else ""
        return ("route", f"{node} routes it out of {e.ifname}{via}")

    def _tunnel(self, namespace: str, outer: Outer, previous: Event | None) -> str | None:
        """The tunnel device that made these outer headers: the one the packet was
        just sent on, if it is of the tunnel's kind (the event says so); else the
        device of ``namespace`` that netlink gives these headers' VNI and port, or
        (IPIP, GRE) these endpoints, the most exact first."""
        kinds = ENCAP_KINDS.get(outer.kind, ())
        if previous is not None and previous.namespace == namespace:
            sent_on = self._link(namespace, previous.ifname)
            if sent_on is not None and sent_on.kind in kinds:
                return sent_on.name
        state = self.states.get(namespace)
        best: tuple[int, str] | None = None
        for link in state.links if state else []:
            if link.kind not in kinds:
                continue
            if outer.kind in ("ipip", "gre"):
                wanted = {"local": outer.src, "remote": outer.dst}
            else:
                wanted = {"vni": str(outer.vni), "port": str(outer.dport)}
            said = {k: link.detail(k) for k in wanted}
            if any(v is not None and v != wanted[k] for k, v in said.items()):
                continue  # netlink says otherwise
            exact = sum(v is not None for v in said.values())
            if best is None or exact > best[0]:
                best = (exact, link.name)
        return best[1] if best else None

    def _kind_of(self, e: Event, name: str | None) -> str:
        return self._kind(e.namespace, self._link(e.namespace, name)) if name else ""

    def _recv(self, e: Event, previous: Event | None) -> tuple[str, str]:
        node = self.node(e.namespace)
        if (
            previous is not None
            and previous.hook == Hook.DEV_XMIT
            and previous.namespace != e.namespace
        ):
            crossing = self._crossing(previous, e)
            return ("cross", f"{crossing}, encapsulated" if e.outer else crossing)
        if previous is not None and previous.outer is not None and e.outer is None:
            link = self._link(e.namespace, e.ifname)
            what = f"{e.ifname} ({self._kind(e.namespace, link)})"
            return ("receive", f"{what} decapsulates it: {node} receives it on {e.ifname}")
        if (
            previous is not None
            and self._is_bridge(e.namespace, e.ifname)
            and previous.namespace == e.namespace
        ):
            return ("bridge-up", f"{e.ifname} delivers it up to {node}")
        return ("receive", f"{node} receives it on {e.ifname}")

    def _crossing(self, sent: Event, received: Event) -> str:
        """From one namespace to another, in the words of what netlink says the two
        links are: a veth pair only when both ends are veths and peers of each other."""
        here = f"{self.node(sent.namespace)}/{sent.ifname}"
        there = f"{self.node(received.namespace)}/{received.ifname}"
        a, b = (
            self._link(sent.namespace, sent.ifname),
            self._link(received.namespace, received.ifname),
        )
        if (
            a is not None
            and b is not None
            and a.kind == b.kind == "veth"
            and b.peer_index == a.index
            and a.peer_index in (None, b.index)
        ):
            return f"crosses the veth pair {here} -> {there}"
        # Only what netlink says each end is; how it got across is said only where
        # netlink links the two (a lower device and the device on it).
        if a is not None and b is not None:
            if a.parent_index == b.index and a.parent_elsewhere != (
                sent.namespace == received.namespace
            ):
                return (
                    f"{here} ({a.describe_kind()}) hands it to its lower device "
                    f"{there} ({b.describe_kind()})"
                )
            if b.parent_index == a.index and b.parent_elsewhere != (
                sent.namespace == received.namespace
            ):
                return (
                    f"{here} ({a.describe_kind()}) hands it up to {there} "
                    f"({b.describe_kind()}) on it"
                )
        kind_a = self._kind(sent.namespace, a)
        kind_b = self._kind(received.namespace, b)
        return f"passes from {here} ({kind_a}) to {there} ({kind_b})"

    def _kind(self, namespace: str, link: Link | None) -> str:
        """A link's kind with what netlink says of it, its lower device named where
        it is in the same namespace."""
        if link is None:
            return "kind not read"
        parent = None
        if link.parent_index is not None:
            state = self.states.get(namespace)
            lower = state.link_by_index(link.parent_index) if state else None
            if link.parent_elsewhere or lower is None:
                parent = f"ifindex {link.parent_index} in another namespace"
            else:
                parent = lower.name
        return link.describe_kind(parent)

    def _link(self, namespace: str, ifname: str) -> Link | None:
        state = self.states.get(namespace)
        return state.link(ifname) if state else None

    def translation(self, before: Event, after: Event, direction: str) -> Translation:
        pb, pa = packet_of(before), packet_of(after)
        source_changed = (pb.src, pb.sport) != (pa.src, pa.sport)
        kind = "SNAT" if source_changed else "DNAT"
        side: Literal["src", "dst"] = "src" if source_changed else "dst"
        rule_text: str | None = None
        rule_id: str | None = None
        if direction == "request":
            found = self.attribute(after, kind, before)
            if found is not None:
                rule, path = found
                rule_text = f"rule {rule.name} ({rule.cited_via(path)})"
                at = f"rule {rule.handle}" if rule.legacy else f"handle {rule.handle}"
                rule_id = f"{rule.family} {rule.table} {rule.chain} {at}"
        elif direction in ("source_rst", "source_icmp_error"):
            # The request's way again, in its connection: conntrack, not a rule.
            rule_text = "conntrack (the request's translation, for the same connection)"
        else:
            kind = "un-DNAT" if source_changed else "un-SNAT"
            rule_text = "conntrack (the reverse of the request's translation)"
        return Translation(
            kind,
            pb.endpoint(side),
            pa.endpoint(side),
            rule_text,
            self.node(after.namespace),
            rule_id,
        )

    def attribute(
        self, after: Event, kind: str, before_event: Event
    ) -> tuple[LiveRule, tuple[LiveRule, ...]] | None:
        """The rule that did this kind of NAT to the packet, with the jumps that led
        there: evaluated as the kernel would, jumps taken only when their own matches
        accept the packet, and a matching accept or return ending the chain."""
        state = self.states.get(after.namespace)
        if state is None:
            return None
        chain = _CHAIN_OF_HOOK.get(after.nf_hook or "") or (
            "POSTROUTING" if kind == "SNAT" else "PREROUTING"
        )
        actions = ("masquerade", "snat") if kind == "SNAT" else ("dnat", "redirect")
        before, mark = packet_of(before_event), before_event.mark
        returned: set[tuple[LiveRule, ...]] = set()  # chains left by a matching return
        family = "ip6" if ":" in before.src else "ip"
        for rule, path in state.rules().walk(chain, family):
            if any(path[:i] in returned for i in range(1, len(path) + 1)):
                continue
            # Where the packet came in (PREROUTING, INPUT: the hook's device) and
            # goes out (POSTROUTING: the translated packet's device).
            came_in = before_event.ifname if chain in ("PREROUTING", "INPUT") else ""
            goes_out = after.ifname if chain in ("POSTROUTING", "OUTPUT") else ""
            if not all(
                _rule_matches(r.text, before, goes_out, mark, came_in) for r in (*path, rule)
            ):
                continue
            if any(a in rule.text for a in actions):
                return rule, path
            if rule.verdict == "return":
                returned.add(path)
            elif rule.verdict is not None:
                return None  # accepted (or dropped) before any translation
        return None


def _hook_name(e: Event) -> str:
    names: dict[str, str] = {
        Hook.DEV_XMIT: "net_dev_start_xmit",
        Hook.DEV_RECV: "netif_receive_skb",
        Hook.DROP: "kfree_skb",
        Hook.CONSUME: "consume_skb",
        Hook.VETH_XMIT: "veth_xmit",
        Hook.BR_FORWARD: "br_forward",
        Hook.BR_HANDLE_FRAME: "br_handle_frame",
        Hook.NAT_BEFORE: "nf_nat_manip_pkt",
        Hook.NAT_AFTER: "nf_nat_manip_pkt",
        Hook.CT_INVALID: "nf_l4proto_log_invalid",
    }
    if e.hook.startswith("nf_"):
        return f"netfilter/{e.nf_hook}"
    return f"{e.via}/{names.get(e.hook, e.hook)}"


_MARK = re.compile(r"meta mark (?:& (0x[0-9a-f]+) == )?(0x[0-9a-f]+)")
_Test = Callable[[str, Packet, str, str], bool] | None
_MATCHERS: list[tuple[re.Pattern[str], _Test]] = [
    (re.compile(r"ip6? saddr ((?:!= )?\S+)"), lambda v, p, *_: _in(p.src, v)),
    (re.compile(r"ip6? daddr ((?:!= )?\S+)"), lambda v, p, *_: _in(p.dst, v)),
    (re.compile(r'oifname ((?:!= )?"?[\w.-]+)"?'), lambda v, _p, out, _i: _is(out, v)),
    (re.compile(r'iifname ((?:!= )?"?[\w.-]+)"?'), lambda v, _p, _o, came: _is(came, v)),
    (re.compile(r"(tcp|udp) dport (\d+)"), None),
    (re.compile(r"ip protocol (\w+)"), lambda v, p, *_: p.protocol == v),
]


def _is(ifname: str, spec: str) -> bool:
    """An interface match (``"eth0"``, ``!= "docker0"``); unknown device: not ruled out."""
    if not ifname:
        return True
    negate = spec.startswith("!=")
    return (ifname == spec.removeprefix("!=").strip().strip('"')) != negate


def _in(address: str, spec: str) -> bool:
    negate = spec.startswith("!=")
    try:
        ip, net = ip_address(address), ip_network(spec.lstrip("!= "), strict=False)
    except ValueError:
        return True  # a set or a map: we cannot tell, so do not rule it out
    if ip.version != net.version:
        return False  # an ip match never takes an IPv6 packet, nor ip6 an IPv4 one
    return (ip in net) != negate


def _rule_matches(
    text: str, packet: Packet, out_ifname: str, mark: int = 0, in_ifname: str = ""
) -> bool:
    """Whether the simple matches of an nft rule accept the packet (others are assumed to)."""
    m = _MARK.search(text)
    if m is not None:  # meta mark & MASK == VALUE, or meta mark VALUE (as portmap writes)
        mask = int(m.group(1), 16) if m.group(1) else 0xFFFFFFFF
        if mark & mask != int(m.group(2), 16):
            return False
    for pattern, test in _MATCHERS:
        m = pattern.search(text)
        if not m:
            continue
        if test is None:
            if packet.protocol != m.group(1) or packet.dport != int(m.group(2)):
                return False
        elif not test(m.group(1), packet, out_ifname, in_ifname):
            return False
    return True
