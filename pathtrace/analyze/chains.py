"""Netfilter as the predicted path meets it: each base chain at a hook, by priority,
rules matched by ``nfmatch``, jumps followed, and what a matching rule does to the
packet (drop, reject, accept, a mark, notrack, a translation conntrack remembers).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import ip_address, ip_interface

from pathtrace.analyze import nfmatch
from pathtrace.analyze.network import Network
from pathtrace.model.cause import ref
from pathtrace.model.prediction import Step
from pathtrace.model.ruleset import LiveChain, LiveRule, Ruleset
from pathtrace.model.state import NamespaceState


@dataclass(frozen=True)
class Nat:
    """A translation the request met: conntrack undoes it for the answer."""

    node: str
    kind: str  # snat, dnat
    before: str
    after: str
    rule: str  # the rule as an object (KIND:NODE/NAME)
    port: int | None = None  # the port a DNAT gave


@dataclass(frozen=True)
class Kept:
    """A NAT rule that would have matched, kept from running by a notrack rule."""

    node: str
    kind: str  # snat, dnat
    before: str  # the address it would have replaced
    notrack: str  # the notrack rule, as an object
    rule: str  # the NAT rule


@dataclass
class Flow:
    """The packet as it goes, and what conntrack remembers of the request."""

    src: str
    dst: str
    protocol: str
    sport: int
    dport: int
    icmp_type: int | None
    ttl: int
    length: int
    dont_fragment: bool = False
    mark: int = 0
    reply: bool = False
    mark_rule: str | None = None  # the rule that set the mark, as an object
    ttl_rule: str | None = None  # the rule that set the TTL
    nat: list[Nat] = field(default_factory=list)
    kept: list[Kept] = field(default_factory=list)
    tracked: set[str] = field(default_factory=set)  # nodes whose conntrack saw the request
    untracked: dict[str, str] = field(default_factory=dict)  # node -> the notrack rule

    def nf(
        self, node: str, iif: str | None, oif: str | None, local: tuple[str, ...] = ()
    ) -> nfmatch.Packet:
        established = self.reply and node in self.tracked
        ct = "untracked" if node in self.untracked else "established" if established else "new"
        return nfmatch.Packet(
            0 if self.protocol == "arp" else 6 if ":" in self.dst else 4,
            self.src,
            self.dst,
            self.protocol,
            self.sport,
            self.dport,
            self.icmp_type,
            iif,
            oif,
            self.mark,
            ct,
            local,
        )


class Stop(Exception):
    """Where a predicted path ends, and why."""

    def __init__(
        self, outcome: str, node: str, code: str | None, objects: tuple[str, ...], why: str
    ) -> None:
        super().__init__(why)
        self.outcome, self.node, self.code = outcome, node, code
        self.objects, self.why = objects, why


def rule_ref(node: str, rule: LiveRule) -> str:
    at = f"rule {rule.handle}" if rule.legacy else f"handle {rule.handle}"
    return ref("nf", node, f"{rule.family} {rule.table} {rule.chain} {at}")


class Chains:
    """The steps of one direction's walk, and netfilter's part in it."""

    def __init__(self, net: Network, direction: str) -> None:
        self.net = net
        self.direction = direction
        self.steps: list[Step] = []
        self.unknowns: list[str] = []
        self.gateway_rule: str | None = None  # the policy rule that chose the last route
        self.gateway_route: str | None = None  # the last route, where it goes via a gateway

    def step(self, node: str, interface: str | None, action: str, text: str) -> None:
        self.steps.append(Step(node, interface, action, text))

    def hook(
        self,
        state: NamespaceState,
        ruleset: Ruleset,
        hook: str,
        flow: Flow,
        iif: str | None,
        oif: str | None,
        families: tuple[str, ...] = (),
    ) -> None:
        """Every base chain at ``hook`` of the packet's family (and inet), by priority."""
        node = state.node
        wanted = families or ("ip6" if ":" in flow.dst else "ip", "inet")
        chains = sorted(
            (c for c in ruleset.chains if c.family in wanted and (c.hook or "") == hook),
            key=lambda c: c.priority,
        )
        if not chains:
            return
        # Conntrack's view: a request is a flow's first packet in each namespace; an
        # answer belongs to the entry its request made there, if it made one.
        new = not (flow.reply and node in flow.tracked)
        if not flow.reply and node not in flow.untracked:
            flow.tracked.add(node)
        for chain in chains:
            if chain.type == "nat" and (node in flow.untracked or not new):
                if node in flow.untracked and not flow.reply:
                    self._kept(state, ruleset, chain, flow, iif, oif)
                continue  # NAT chains see only a flow's first packet, never an untracked one
            said = self.chain(state, ruleset, chain.family, chain.table, chain.name, flow, iif, oif)
            if said is None and chain.policy == "drop":
                name = f"{chain.family} {chain.table} {chain.name}"
                raise Stop(
                    "stopped",
                    node,
                    "nf.policy",
                    (ref("nf", node, name),),
                    f"{name}'s policy drops it (no rule accepts it)",
                )

    def chain(
        self,
        state: NamespaceState,
        ruleset: Ruleset,
        family: str,
        table: str,
        name: str,
        flow: Flow,
        iif: str | None,
        oif: str | None,
        depth: int = 0,
    ) -> str | None:
        """The verdict the chain gives (accept), or None: it falls through."""
        node = state.node
        for rule in ruleset.rules:
            if (rule.family, rule.table, rule.chain) != (family, table, name):
                continue
            if rule.text.startswith(("-A ", "#")):
                self.unknowns.append(f"{node}: {rule.cited} (not read)")
                continue
            matched, does = nfmatch.evaluate_rule(
                rule, flow.nf(node, iif, oif, _own(state)), ruleset
            )
            if matched is False:
                continue
            if matched is None:
                if does.verdict in ("drop", "reject") or does.nat:
                    self.unknowns.append(f"{node}: {rule.cited} (its match is not modelled)")
                continue
            if does.mark is not None:
                flow.mark, flow.mark_rule = does.mark, rule_ref(node, rule)
            if does.ttl is not None:
                flow.ttl, flow.ttl_rule = does.ttl, rule_ref(node, rule)
            if does.notrack and not flow.reply:
                flow.untracked[node] = rule_ref(node, rule)
                flow.tracked.discard(node)
            if does.nat:
                self._translate(state, rule, does, flow, oif)
                return "accept"
            if does.verdict in ("drop", "reject"):
                raise Stop(
                    "stopped",
                    node,
                    "nf.drop" if does.verdict == "drop" else "nf.reject",
                    (rule_ref(node, rule),),
                    f"{rule.cited} {'drops' if does.verdict == 'drop' else 'rejects'} it",
                )
            if does.verdict == "accept":
                return "accept"
            if does.verdict == "return":
                return None
            if does.verdict in ("jump", "goto") and does.target and depth < 8:
                said = self.chain(
                    state, ruleset, family, table, does.target, flow, iif, oif, depth + 1
                )
                if said is not None or does.verdict == "goto":
                    return said
        return None

    def _kept(
        self,
        state: NamespaceState,
        ruleset: Ruleset,
        chain: LiveChain,
        flow: Flow,
        iif: str | None,
        oif: str | None,
    ) -> None:
        """The NAT rule of a chain an untracked packet skips that would have matched."""
        packet = flow.nf(state.node, iif, oif, _own(state))
        for rule in ruleset.rules:
            if (rule.family, rule.table, rule.chain) != (chain.family, chain.table, chain.name):
                continue
            matched, does = nfmatch.evaluate_rule(rule, packet, ruleset)
            if matched and does.nat:
                kind = "dnat" if does.nat in ("dnat", "redirect") else "snat"
                before = flow.dst if kind == "dnat" else flow.src
                notrack = flow.untracked[state.node]
                flow.kept.append(
                    Kept(state.node, kind, before, notrack, rule_ref(state.node, rule))
                )
                return

    def _translate(
        self,
        state: NamespaceState,
        rule: LiveRule,
        does: nfmatch.Statement,
        flow: Flow,
        oif: str | None,
    ) -> None:
        node, said = state.node, rule_ref(state.node, rule)
        if does.nat in ("dnat", "redirect"):
            after = does.target or (
                flow.dst if does.nat == "dnat" else first_address(state, None, flow.dst)
            )
            if after is None:
                return
            flow.nat.append(Nat(node, "dnat", flow.dst, after, said, does.port))
            self.step(node, None, "translate", f"{node} DNATs {flow.dst} -> {after} ({rule.cited})")
            flow.dst = after
            if does.port:
                flow.dport = does.port
            return
        after = does.target if does.nat == "snat" else first_address(state, oif, flow.dst)
        if after is None:
            return
        flow.nat.append(Nat(node, "snat", flow.src, after, said))
        self.step(node, oif, "translate", f"{node} SNATs {flow.src} -> {after} ({rule.cited})")
        flow.src = after


def _own(state: NamespaceState) -> tuple[str, ...]:
    return tuple(a.split("/")[0] for link in state.links for a in link.addresses)


def first_address(state: NamespaceState, dev: str | None, dst: str) -> str | None:
    """The address masquerade (or redirect) picks: the device's first of the family."""
    version = ip_address(dst).version
    for link in state.links:
        if dev is not None and link.name != dev:
            continue
        for a in link.addresses:
            ip = ip_interface(a).ip
            if ip.version == version and not (ip.is_link_local or ip.is_loopback):
                return a.split("/")[0]
    return None
