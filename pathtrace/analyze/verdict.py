"""Verdicts: answered, delivered, rejected, dropped or lost, with place, cause, fix
and the evidence for them.

Decided from the whole series, never from one event: a kfree_skb of the
answer in the prober's own namespace (no socket waits for an injected
packet's reply) is the end of a successful trip, not a loss. Where the
kernel's reason is generic, the cause comes from where it happened and the
saved state (``drops``, ``links``, ``routing``); where neither tells, the
verdict says so instead of guessing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from ipaddress import ip_address, ip_interface

from pathtrace.analyze import drops, links, nfmatch, predict, proof, remedy, routing
from pathtrace.analyze.causes.addresses import duplicate
from pathtrace.analyze.causes.common import arrival
from pathtrace.analyze.causes.netfilter import dropping, nf_ref
from pathtrace.analyze.causes.refusal import refusal
from pathtrace.analyze.causes.routes import link_up_fix, marked, no_route, refused_lookup
from pathtrace.analyze.causes.sockets import dnat_to_a_closed_port
from pathtrace.analyze.causes.stalled import stalled
from pathtrace.analyze.chains import first_address
from pathtrace.analyze.network import Network
from pathtrace.analyze.weigh import weigh
from pathtrace.model.cause import Finding, ref
from pathtrace.model.event import Event, Hook, TagKind
from pathtrace.model.prediction import Prediction
from pathtrace.model.ruleset import LiveRule, Ruleset
from pathtrace.model.state import Link, NamespaceState
from pathtrace.model.trace import Hop, Packet, Series, Verdict

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
ICMP6_ERRORS = {
    (1, 0): "no route to destination",
    (1, 1): "communication administratively prohibited",
    (1, 3): "address unreachable",
    (1, 4): "port unreachable",
    (1, 5): "source address failed policy",
    (1, 6): "reject route to destination",
    (2, 0): "packet too big",
    (3, 0): "hop limit exceeded in transit",
}
# ICMPv6 errors as the ICMPv4 error that means the same, so that one reasoning
# explains both: routes refusing, reject rules, no listener, MTU, TTL.
AS_ICMP4 = {
    (1, 0): (3, 0),
    (1, 1): (3, 13),
    (1, 3): (3, 1),
    (1, 4): (3, 3),
    (1, 5): (3, 13),
    (1, 6): (3, 13),
    (2, 0): (3, 4),
    (3, 0): (11, 0),
}
NOT_TAKEN = ("OTHERHOST",)  # freed on arrival as not for this host: never "taken in"
# Freed by the transport layer for want of a socket: only a packet the namespace's
# own stack accepted for local delivery gets there, whether or not a device hook
# saw it arrive (a macvlan's frames reach its namespace in a second round of its
# parent's receive, past the receive tracepoint).
DELIVERED_LOCALLY = ("NO_SOCKET",)
_NAT = re.compile(r"\b(masquerade|snat|dnat|redirect)\b")


class Judge:
    def __init__(
        self,
        states: dict[str, NamespaceState],
        source_namespace: str,
        target: str,
        lost_events: int,
        restore: str | None = None,
        dont_fragment: bool = False,
        asked: Packet | None = None,
        predicting: bool = True,
    ) -> None:
        """``restore``: the command that puts the network back as described, when one
        exists (a lab's); fixes offer it beside their own command."""
        self.net = Network(states, restore)
        self._own: Sequence[Event] = ()  # the probe being judged: its events
        self.source_state = states.get(source_namespace)
        self.source_node = self.source_state.node if self.source_state else source_namespace
        self.target = target
        self.lost_events = lost_events
        self.dont_fragment = dont_fragment
        self.asked = asked  # the probe as asked: predicted when none was sent
        self.predicting = predicting
        # Probes of one run differ in id and sequence only: one prediction serves all.
        self._predicted: dict[tuple[object, ...], list[Prediction]] = {}

    def settle_reply(self, reply: Series | None) -> Series | None:
        """The answer reaching the prober and freed there is delivered, not dropped."""
        if reply is None:
            return None
        hops = list(reply.hops)
        arrived = False
        for i, hop in enumerate(hops):
            if (
                hop.action == "drop"
                and hop.node == self.source_node
                and (arrived or hop.drop_reason in DELIVERED_LOCALLY)
                and hop.drop_reason not in NOT_TAKEN
            ):
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
            self._own = events
            verdict = self._unsent(send_error)
            packet = self._unsent_packet(self.source_state) if self.predicting else None
            if packet is not None:
                verdict.predicted = self.prediction(packet)
                self._prove(verdict, packet, unsent=True)
                self._remedy(verdict, packet, unsent=True)
            return verdict
        verdict = self._judge(request, reply, errors, events)
        if self.predicting:
            sent = self._whole(request.hops[0].packet)
            verdict.predicted = self.prediction(sent)
            weigh(verdict)
            self._prove(verdict, sent)
            self._remedy(verdict, sent)
        if self.lost_events:
            verdict.confidence = (
                f"uncertain: {self.lost_events} events were lost to a full "
                "ring buffer; a missing hop may be one of them"
            )
        return verdict

    def _unsent_packet(self, state: NamespaceState | None) -> Packet | None:
        """The probe as asked, from the address the source's route would give it."""
        if self.asked is None or state is None:
            return None
        lookup = routing.route_get(state, self.asked.dst)
        route = lookup.route
        src = (route.prefsrc if route else None) or first_address(
            state, route.dev if route else None, self.asked.dst
        )
        return replace(self.asked, src=src) if src else None

    def _whole(self, packet: Packet) -> Packet:
        """The probe as sent whole: the first hop may show only its first fragment."""
        asked = self.asked
        if asked is None or (asked.protocol, asked.dst) != (packet.protocol, packet.dst):
            return packet
        return replace(packet, length=max(packet.length, asked.length))

    def prediction(self, packet: Packet) -> list[Prediction]:
        """The path the saved state predicts for ``packet`` sent from the source."""
        icmp = packet.protocol in ("icmp", "icmpv6")
        key = (packet.protocol, packet.src, packet.dst, packet.length, packet.ttl) + (
            () if icmp else (packet.sport, packet.dport)
        )
        if key not in self._predicted:
            self._predicted[key] = predict.predict(
                self.net, self.source_node, packet, self.dont_fragment
            )
        return self._predicted[key]

    def _prove(self, verdict: Verdict, packet: Packet, unsent: bool = False) -> None:
        """The fix applied to the saved state and the path predicted again: said
        proven, or withdrawn when the prediction stays stopped where it was."""
        if verdict.fix is None:
            return
        states = proof.apply_fix(self.net, verdict.fix)
        after = None
        if states is not None:
            changed = Network(states, self.net.restore)
            after = self._again(changed, packet, unsent)
            more = proof.routes_with_link(verdict, changed, after)
            if more is not None:
                # The link given back, its routes too: kept only if the two heal.
                fix = f"{proof.bare(verdict.fix)} && {self.net.run_in(more[0])}{more[1]}"
                whole = proof.apply_fix(self.net, fix)
                if whole is not None:
                    again = self._again(Network(whole, self.net.restore), packet, unsent)
                    if all(p.outcome == "delivered" for p in again):
                        verdict.fix, after = self.net.advice(fix), again
        said, withdraw = proof.prove(verdict, after)
        verdict.proof = said
        if withdraw and said:
            verdict.evidence.append(said)
            verdict.fix = None

    def _again(self, changed: Network, packet: Packet, unsent: bool) -> list[Prediction]:
        """The prediction on a changed state; a probe never sent takes the source
        address the changed source's route gives it (as the kernel would pick it)."""
        if unsent:
            packet = self._unsent_packet(changed.state(self.source_node)) or packet
        return predict.predict(changed, self.source_node, packet, self.dont_fragment)

    def _remedy(self, verdict: Verdict, packet: Packet, unsent: bool = False) -> None:
        """A verdict without a fix (none was known, or its own was withdrawn) whose
        cause the prediction shares: the first fix read off the stop's objects that
        the prediction, applied to the saved state, says heals."""
        stop = next((p for p in verdict.predicted if p.outcome != "delivered"), None)
        if (
            verdict.fix is not None
            or stop is None
            or stop.outcome != "stopped"
            or stop.code != verdict.code
            or not set(stop.objects) & set(verdict.objects)
        ):
            return
        for node, command in remedy.candidates(self.net, stop):
            fix = self.net.command(node, command)
            states = proof.apply_fix(self.net, fix)
            if states is None:
                continue
            changed = Network(states, self.net.restore)
            after = self._again(changed, packet, unsent)
            if all(p.outcome == "delivered" for p in after):
                verdict.fix = fix
                verdict.proof = (
                    "proven on the saved state (read off the predicted stop): with it, the "
                    f"predicted path reaches {after[0].node} and back"
                )
                return

    def _reached_source(self, series: Series | None) -> bool:
        if series is None or any(h.drop_reason in NOT_TAKEN for h in series.hops):
            return False
        return any(
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
        self._own = events  # this probe's events, for the findings that read them
        if self._reached_source(reply):
            assert reply is not None
            # The answer judged is the first one: a flow's later RST (a connection
            # closed after it was answered) is not its answer.
            begun, ended = reply.hops[0].time_ns, reply.hops[-1].time_ns
            rst = any(
                e.tag == TagKind.REPLY and (e.tcp_flags or 0) & 0x04 and begun <= e.time_ns <= ended
                for e in events
            )
            if rst:
                return self._refused(request, reply)
            responder = reply.hops[0].node
            rtt = (reply.hops[-1].time_ns - request.hops[0].time_ns) / 1000
            summary = f"answered by {responder} in {rtt:.0f} us"
            other = _answered_from_elsewhere(request, reply)
            if other:
                summary += f", {other}"
            return Verdict("answered", summary, where=responder)
        for error in errors:
            # An error about the answer (addressed to whoever sent the answer) is
            # a sign of the answer's fate, not the request's: the reply says it.
            if error.hops and not _about_answer(error, request, reply):
                return self._icmp_error(error, request, events)
        for series in (request, reply):
            if series is None:
                continue
            drop = next((h for h in series.hops if h.action == "drop"), None)
            if drop is not None and series is reply:
                untranslated = _untranslated_answer(request, series, drop)
                if untranslated is not None:
                    return untranslated
            if drop is not None:
                state = self.net.state(drop.node)
                answer_failed = state is not None and _answer_failed(drop, state, events)
                if series is request and state is not None and answer_failed:
                    return self._unanswered(request, drop, state)
                return drops.explain(self.net, series, drop, events, self.source_node)
        return self._lost(request, reply)

    # ---- the source did not send it ----

    def _unsent(self, send_error: str | None) -> Verdict:
        node, state = self.source_node, self.source_state
        down = [
            link
            for link in (state.links if state else [])
            if link.kind != "loopback" and link.addresses and not link.up
        ]
        if down:
            link = down[0]
            return Verdict(
                "dropped",
                f"{node} could not send it: {link.name} is down",
                where=f"{node}/{link.name}",
                cause=f"{link.name} is down, so the routes through it are gone and "
                f"{node} has no way to {self.target}",
                fix=link_up_fix(self.net, node, down, self.target),
                evidence=[f"{node}: {link.name} is down (addresses {', '.join(link.addresses)})"],
                code=links.down_code(link),
                objects=[ref("link", node, link.name)],
            )
        if send_error is not None:
            return self._refused_at_source(send_error)
        lookup = routing.route_get(state, self.target) if state is not None else None
        if lookup is not None and lookup.kind in routing.REFUSING:
            # The source's own lookup, policy rules first, refused it: nothing is sent.
            return Verdict.of(
                "dropped",
                f"{node} could not send it: its route lookup ends in {lookup.kind}",
                node,
                refused_lookup(self.net, node, lookup, self.target),
            )
        if state is not None and state.route_for(self.target) is None:
            finding = no_route(self.net, state, self.target)
            return Verdict.of("dropped", f"{node} has no route to {self.target}", node, finding)
        return Verdict(
            "lost",
            f"never seen leaving {node}",
            where=node,
            cause="unknown: no hook saw the probe: it was not sent, or every event was lost",
            fix="check `pathtrace doctor` and the source's routes",
            code="unknown",
        )

    def _may_match(self, rules: list[LiveRule], rules_of: Ruleset) -> list[LiveRule]:
        """The rules (of ``rules_of``) whose match may hold for the probe: as the drop
        event saw it, or else to the target by any protocol (a rule for other traffic
        is no cause)."""
        seen = [e for e in self._own if e.dst == self.target or e.hook == Hook.DROP]
        family = 6 if ":" in self.target else 4
        if seen:
            e = seen[0]
            packets = [
                nfmatch.Packet(
                    family, e.src, e.dst, e.protocol, e.sport, e.dport, e.icmp_type, mark=e.mark
                )
            ]
        else:
            state = self.source_state
            route = state.route_for(self.target) if state else None
            src = (route.prefsrc if route else None) or (
                first_address(state, route.dev if route else None, self.target) if state else None
            )
            packets = [
                nfmatch.Packet(family, src or self.target, self.target, protocol)
                for protocol in (("icmp" if family == 4 else "icmpv6"), "tcp", "udp")
            ]
        return [
            rule
            for rule in rules
            if any(
                nfmatch.evaluate_rule(rule, packet, rules_of)[0] is not False for packet in packets
            )
        ]

    def _refused_at_source(self, send_error: str) -> Verdict:
        node = self.source_node
        state = self.net.state(node)
        # Dropped on its way out with a mark (an output chain of type route routes
        # the packet again when it changes the mark): the lookup that mark leads to.
        mark = next((e.mark for e in self._own if e.hook == Hook.DROP and e.mark), 0)
        lookup_marked = self.net.lookup(node, self.target, mark=mark) if mark else None
        if state is not None and lookup_marked is not None and lookup_marked.refused:
            refused = refused_lookup(self.net, node, lookup_marked, self.target)
            found = marked(self.net, state, refused, self.target, None, None, mark)
            if found is not refused:  # the mark is why: without it the lookup passes
                return Verdict.of(
                    "dropped",
                    f"{node} could not send it: {send_error}",
                    node,
                    replace(found, cause=f"{found.cause} ({send_error} to the sender)"),
                )
        if state is not None and "not permitted" in send_error.lower():
            # EPERM from a send: netfilter dropped the node's own packet on its way
            # out (an output or postrouting rule of the packet's family).
            family = "ip6" if ":" in self.target else "ip"
            rules = self._may_match(
                dropping(state, ("OUTPUT", "POSTROUTING"), family), state.rules()
            )
            if len(rules) == 1:
                rule = rules[0]
                return Verdict(
                    "dropped",
                    f"{node} could not send it: {send_error}",
                    where=node,
                    cause=f"{node}'s netfilter refused it on the way out ({send_error}, as "
                    f"the kernel says a drop of a node's own packet): {rule.cited}",
                    fix=self.net.command(node, rule.delete_command),
                    evidence=[f"{node}: {rule.cited}"],
                    code="nf.reject" if rule.verdict == "reject" else "nf.drop",
                    objects=[nf_ref(node, rule)],
                )
            if rules:
                return Verdict(
                    "dropped",
                    f"{node} could not send it: {send_error}",
                    where=node,
                    cause=f"unknown: {node}'s netfilter refused it on the way out ({send_error}); "
                    f"{len(rules)} rules there drop or reject and it cannot tell which",
                    fix=None,
                    evidence=[f"{node}: {r.cited}" for r in rules],
                    code="unknown",
                    objects=[nf_ref(node, r) for r in rules],
                )
        cause = f"the source's own stack refused the packet ({send_error})"
        fix = "see the error: the source's routes, neighbours and firewall"
        evidence = []
        code, objects = "source.refused", []
        lookup = self.net.lookup(node, self.target)
        link = self.net.link(node, lookup.route.dev if lookup and lookup.route else None)
        if "too long" in send_error.lower() and link is not None:  # EMSGSIZE
            # EMSGSIZE from a raw socket that writes its own IP header: the kernel
            # never fragments such a packet, whatever its DF bit says.
            cause = (
                f"{send_error}: the packet is larger than the MTU of {link.name} "
                f"({link.mtu}), the way to {self.target}, and pathtrace's raw socket "
                "sends each probe whole (the kernel does not fragment it)"
            )
            fix = f"send smaller probes (-s: at most {link.mtu} bytes in all)"
            evidence.append(f"{node}/{link.name} mtu {link.mtu}")
            code, objects = "source.too_big", [ref("link", node, link.name)]
        return Verdict(
            "dropped",
            f"{node} could not send it: {send_error}",
            where=node,
            cause=cause,
            fix=fix,
            evidence=evidence,
            code=code,
            objects=objects,
        )

    # ---- answered with a refusal ----

    def _dnat_kept_off(self, node: str, packet: Packet, request: Series) -> Finding | None:
        """The probe reached ``node`` as it was sent, though ``node`` has DNAT rules,
        because a notrack rule kept conntrack, and so NAT, away from it there."""
        sent = request.hops[0].packet
        untracked = _untracked(self.net, self._own)
        state = self.net.state(node)
        if untracked is None or untracked[0] != node or state is None:
            return None
        if (packet.dst, packet.dport) != (sent.dst, sent.dport):
            return None  # it was translated: NAT did run somewhere
        dnat = _dnat_rules(state, packet)
        if not dnat:
            return None
        notrack = untracked[1]
        return Finding(
            "nf.notrack",
            (nf_ref(node, notrack), *(nf_ref(node, r) for r in dnat)),
            f"{node} did not track it (no conntrack entry at any of its netfilter hooks), "
            f"so its DNAT rule never ran ({dnat[0].cited}) and it took the probe to "
            f"{packet.dst} port {packet.dport} for itself: {notrack.cited}",
            self.net.command(node, notrack.delete_command),
            [f"{node}: {notrack.cited}", *(f"{node}: {r.cited}" for r in dnat)],
        )

    def _refused(self, request: Series, reply: Series) -> Verdict:
        responder = reply.hops[0].node
        arrived = request.hops[-1].packet  # after any DNAT on the way
        state = self.net.state(responder)
        dup = (
            duplicate(self.net, state, arrived.dst, f"{responder} took the connection as its own")
            if state is not None
            else None
        )
        if dup is not None:
            return Verdict.of(
                "rejected", f"{responder} refused the connection (RST)", responder, dup
            )
        kept = self._dnat_kept_off(responder, arrived, request)
        if kept is not None:
            return Verdict.of(
                "rejected", f"{responder} refused the connection (RST)", responder, kept
            )
        sockets = [s for s in (state.listeners if state else []) if s.protocol == "tcp"]
        port = [s for s in sockets if s.port == arrived.dport]
        taking = [s for s in port if s.takes(arrived.dst)]
        said = ", ".join(s.describe() for s in sockets)
        if taking:
            # A listener takes this address and port: not a missing service, and
            # nothing pathtrace read says why the RST came.
            return Verdict(
                "rejected",
                f"{responder} reset the connection (RST)",
                where=responder,
                cause=(
                    f"{responder} listens on {', '.join(s.endpoint for s in taking)}, which "
                    f"takes {arrived.dst} port {arrived.dport}, yet answered with an RST: "
                    "why is unknown from the state read (the listener's application, its "
                    "accept queue, or a socket option may have refused it)"
                ),
                evidence=[f"{responder} listens on: {said}"],
                code="unknown",
                objects=[ref("socket", responder, f"tcp {arrived.dport}")],
                confidence="unknown",
            )
        cause = f"nothing listens on {arrived.dst} port {arrived.dport} in {responder}"
        fix = (
            f"start a listener on {arrived.dst}:{arrived.dport} in {responder}, "
            "or probe a port that has one"
        )
        code, objects = "socket.none", [ref("socket", responder, f"tcp {arrived.dport}")]
        if port:
            code = "socket.bound"
            bound = ", ".join(p.endpoint for p in port)
            cause = (
                f"{responder} listens on {bound} only, not on {arrived.dst}: "
                f"nothing takes a connection to {arrived.dst} port {arrived.dport}"
            )
            fix = (
                f"make the service in {responder} listen on 0.0.0.0:{arrived.dport} "
                f"(or {arrived.dst}:{arrived.dport})"
            )
        if (
            arrived.dst != request.hops[0].packet.dst
            or arrived.dport != request.hops[0].packet.dport
        ):
            cause += f" (the probe was translated to {arrived.dst}:{arrived.dport} on the way)"
            other = dnat_to_a_closed_port(request, sockets, arrived)
            if other is not None:
                cause, fix = f"{cause}; {other[0]}", other[1]
                code, objects = "nat.port", [*other[2], *objects]
        return Verdict(
            "rejected",
            f"{responder} refused the connection (RST)",
            where=responder,
            cause=cause,
            fix=fix,
            evidence=[f"{responder} listens on: {said or 'no tcp port'}"],
            code=code,
            objects=objects,
        )

    def _icmp_error(self, error: Series, request: Series, events: Sequence[Event]) -> Verdict:
        first = next(e for e in events if e.tag == TagKind.ICMP_ERROR)
        code = (first.icmp_type or 0, first.icmp_code or 0)
        if first.protocol == "icmpv6":
            what = ICMP6_ERRORS.get(code, f"ICMPv6 type {code[0]} code {code[1]}")
            code = AS_ICMP4.get(code, code)
        else:
            what = ICMP_ERRORS.get(code, f"ICMP type {code[0]} code {code[1]}")
        # (An error freed before any device has no node of its own: it was made
        # where the probe was last seen.)
        sender = error.hops[0].node or request.hops[-1].node
        # The probe as the sender had it, and where it came in.
        at = [h for h in request.hops if h.node == sender]
        packet = at[-1].packet if at else request.hops[-1].packet
        iif = arrival(self.net, request, sender)
        found = (
            (self._dnat_kept_off(sender, packet, request) if code == (3, 3) else None)
            or refusal(self.net, sender, code, packet, iif, request)
            or Finding("unknown", (), f"unknown: {sender} sent {what}", None)
        )
        cause, fix, evidence = found.cause, found.fix, found.evidence
        lost = next((h for h in error.hops if h.action == "drop"), None)
        if lost is not None:
            # The error never reached the source: for a packet too big, a path MTU
            # black hole (the source keeps sending what cannot pass, and never hears).
            blocked = drops.explain(self.net, error, lost, events, self.source_node)
            return Verdict(
                "dropped",
                f"{sender} answered with ICMP {what}, and {blocked.where} dropped that error",
                where=blocked.where,
                cause=f"{cause}; the {what} error was dropped at {blocked.where} on its "
                f"way to {self.source_node}, so the source never learns: {blocked.cause}",
                fix=blocked.fix or fix,
                evidence=evidence + blocked.evidence,
                # What keeps the source from learning is the fault the fix mends.
                code=blocked.code if blocked.fix or found.code == "unknown" else found.code,
                objects=[*blocked.objects, *found.objects],
            )
        return Verdict.of("rejected", f"{sender} answered with ICMP {what}", sender, found)

    # ---- nothing more was seen ----

    def _lost(self, request: Series, reply: Series | None) -> Verdict:
        last = reply.hops[-1] if reply and reply.hops else request.hops[-1]
        where = f"{last.node}/{last.interface}" if last.interface else last.node
        went = "the answer" if reply and reply.hops else "the probe"
        state = self.net.state(last.node)
        arrived = (
            state is not None
            and state.owns(request.hops[-1].packet.dst)
            and last.action in ("deliver", "receive", "cross")
        )
        if not (reply and reply.hops) and arrived:
            assert state is not None
            return self._unanswered(request, last, state)
        found = stalled(self.net, request if went == "the probe" else reply, last)
        if found is not None:
            place, finding = found
            return Verdict.of(
                "lost", f"{went} was last seen at {where} ({last.text})", place, finding
            )
        return Verdict(
            "lost",
            f"{went} was last seen at {where} ({last.text})",
            where=where,
            cause="unknown: no hook saw it after that, and the saved state shows no reason",
            fix="look at the next hop's interfaces, routes and rules",
            code="unknown",
        )

    def _masqueraded_bare(self, request: Series, src: str) -> tuple[str, Link, str] | None:
        """The node that translated the source to ``src`` and the interface it sent
        the packet out of, where that interface holds no (non-link-local) address of
        the family: masquerade took one of another interface."""
        for i, hop in enumerate(request.hops):
            t = hop.translation
            if t is None or t.kind != "SNAT" or src not in t.after:
                continue
            out = next(
                (
                    h
                    for h in request.hops[i:]
                    if h.node == hop.node and h.action in ("route", "send")
                ),
                None,
            )
            state = self.net.state(hop.node)
            link = state.link(out.interface) if state is not None and out is not None else None
            if link is None:
                return None
            version = ip_address(src).version
            own = [
                a
                for a in link.addresses
                if ip_interface(a).version == version and not ip_interface(a).ip.is_link_local
            ]
            if own:
                return None
            return hop.node, link, "IPv6" if version == 6 else "IPv4"
        return None

    def _translating(self, request: Series) -> bool:
        """Whether a node the request crossed has NAT rules (masquerade, SNAT, DNAT):
        a network that translates addresses, where a reply's way back may be one."""
        nodes = {hop.node for hop in request.hops}
        return any(
            _NAT.search(rule.text)
            for node in nodes
            if (state := self.net.state(node)) is not None and state.has_rules
            for rule in state.rules().rules
        )

    def _unanswered(self, request: Series, last: Hop, state: NamespaceState) -> Verdict:
        """The request arrived where it was going and no answer came."""
        node = last.node
        packet: Packet = request.hops[-1].packet  # as the destination saw it
        sent = request.hops[0].packet
        if state.route_for(packet.src) is None:
            # The routes back went with a link or an address (down, none, too narrow):
            # the same facts as for a source with no route.
            gone = no_route(self.net, state, packet.src)
            if gone.code in ("link.down", "bridge.down", "link.no_address", "address.prefix"):
                return Verdict.of("lost", f"reached {node}, which cannot answer", node, gone)
            family = 6 if ":" in packet.src else 4
            routes = (
                ", ".join(
                    r.describe() for r in state.routes if r.table == 254 and r.family == family
                )
                or "none"
            )
            evidence = [f"{node}'s routes: {routes}"]
            cause = f"{node} has no route back to {packet.src}"
            code, objects = "route.back", [ref("route", node, packet.src)]
            published = any(
                h.translation is not None and h.translation.kind == "DNAT" for h in request.hops
            )
            if published:
                # Reached through a DNAT: the client's own address is kept by design, and
                # the way back is this node's route, not a translation on the way.
                family = 6 if ":" in packet.src else 4
                gateway = self.net.gateway_for(node, family)
                has_default = any(
                    r.dst == "default" and r.family == family and r.table == 254
                    for r in state.routes
                )
                cause += "" if has_default else " (it has no default route)"
                fix = (
                    self.net.command(node, f"ip route add default via {gateway}")
                    if gateway and not has_default
                    else self.net.advice(f"give {node} a route to {packet.src}")
                )
            elif packet.src == sent.src and not self._translating(request):
                # No node on the way translates anything: this network routes its
                # addresses, so the way back is a route, not a missing NAT.
                hop = self.net.next_hop(node, packet.src)
                has_default = any(
                    r.dst == "default" and r.family == family and r.table == 254
                    for r in state.routes
                )
                cause += "" if has_default else " (it has no default route)"
                cause += "; no node on the way translates addresses (no NAT rule)"
                fix = (
                    self.net.command(node, f"ip route add {hop[1]} via {hop[0]}")
                    if hop is not None
                    else self.net.advice(
                        f"give {node} a route to {packet.src}: "
                        f"{self.net.run_in(node)}ip route add {packet.src} via GATEWAY"
                    )
                )
            elif packet.src == sent.src:
                cause += (
                    f": the request arrived with the source's own address {sent.src}; "
                    "nothing translated it on the way"
                )
                fix = self.net.advice(
                    f"masquerade (SNAT) {sent.src} where it leaves for {node}, or give "
                    f"{node} a route to it"
                )
                code = "nat.none"
                untracked = _untracked(self.net, self._own)
                chosen = self._chosen_source(sent.src)
                if untracked is not None:
                    node_nt, rule = untracked
                    cause += (
                        f"; {node_nt} did not track it (no conntrack entry at any of its "
                        f"netfilter hooks), so its NAT rules never ran: {rule.cited}"
                    )
                    fix = self.net.command(node_nt, rule.delete_command)
                    evidence.append(f"{node_nt}: {rule.cited}")
                    code, objects = "nf.notrack", [nf_ref(node_nt, rule), *objects]
                elif chosen is not None:
                    route, plain = chosen
                    cause += (
                        f"; {self.source_node} chose {sent.src} as the source because its "
                        f"route says so ({route})"
                    )
                    fix = self.net.command(self.source_node, f"ip route replace {plain}")
                    evidence.append(f"{self.source_node}: route {route}")
                    code = "route.source"
                    objects = [ref("route", self.source_node, self.target), *objects]
            elif (bare := self._masqueraded_bare(request, packet.src)) is not None:
                t_node, link, fam = bare
                cause += (
                    f": {t_node} masqueraded it to {packet.src}, which is not on {link.name}, "
                    f"the interface it left {t_node} by: {link.name} has no {fam} address of "
                    "its own (masquerade takes another of the node's)"
                )
                fix = self.net.advice(f"give {t_node}/{link.name} its {fam} address back")
                evidence.append(f"{t_node}: {link.name} addresses: {', '.join(link.addresses)}")
                code = "link.no_address"
                objects = [ref("link", t_node, link.name), *objects]
            else:
                cause += f" (the request arrived translated to {packet.src})"
                way = self.net.route_to(node, packet.src)
                fix = (
                    self.net.command(node, f"ip route add {way}")
                    if way is not None
                    else self.net.advice(
                        f"give {node} a route to {packet.src}: "
                        f"{self.net.run_in(node)}ip route add {packet.src} via GATEWAY"
                    )
                )
            return Verdict(
                "lost",
                f"reached {node}, which cannot answer",
                where=node,
                cause=cause,
                fix=fix,
                evidence=evidence,
                code=code,
                objects=objects,
            )
        if packet.protocol == "icmp" and state.sysctl("net.ipv4.icmp_echo_ignore_all") == "1":
            return Verdict(
                "delivered",
                f"delivered to {node}, no answer came back",
                where=node,
                cause=f"{node} ignores echo requests: net.ipv4.icmp_echo_ignore_all=1",
                fix=self.net.command(node, "sysctl -w net.ipv4.icmp_echo_ignore_all=0"),
                evidence=[f"{node}: net.ipv4.icmp_echo_ignore_all=1"],
                code="sysctl.icmp_echo_ignore",
                objects=[ref("sysctl", node, "net.ipv4.icmp_echo_ignore_all")],
            )
        return Verdict(
            "delivered",
            f"delivered to {node}, no answer came back",
            where=node,
            cause="unknown: the destination took it but did not answer, and its saved "
            "state shows no reason",
            fix="check the service on the destination",
            code="unknown",
        )

    def _chosen_source(self, address: str) -> tuple[str, str] | None:
        """The source's route that picked ``address`` (its ``src``), and that route
        without it."""
        state = self.source_state
        if state is None:
            return None
        route = state.route_for(self.target)
        if route is None or route.prefsrc != address:
            return None
        return route.describe(), replace(route, prefsrc=None).describe()


def _answer_failed(drop: Hop, state: NamespaceState, events: Sequence[Event]) -> bool:
    """An echo request freed as a drop where it arrived: IPv6 frees it so in
    icmpv6_rcv when its answer cannot be sent (IPv4 consumes it): the answer's
    failure, not a drop."""
    packet = drop.packet
    where = [events[i].location or "" for i in drop.events if 0 <= i < len(events)]
    return (
        packet.protocol == "icmpv6"
        and state.owns(packet.dst)
        and drop.drop_reason == "NOT_SPECIFIED"
        and any(w.startswith("icmpv6_rcv+") for w in where)
    )


def _answered_from_elsewhere(request: Series, reply: Series) -> str | None:
    """An answer sent from another address or port than the request reached its
    responder at (as the kernel there saw it, translations done): said, since a
    client's connected socket would not take it."""
    first = reply.hops[0]
    asked = next((h.packet for h in reversed(request.hops) if h.node == first.node), None)
    if asked is None or first.packet.protocol != asked.protocol:
        return None
    if first.packet.protocol in ("icmp", "icmpv6"):
        same = first.packet.src == asked.dst
        return None if same else f"from {first.packet.src}, not {asked.dst}"
    if (first.packet.src, first.packet.sport) == (asked.dst, asked.dport):
        return None
    return (
        f"from {first.packet.endpoint('src')}, not {asked.endpoint('dst')} "
        "it was sent to (a connected socket would not take it)"
    )


def _about_answer(error: Series, request: Series, reply: Series | None) -> bool:
    """An ICMP error goes back to the sender of the packet it quotes: to an address
    the answer came from, never the request, it is about the answer."""
    if reply is None or not reply.hops:
        return False
    to = error.hops[0].packet.dst
    return to not in {h.packet.src for h in request.hops} and to in {
        h.packet.src for h in reply.hops
    }


def _untranslated_answer(request: Series, reply: Series, drop: Hop) -> Verdict | None:
    """An answer that reached the node which translated the request, was not
    translated back there and stopped there: conntrack did not take it for the
    request's connection. Said when the answer's source is not where the request
    went (conntrack matches the reverse tuple exactly)."""
    node = drop.node
    translated = [h.translation for h in request.hops if h.node == node and h.translation]
    undone = [h for h in reply.hops if h.node == node and h.translation]
    elsewhere = _answered_from_elsewhere(request, reply)
    if not translated or undone or elsewhere is None:
        return None
    first = reply.hops[0]
    asked = next(h.packet for h in reversed(request.hops) if h.node == first.node)
    rules = "; ".join(t.describe() for t in translated)
    return Verdict(
        "dropped",
        f"{first.node} answered {elsewhere.split(' (')[0]}, so {node} did not translate "
        f"the answer back and dropped it: {drop.drop_reason or 'dropped'}",
        where=f"{node}/{drop.interface}" if drop.interface else node,
        cause=(
            f"{node} translated the request ({rules}); its conntrack entry expects the answer "
            f"from {asked.endpoint('dst')}, but {first.node} sent it from "
            f"{first.packet.endpoint('src')}: no entry matched, nothing undid the translation, "
            f"and {node} took the answer as its own ({drop.drop_reason})"
        ),
        fix=(
            f"make the service in {first.node} answer from {asked.endpoint('dst')}, where the "
            "request arrived (bind its socket to that address, or answer with IP_PKTINFO)"
        ),
        evidence=[f"request at {node}: {rules}", f"answer: {first.packet.describe()}"],
        code="nat.reply",
        objects=[
            ref("socket", first.node, f"{first.packet.protocol} {first.packet.sport or ''}".strip())
        ],
    )


def _dnat_rules(state: NamespaceState, packet: Packet) -> list[LiveRule]:
    """The DNAT rules of ``state``; those that name the packet's port, if any do."""
    rules = [r for r in state.rules().rules if r.does("dnat")]
    named = [r for r in rules if f"dport {packet.dport}" in r.text]
    return named or rules


def _untracked(net: Network, events: Sequence[Event]) -> tuple[str, LiveRule] | None:
    """A namespace with rules where the request had no conntrack entry at any netfilter
    hook (the probes read the skb's conntrack there), and the notrack rule that
    explains it, if its ruleset has exactly one."""
    seen: dict[str, bool] = {}
    for e in events:
        if e.tag == TagKind.REQUEST and e.hook in (Hook.NF_BEFORE, Hook.NF_AFTER):
            if ":" in e.src:
                return None  # the probes read IPv4 conntrack only
            seen[e.namespace] = seen.get(e.namespace, False) or e.conntrack is not None
    for namespace, tracked in seen.items():
        state = net.states.get(namespace)
        if tracked or state is None:
            continue
        rules = [r for r in state.rules().rules if r.does("notrack")]
        if len(rules) == 1:
            return state.node, rules[0]
    return None
