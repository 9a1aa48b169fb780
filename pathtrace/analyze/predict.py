"""The predicted path: what the saved state says the kernel would do with a probe.

Step by step, from the state alone, as the kernel decides: netfilter at each hook
(every family, by priority: notrack, marks, NAT, drops; ``chains``), policy
routing with the mark and the input interface, forwarding and reverse-path
filtering as their effective values, links (admin state, carrier, NOARP, MTU),
address resolution and the bridge between (``segments``), and the answer back
through the conntrack entries the request made.

It follows VXLAN devices (``overlay``: the datagram through the underlay, taken
off by the VTEP's device). It does not run XDP programs or tc filters whose match
it cannot read, nor follow other tunnels, macvlans or VLANs: what it passes
without knowing is listed (``unknowns``), and where it cannot go on it says so
(outcome "unknown"), never a guess.
"""

from __future__ import annotations

from dataclasses import replace
from ipaddress import ip_address

from pathtrace.analyze import links, routing
from pathtrace.analyze.chains import Chains, Flow, Stop
from pathtrace.analyze.network import Network
from pathtrace.analyze.overlay import through_vxlan
from pathtrace.analyze.segments import cross, effective
from pathtrace.model.cause import ref
from pathtrace.model.prediction import Prediction
from pathtrace.model.state import Link, NamespaceState, RouteEntry
from pathtrace.model.trace import Packet

MAX_NODES = 16


