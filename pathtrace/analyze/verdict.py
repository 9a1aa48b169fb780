"""Verdicts: answered, delivered, rejected, dropped or lost, with cause and fix.

Decided from the whole series, never from one event: a kfree_skb of the
answer in the prober's own namespace (no socket waits for an injected
packet's reply) is the end of a successful trip, not a loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from pathtrace.model.event import Event, Hook, TagKind
from pathtrace.model.ruleset import LiveRule
from pathtrace.model.state import NamespaceState
from pathtrace.model.trace import Hop, Series, Verdict

ICMP_ERRORS = {
    (3, 0): "network unreachable",
    (3, 1): "host unreachable",
    (3, 2): "protocol unreachable",
    (3, 3): "port unreachable",
    (3, 4): "fragmentation needed (packet larger than the MTU, DF set)",
    (3, 9): "network administratively prohibited",
    (3, 10): "host administratively prohibited",
    (3, 13): "communication administratively prohibited",
    (11, 0): "TTL exceeded in transit",
}


class Judge:
    def __init__(
        self,
        states: dict[str, NamespaceState],
        source_namespace: str,
        target: str,
        lost_events: int,
        restore: str | None = None,
    ) -> None:
        """``restore``: the command that puts the network back as described, when one
        exists (a lab's); fixes mention it."""
        self.restore = restore
        self.states = states
        self.source_state = states.get(source_namespace)
        self.source_node = self.source_state.node if self.source_state else source_namespace
        self.target = target
        self.lost_events = lost_events

    def _fix(self, text: str) -> str:
        return f"{text} ({self.restore})" if self.restore else text

    def settle_reply(self, reply: Series | None) -> Series | None:
        """The answer reaching the prober and freed there is delivered, not dropped."""
        if reply is None:
            return None
        hops = list(reply.hops)
        arrived = False
        for i, hop in enumerate(hops):
            if hop.action == "drop" and hop.node == self.source_node and arrived:
                hops[i] = replace(
                    hop,
                    action="deliver",
                    text=(
                        f"{hop.node} takes the answer in (no socket waits for an injected probe's "
                        f"answer, so the kernel frees it: {hop.drop_reason})"
                    ),
                )
            arrived = arrived or (
                hop.node == self.source_node and hop.action in ("cross", "receive")
            )
        return replace(reply, hops=hops)

    def judge(
        self,
        request: Series,
        reply: Series | None,
        errors: Sequence[Series],
        events: Sequence[Event],
        send_error: str | None = None,
    ) -> Verdict:
        """``send_error``: why the source's own stack refused to send the probe, if it did."""
        if not request.hops:
            return self._unsent(send_error)
        verdict = self._judge(request, reply, errors, events)
        if self.lost_events:
            verdict.confidence = (
                f"uncertain: {self.lost_events} events were lost to a full "
                "ring buffer; a missing hop may be one of them"
            )
        return verdict

    def _reached_source(self, series: Series | None) -> bool:
        return series is not None and any(
            h.node == self.source_node and h.action in ("cross", "receive", "deliver")
            for h in series.hops[1:]
        )

    def _judge(
        self,
        request: Series,
        reply: Series | None,
        errors: Sequence[Series],
        events: Sequence[Event],
    ) -> Verdict:
        if self._reached_source(reply):
            assert reply is not None
            rst = any(e.tag == TagKind.REPLY and e.tcp_flags and e.tcp_flags & 0x04 for e in events)
            responder = reply.hops[0].node
            if rst:
                return Verdict(
                    "rejected",
                    f"{responder} refused the connection (RST)",
                    where=responder,
                    cause=f"nothing listens on {request.hops[0].packet.dst} port "
                    f"{request.hops[0].packet.dport} as it arrives there",
                    fix="start a listener there, or probe a port that has one",
                )
            rtt = (reply.hops[-1].time_ns - request.hops[0].time_ns) / 1000
            return Verdict("answered", f"answered by {responder} in {rtt:.0f} us", where=responder)
        for error in errors:
            if error.hops:
                return self._icmp_error(error, events)
        for series in (request, reply):
            if series is None:
                continue
            drop = next((h for h in series.hops if h.action == "drop"), None)
            if drop is not None:
                return self._dropped(series, drop, events)
        return self._lost(request, reply)

    def _unsent(self, send_error: str | None) -> Verdict:
        """No hook saw the probe: the source did not send it, and the reason is here."""
        node, state = self.source_node, self.source_state
        if send_error is not None:
            cause = f"the source's own stack refused the packet ({send_error})"
            fix = "see the error: the source's routes, neighbours and firewall"
            if "too long" in send_error.lower():  # EMSGSIZE
                cause += (
                    "; it is larger than the path MTU the source knows for the "
                    "destination, and DF forbids fragmenting it"
                )
                fix = "send smaller packets, or clear DF"
            return Verdict(
                "dropped",
                f"{node} could not send it: {send_error}",
                where=node,
                cause=cause,
                fix=fix,
            )
        if state is not None and state.route_for(self.target) is None:
            has_default = any(r.dst == "default" for r in state.routes)
            routes = ", ".join(r.describe() for r in state.routes) or "none"
            return Verdict(
                "dropped",
                f"{node} has no route to {self.target}",
                where=node,
                cause=f"{node} has no route to {self.target}"
                + ("" if has_default else " (it has no default route)")
                + f"; its routes: {routes}",
                fix=self._fix(f"add a route (a default route via the gateway) in {node}"),
            )
        return Verdict(
            "lost",
            f"never seen leaving {node}",
            where=node,
            cause="no hook saw the probe: it was not sent, or every event was lost",
            fix="check `pathtrace doctor` and the source's routes",
        )

    def _icmp_error(self, error: Series, events: Sequence[Event]) -> Verdict:
        first = next(e for e in events if e.tag == TagKind.ICMP_ERROR)
        code = (first.icmp_type or 0, first.icmp_code or 0)
        what = ICMP_ERRORS.get(code, f"ICMP type {code[0]} code {code[1]}")
        sender = error.hops[0].node
        cause, fix = what, None
        if code == (3, 3):
            cause = f"nothing listens on that port in {sender}"
            fix = "start a listener, or check the port"
        elif code == (3, 4):
            cause = (
                f"{sender} must send the packet on a link whose MTU is smaller than the "
                "packet, and DF forbids fragmenting it"
            )
            fix = self._fix("send smaller packets, clear DF, or raise the MTU")
        elif code == (11, 0):
            cause = f"the TTL reached 0 at {sender}"
            fix = self._fix("raise the TTL, or look for a rule that rewrites it")
        elif code[0] == 3 and code[1] in (9, 10, 13):
            rule = self._rule_like(sender, ("reject",))
            cause = f"a reject rule in {sender}" + (f": {rule.name} ({rule.cited})" if rule else "")
            if self.restore or rule is None:
                fix = self._fix("remove the reject rule")
            else:
                fix = f"remove the rule: {self._run_in(sender)}{rule.delete_command}"
        return Verdict(
            "rejected", f"{sender} answered with ICMP {what}", where=sender, cause=cause, fix=fix
        )

    def _dropped(self, series: Series, drop: Hop, events: Sequence[Event]) -> Verdict:
        where = f"{drop.node}/{drop.interface}" if drop.interface else drop.node
        reason = drop.drop_reason or "unknown"
        cause, fix = f"the kernel dropped it: {reason}", None
        state = self._state_of(drop.node)
        if reason == "NETFILTER_DROP":
            chain = self._chain_without_after(drop.node, events)
            rule = self._rule_like(drop.node, ("drop",), chain)
            policy = self._policy(drop.node, chain)
            cause = f"netfilter dropped it in {chain or 'a chain'} of {drop.node}"
            if rule:
                cause += f": rule {rule.name} ({rule.cited})"
            elif policy == "drop":
                cause += ": the chain's policy is drop and no rule accepts it"
            if self.restore or rule is None:
                fix = self._fix("accept it in that chain, or remove the drop")
            else:  # a network with no one command to restore it: the rule's own removal
                fix = f"remove the rule: {self._run_in(drop.node)}{rule.delete_command}"
            # Dropped on a bridge port, or after a bridge forward: it was bridged, not routed.
            port = state.link(drop.interface) if state and drop.interface else None
            bridged = any(h.action == "bridge-forward" for h in series.hops) or bool(
                port and port.master
            )
            if (
                bridged
                and state is not None
                and state.sysctls.get("net.bridge.bridge-nf-call-iptables") == "1"
            ):
                cause += (
                    f"; the packet was only bridged, but {drop.node} has "
                    "net.bridge.bridge-nf-call-iptables=1, so bridged IPv4 traffic "
                    "passes the ip FORWARD chain too"
                )
        elif reason == "IP_RPFILTER":
            values = ", ".join(
                f"{k.split('.')[-2]}.rp_filter={v}"
                for k, v in (state.sysctls.items() if state else [])
                if k.endswith("rp_filter")
            )
            cause = (
                f"reverse-path filtering in {drop.node} ({values}): the source "
                f"{drop.packet.src} is not routed back through {drop.interface}"
            )
            fix = (
                f"route {drop.packet.src} back through {drop.interface}, or set rp_filter "
                f"to 2 (loose) or 0 in {drop.node}"
            )
        elif (
            state is not None
            and state.sysctls.get("net.ipv4.ip_forward") == "0"
            and not state.owns(series.hops[0].packet.dst)
            and drop.node != self.source_node
        ):
            cause = f"{drop.node} does not forward: net.ipv4.ip_forward is 0 ({reason})"
            fix = self._fix(f"set net.ipv4.ip_forward=1 in {drop.node}")
            if not self.restore:
                fix += f": {self._run_in(drop.node)}sysctl -w net.ipv4.ip_forward=1"
        elif "NO_ROUTE" in reason or "NOROUTES" in reason or "UNREACHABLE" in reason:
            packet = drop.packet
            cause = f"{drop.node} has no route to {packet.dst} ({reason})"
            if series.direction == "reply" and self._private(packet.dst):
                cause += (
                    f"; the request reached {series.hops[0].node} with its private source "
                    f"{packet.dst}: no SNAT on the way out"
                )
                fix = self._fix(
                    f"masquerade (SNAT) the private source {packet.dst} where it leaves "
                    "for the uplink"
                )
            else:
                fix = f"add a route to {packet.dst} in {drop.node}"
        elif reason in ("NO_SOCKET",) and series.direction == "request":
            cause = f"nothing in {drop.node} takes it ({reason})"
        return Verdict("dropped", f"dropped in {where}", where=where, cause=cause, fix=fix)

    def _lost(self, request: Series, reply: Series | None) -> Verdict:
        last = reply.hops[-1] if reply and reply.hops else request.hops[-1]
        where = f"{last.node}/{last.interface}" if last.interface else last.node
        went = "the answer" if reply and reply.hops else "the probe"
        state = self._state_of(last.node)
        arrived = (
            state is not None
            and state.owns(request.hops[0].packet.dst)
            and last.action in ("deliver", "receive", "cross")
        )
        if not (reply and reply.hops) and arrived:
            packet = request.hops[-1].packet  # as the destination saw it
            assert state is not None
            if state.route_for(packet.src) is None:
                cause = f"{last.node} has no route back to {packet.src}"
                fix = f"give {last.node} a route to {packet.src}"
                if self._private(packet.src):
                    cause += (
                        ": the request arrived with its private source address; "
                        "nothing translated it on the way out"
                    )
                    fix = self._fix(
                        f"masquerade (SNAT) the private subnet where it leaves for {last.node}"
                    )
                return Verdict(
                    "lost",
                    f"reached {last.node}, which cannot answer",
                    where=last.node,
                    cause=cause,
                    fix=fix,
                )
            return Verdict(
                "delivered",
                f"delivered to {last.node}, no answer came back",
                where=last.node,
                cause="the destination took it but did not answer",
                fix="check the service on the destination",
            )
        return Verdict(
            "lost",
            f"{went} was last seen at {where} ({last.text})",
            where=where,
            cause="no hook saw it after that",
            fix=self._what_next(last),
        )

    def _what_next(self, last: Hop) -> str:
        state = self._state_of(last.node)
        if state is not None and last.interface:
            link = state.link(last.interface)
            if link is not None and (not link.up or not link.carrier):
                peer = "its peer is down" if link.up else "it is down"
                return self._fix(f"{last.node}/{last.interface} has no carrier: {peer}")
        if state is not None and last.action in ("route", "send"):
            route = state.route_for(last.packet.dst)
            if route is None:
                return f"{last.node} has no route to {last.packet.dst}"
            return (
                f"the neighbour {route.gateway or last.packet.dst} on {route.dev}: "
                "does it answer ARP? (ip neigh)"
            )
        return "the next hop's interfaces, routes and rules"

    def _state_of(self, node: str) -> NamespaceState | None:
        return next((s for s in self.states.values() if s.node == node), None)

    def _chain_without_after(self, node: str, events: Sequence[Event]) -> str | None:
        state = self._state_of(node)
        if state is None:
            return None
        seen: dict[str | None, int] = {}
        for e in events:
            if e.namespace == state.namespace and e.hook in (Hook.NF_BEFORE, Hook.NF_AFTER):
                seen[e.nf_hook] = seen.get(e.nf_hook, 0) + (1 if e.hook == Hook.NF_BEFORE else -1)
        open_chains = [chain for chain, n in seen.items() if n > 0]
        return open_chains[-1] if open_chains else None

    def _rule_like(
        self, node: str, words: tuple[str, ...], chain: str | None = None
    ) -> LiveRule | None:
        state = self._state_of(node)
        if state is None:
            return None
        ruleset = state.rules()
        for rule in ruleset.rules_at(chain) if chain else ruleset.rules:
            if any(w in rule.text.split() for w in words):
                return rule
        return None

    def _run_in(self, node: str) -> str:
        """How a command is run in ``node``'s namespace from a shell on the host."""
        state = self._state_of(node)
        namespace = state.namespace if state else node
        if node == "host" or not namespace:
            return ""
        if namespace.startswith("/proc/"):
            return f"nsenter -t {namespace.split('/')[2]} -n "
        if namespace.startswith("/"):
            return f"nsenter --net={namespace} "
        return f"ip netns exec {namespace} "

    def _policy(self, node: str, chain: str | None) -> str | None:
        state = self._state_of(node)
        if state is None or chain is None:
            return None
        return state.rules().policy_at(chain)

    @staticmethod
    def _private(address: str) -> bool:
        from ipaddress import IPv4Address

        return IPv4Address(address).is_private
