"""Netfilter: the chain a packet entered and never left, and the rule (by handle) that
ended it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from pathtrace.analyze.causes.common import only
from pathtrace.analyze.network import Network
from pathtrace.model.cause import Finding, ref
from pathtrace.model.event import Event, Hook
from pathtrace.model.ruleset import LiveRule
from pathtrace.model.state import NamespaceState
from pathtrace.model.trace import Hop, Series


def open_chain(net: Network, node: str, events: Sequence[Event]) -> str | None:
    """The chain the packet entered (a netfilter link before it) and never left."""
    state = net.state(node)
    if state is None:
        return None
    seen: dict[str | None, int] = {}
    for e in events:
        if e.namespace == state.namespace and e.hook in (Hook.NF_BEFORE, Hook.NF_AFTER):
            seen[e.nf_hook] = seen.get(e.nf_hook, 0) + (1 if e.hook == Hook.NF_BEFORE else -1)
    open_chains = [chain for chain, n in seen.items() if n > 0]
    return open_chains[-1] if open_chains else None


def conntrack_messages(events: Sequence[Event], skbs: set[int], namespace: str) -> list[str]:
    """What conntrack's trackers said of these sk_buffs in ``namespace`` (their
    log_invalid calls: ct_invalid events, where the kernel has kprobes), in order,
    each once."""
    return list(
        dict.fromkeys(
            e.location
            for e in events
            if e.hook == Hook.CT_INVALID
            and e.location
            and e.skb_id in skbs
            and e.namespace == namespace
        )
    )


def nf_ref(node: str, rule: LiveRule) -> str:
    """A rule as an object: by handle, or (iptables-legacy) by position, `rule N`."""
    at = f"rule {rule.handle}" if rule.legacy else f"handle {rule.handle}"
    return ref("nf", node, f"{rule.family} {rule.table} {rule.chain} {at}")


def netfilter_drop(
    net: Network, series: Series, drop: Hop, chain: str | None
) -> tuple[Finding, str | None]:
    """(the finding, the hook it happened at)."""
    node, packet = drop.node, drop.wire  # a tunnel's datagram is what the rules saw
    state = net.state(node)
    ruleset = state.rules() if state else None
    rule: LiveRule | None = None
    others: list[LiveRule] = []
    if ruleset is not None:
        # A reject rule frees the packet as a drop does (and sends an error or a RST).
        candidates = ruleset.rules_at(chain) if chain else []
        rule = next((r for r in candidates if r.verdict in ("drop", "reject")), None)
        if rule is None:  # a chain pathtrace has no link in: a bridge table, a raw chain
            rule, others = only(r for r in ruleset.rules if r.verdict in ("drop", "reject"))
    hook = (ruleset.hook_of(rule) if ruleset and rule else None) or chain
    family = rule.family if rule else "ip"
    at = f"{family} {rule.table} {rule.chain} (hook {hook})" if rule else (chain or "a chain")
    cause = f"netfilter dropped it in {at} of {node}"
    evidence = []
    fix: str | None
    code, objects = "unknown", [ref("nf", node, f"{family} {chain or '?'}")]
    if rule is not None:
        cause += f": rule {rule.cited}"
        evidence.append(f"{node}: {rule.cited}")
        fix = net.command(node, rule.delete_command)
        code = "nf.reject" if rule.verdict == "reject" else "nf.drop"
        objects = [nf_ref(node, rule)]
    else:
        policy = ruleset.policy_at(chain) if ruleset and chain else None
        if policy == "drop":
            code = "nf.policy"
            dropping = [
                c
                for c in (ruleset.chains if ruleset else ())
                if c.family in (family, "inet")
                and (c.hook or "").upper() == (chain or "").upper()
                and c.policy == "drop"
            ]
            if len(dropping) == 1:  # the chain itself, by name, when one alone drops there
                c = dropping[0]
                objects = [ref("nf", node, f"{c.family} {c.table} {c.name}")]
            cause += f": the chain's policy is drop and no rule accepts {packet.describe()}"
            evidence.append(f"{node}: {chain} policy drop")
            fix = net.advice(
                f"accept it in {node}'s {chain} chain: {net.run_in(node)}nft add rule ip "
                f"filter {chain} ip daddr {packet.dst} {packet.protocol} "
                + (f"dport {packet.dport} accept" if packet.protocol != "icmp" else "accept")
            )
        elif others:
            cause = (
                f"unknown: netfilter dropped it in {node}, in a chain pathtrace has no link in; "
                f"{len(others)} rules there drop and it cannot tell which"
            )
            evidence += [f"{node}: {r.cited}" for r in others]
            objects = [nf_ref(node, r) for r in others]
            fix = None
        else:
            cause = f"unknown: netfilter dropped it in {at} of {node}, and no rule there drops"
            fix = None
    if drop.outer is not None:
        cause += f" (the probe inside a {drop.outer.describe()} datagram)"
    elif packet.dst != series.hops[0].packet.dst:
        cause += f" (the packet was already translated to {packet.dst})"
    # A packet only bridged yet dropped by an ip rule: br_netfilter sent it there.
    port = net.link(node, drop.interface)
    bridged = any(h.node == node and h.action == "bridge-forward" for h in series.hops) or bool(
        port and port.master
    )
    if (
        bridged
        and family in ("ip", "inet")
        and state is not None
        and state.sysctls.get("net.bridge.bridge-nf-call-iptables") == "1"
    ):
        cause += (
            f"; the packet was only bridged, but {node} has "
            "net.bridge.bridge-nf-call-iptables=1, so bridged IPv4 traffic "
            + (f"passes the ip family's {hook} hook too" if hook else "passes the ip hooks too")
        )
        objects.append(ref("sysctl", node, "net.bridge.bridge-nf-call-iptables"))
    return Finding(code, tuple(objects), cause, fix, evidence), hook


# A rule that matches nothing but counts: it takes every packet of its family.
_EVERY = re.compile(r"^(?:counter(?: packets \d+ bytes \d+)? )?(?:drop|reject\b.*)$")


def stops_neighbour_discovery(rule: LiveRule) -> bool:
    """A drop or reject that an ICMPv6 neighbour solicitation or advertisement meets
    and matches: one with no match at all, or one on ICMPv6 (ND is never tracked by
    conntrack, so a `ct state` match does not take it)."""
    if rule.verdict not in ("drop", "reject"):
        return False
    text = rule.text.strip()
    return bool(_EVERY.match(text)) or any(
        word in text for word in ("icmpv6", "ipv6-icmp", "nd-neighbor")
    )


def dropping(state: NamespaceState, hooks: Sequence[str], family: str) -> list[LiveRule]:
    """The rules that drop or reject at ``hooks`` of ``family`` (inet's and
    iptables-legacy's included), in the order a packet meets them."""
    rules = state.rules()
    return [
        r for hook in hooks for r in rules.rules_at(hook, family) if r.verdict in ("drop", "reject")
    ]