class Walk(Chains):
    """One direction's prediction, namespace by namespace."""

    def run(self, node: str, flow: Flow) -> Prediction:
        iif: str | None = None
        try:
            for _ in range(MAX_NODES):
                state = self.net.state(node)
                if state is None:
                    raise Stop("left", node, None, (), f"{node} is not traced")
                out, gateway = self._through(state, flow, iif)
                if out.kind == "vxlan":
                    node, iif = through_vxlan(self, state, out, gateway, flow, self._underlay)
                else:
                    node, iif = cross(self, state, out, gateway, flow)
            raise Stop("unknown", node, None, (), f"more than {MAX_NODES} namespaces: a loop?")
        except Stop as stop:
            return Prediction(
                self.direction,
                tuple(self.steps),
                stop.outcome,
                stop.node,
                stop.code,
                stop.objects,
                stop.why,
                tuple(dict.fromkeys(self.unknowns)),
            )

    def _underlay(self, node: str, outer: Flow) -> Prediction:
        """A tunnel's datagram, sent by ``node``: predicted as a walk of its own."""
        return Walk(self.net, self.direction).run(node, outer)

    def _through(self, state: NamespaceState, flow: Flow, iif: str | None) -> tuple[Link, str]:
        """In at ``iif`` (None: sent here) and out: the link and the next hop."""
        node = state.node
        ruleset = state.rules()
        if iif is not None:
            self.hook(state, ruleset, "prerouting", flow, iif, None)
            self._conntrack_in(node, flow)
            lookup = routing.route_get(state, flow.dst, flow.src, iif, flow.mark)
            self._input_checks(state, flow, iif, lookup)
            if lookup.kind == "local" or state.owns(flow.dst):
                self.hook(state, ruleset, "input", flow, iif, None)
                self._conntrack_out(node, flow)
                self.step(node, iif, "deliver", f"{node} takes it in: {flow.dst} is its own")
                raise Stop("delivered", node, None, (), "delivered")
            if lookup.kind == "none" and links.owner(self.net.all, flow.dst) is None:
                # Forwarding, on or off, would not send it anywhere (the Judge's
                # causes.routes._held_by_none).
                raise Stop(
                    "stopped",
                    node,
                    "route.none",
                    (ref("route", node, flow.dst),),
                    f"no traced namespace holds {flow.dst}, and {node} has no route for it",
                )
            self._forwarding(state, flow, iif)
            flow.ttl -= 1
            if flow.ttl <= 0:
                rule = flow.ttl_rule
                raise Stop(
                    "stopped",
                    node,
                    "nf.ttl" if rule else "path.ttl",
                    (rule,) if rule else (),
                    f"the TTL runs out in {node} (it forwards)"
                    + (f"; {rule} set it" if rule else ""),
                )
        else:
            lookup = routing.route_get(state, flow.dst, None, None, flow.mark)
            if lookup.kind == "local":
                self.step(node, "lo", "deliver", f"{flow.dst} is {node}'s own")
                raise Stop("delivered", node, None, (), "delivered")
        route = self._route(state, flow, lookup, iif)
        out = state.link(route.dev or "")
        if out is None:
            raise Stop("unknown", node, None, (), f"the route's device {route.dev} is not saved")
        before = (flow.mark, flow.dst)
        self.hook(state, ruleset, "forward" if iif is not None else "output", flow, iif, out.name)
        if (flow.mark, flow.dst) != before and iif is None:
            # A mark or a DNAT on the way out: the kernel looks the route up again.
            lookup = routing.route_get(state, flow.dst, None, None, flow.mark)
            route = self._route(state, flow, lookup, iif)
            out = state.link(route.dev or "") or out
        self.step(
            node, out.name, "route", f"{node} routes it out of {out.name} ({route.describe()})"
        )
        self.gateway_rule = _rule_ref(node, lookup)
        self.gateway_route = ref("route", node, route.dst) if route.gateway else None
        self.hook(state, ruleset, "postrouting", flow, iif, out.name)
        self._conntrack_out(node, flow)
        return out, route.gateway or flow.dst

    def _route(
        self, state: NamespaceState, flow: Flow, lookup: routing.Lookup, iif: str | None
    ) -> RouteEntry:
        node = state.node
        if not lookup.refused and lookup.route is not None:
            return lookup.route
        code = "route.none" if lookup.kind == "none" else f"route.{lookup.kind}"
        if code == "route.none" and flow.reply and iif is None and not self.steps:
            code = "route.back"  # the destination itself has no way back to the source
        objects = routing.refs(node, lookup, flow.dst)
        if lookup.rule is not None and lookup.rule.fwmark is not None and flow.mark_rule:
            objects = (*objects, flow.mark_rule)  # the rule that set the mark it matched
        kept = [k for k in flow.kept if k.kind == "snat" and k.before == flow.dst]
        if flow.reply and kept:
            # The answer goes to an address a notrack rule kept a SNAT from replacing.
            raise Stop(
                "stopped",
                node,
                "nf.notrack",
                (kept[0].notrack, kept[0].rule, *objects),
                f"{node} has no way back to {flow.dst}, which {kept[0].rule} would have "
                f"replaced but {kept[0].notrack} kept it out of conntrack",
            )
        raise Stop(
            "stopped",
            node,
            code,
            objects,
            f"{node}'s route lookup for {flow.dst}: {lookup.describe()}",
        )

    def _input_checks(
        self, state: NamespaceState, flow: Flow, iif: str, lookup: routing.Lookup
    ) -> None:
        """What the input route checks: a loopback destination, the reverse path."""
        node = state.node
        if ":" in flow.dst:
            return
        if ip_address(flow.dst).is_loopback and iif != "lo":
            keys = [f"net.ipv4.conf.{iif}.route_localnet", "net.ipv4.conf.all.route_localnet"]
            if "1" not in (state.sysctls.get(k) for k in keys):
                raise Stop(
                    "stopped",
                    node,
                    "sysctl.route_localnet",
                    tuple(ref("sysctl", node, k) for k in keys),
                    f"{flow.dst} is a loopback address and route_localnet is off on {iif}",
                )
        keys, strict = effective(state, "rp_filter", iif)
        if not strict or lookup.refused:
            return
        back = routing.route_get(state, flow.src, None, None, 0)
        back_dev = back.route.dev if back.route is not None else None
        if back.refused or (strict == 1 and back_dev != iif):
            raise Stop(
                "stopped",
                node,
                "sysctl.rp_filter",
                (*(ref("sysctl", node, k) for k in keys), *routing.refs(node, back, flow.src)),
                f"reverse-path filtering ({'strict' if strict == 1 else 'loose'}) on {iif}: "
                f"the way back to {flow.src} is {back.describe()}",
            )

    def _forwarding(self, state: NamespaceState, flow: Flow, iif: str) -> None:
        node = state.node
        if ":" in flow.dst:
            keys = ["net.ipv6.conf.all.forwarding"]
        elif state.sysctls.get("net.ipv4.ip_forward") == "0":
            keys = ["net.ipv4.ip_forward"]  # off for every interface
        else:
            keys = [f"net.ipv4.conf.{iif}.forwarding"]
        if any(state.sysctls.get(k) == "0" for k in keys):
            raise Stop(
                "stopped",
                node,
                "sysctl.forwarding",
                tuple(ref("sysctl", node, k) for k in keys),
                f"{node} does not forward: {keys[0]} is 0",
            )

    # -- conntrack's memory of the request ----------------------------------
    def _conntrack_in(self, node: str, flow: Flow) -> None:
        """An answer's destination translated back where the request's source was."""
        if not flow.reply:
            return
        for nat in flow.nat:
            if (nat.node, nat.kind, nat.after) == (node, "snat", flow.dst):
                self.step(node, None, "translate", f"{node} un-SNATs: {nat.after} -> {nat.before}")
                flow.dst = nat.before

    def _conntrack_out(self, node: str, flow: Flow) -> None:
        if not flow.reply:
            return
        for nat in flow.nat:
            if (nat.node, nat.kind, nat.after) == (node, "dnat", flow.src):
                self.step(node, None, "translate", f"{node} un-DNATs: {nat.after} -> {nat.before}")
                flow.src = nat.before


def _rule_ref(node: str, lookup: routing.Lookup) -> str | None:
    rule = lookup.rule
    if rule is None or (rule.action == "lookup" and rule.table in (254, 255)):
        return None
    return ref("rule", node, f"pref {rule.priority}")


def predict(
    net: Network, source: str, packet: Packet, dont_fragment: bool = False
) -> list[Prediction]:
    """The request's predicted path from ``source``, and its answer's when it arrives."""
    version = ip_address(packet.dst).version
    icmp = packet.protocol in ("icmp", "icmpv6")
    flow = Flow(
        packet.src,
        packet.dst,
        packet.protocol,
        packet.sport,
        packet.dport,
        (8 if version == 4 else 128) if icmp else None,
        packet.ttl,
        packet.length,
        dont_fragment,
    )
    request = Walk(net, "request").run(source, flow)
    if request.outcome != "delivered" or request.node is None:
        return [request]
    answer = _answer(net, request.node, flow)
    if answer is not None:
        return [request, answer]
    back = replace(
        flow,
        src=flow.dst,
        dst=flow.src,
        sport=flow.dport,
        dport=flow.sport,
        icmp_type=(0 if version == 4 else 129) if icmp else None,
        ttl=64,
        length=packet.length,  # the answer to a reassembled request is whole
        mark=0,
        reply=True,
        mark_rule=None,
        ttl_rule=None,
        untracked={},
    )
    reply = Walk(net, "reply").run(request.node, back)
    if reply.outcome == "delivered" and reply.node != source:
        reply = _elsewhere(net, reply, source, back.dst)
    return [request, reply]


def _elsewhere(net: Network, reply: Prediction, source: str, address: str) -> Prediction:
    """An answer taken in by another namespace than the prober's."""
    holders = [s.node for s in net.all if s.owns(address)]
    if reply.node in holders and source in holders:
        return replace(
            reply,
            outcome="stopped",
            code="address.duplicate",
            objects=tuple(ref("address", n, address) for n in holders),
            why=f"{address} is held by {' and '.join(holders)}: {reply.node} takes the answer",
        )
    return replace(reply, outcome="unknown", why=f"the answer ends in {reply.node}, not {source}")


def _answer(net: Network, node: str, flow: Flow) -> Prediction | None:
    """Whether ``node`` answers: echo requests it ignores, a port nothing listens on."""
    state = net.state(node)
    if state is None:
        return None
    if flow.protocol in ("icmp", "icmpv6"):
        key = (
            "net.ipv4.icmp_echo_ignore_all"
            if flow.protocol == "icmp"
            else "net.ipv6.icmp.echo_ignore_all"
        )
        if state.sysctls.get(key) == "1":
            return _refused(
                node,
                "sysctl.icmp_echo_ignore",
                (ref("sysctl", node, key),),
                f"{node} ignores echo requests ({key} is 1)",
            )
        return None
    on_port = [s for s in state.listeners if s.protocol == flow.protocol and s.port == flow.dport]
    socket = ref("socket", node, f"{flow.protocol} {flow.dport}")
    if any(s.takes(flow.dst) for s in on_port):
        return None
    if on_port:
        return _refused(
            node,
            "socket.bound",
            (socket,),
            f"{node} listens on {', '.join(s.endpoint for s in on_port)} only, not {flow.dst}",
        )
    ported = [n for n in flow.nat if n.kind == "dnat" and n.port is not None]
    if ported:
        return _refused(
            node,
            "nat.port",
            (ported[-1].rule, socket),
            f"a DNAT ({ported[-1].rule}) sends it to port {flow.dport}, where nothing in "
            f"{node} listens",
        )
    kept = [k for k in flow.kept if k.kind == "dnat" and k.node == node and k.before == flow.dst]
    if kept:
        return _refused(
            node,
            "nf.notrack",
            (kept[0].notrack, kept[0].rule),
            f"{kept[0].notrack} kept {flow.dst} out of conntrack, so {kept[0].rule} never sent "
            f"it on; nothing in {node} listens on {flow.protocol} port {flow.dport}",
        )
    return _refused(
        node,
        "socket.none",
        (socket,),
        f"nothing in {node} listens on {flow.protocol} port {flow.dport}",
    )


def _refused(node: str, code: str, objects: tuple[str, ...], why: str) -> Prediction:
    return Prediction("answer", (), "stopped", node, code, objects, why)
