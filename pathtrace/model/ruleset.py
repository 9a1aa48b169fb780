"""A namespace's nftables ruleset as pathtrace reads it: chains and rules with handles.

Parsed from ``nft -a list ruleset`` (whoever wrote the rules: the lab, iptables-nft,
a CNI plugin); reports cite rules from it and the analysis finds chains by hook.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class LiveChain:
    family: str
    table: str
    name: str
    hook: str | None
    policy: str | None
    handle: int


@dataclass(frozen=True)
class LiveRule:
    family: str
    table: str
    chain: str
    handle: int
    text: str  # as nft prints it, without comment and handle
    comment: str | None

    @property
    def cited(self) -> str:
        """How a report names the rule: where, handle and text."""
        return f"{self.table} {self.chain} handle {self.handle}: {self.text}"


@dataclass(frozen=True)
class Ruleset:
    chains: tuple[LiveChain, ...]
    rules: tuple[LiveRule, ...]

    def rule_named(self, table: str, chain: str, name: str) -> LiveRule | None:
        for rule in self.rules:
            if (rule.table, rule.chain, rule.comment) == (table, chain, name):
                return rule
        return None

    def rules_at(self, hook: str) -> list[LiveRule]:
        """Rules of the ip chains hooked at ``hook`` (PREROUTING, FORWARD, ...), whatever
        their chains are called, in the order nft lists them."""
        names = {
            (c.table, c.name)
            for c in self.chains
            if c.family == "ip" and (c.hook or "").upper() == hook.upper()
        }
        return [r for r in self.rules if (r.table, r.chain) in names]

    def policy_at(self, hook: str) -> str | None:
        """drop if any base chain at ``hook`` drops by policy, else its policy."""
        policies = [
            c.policy
            for c in self.chains
            if c.family == "ip" and (c.hook or "").upper() == hook.upper() and c.policy
        ]
        return "drop" if "drop" in policies else (policies[0] if policies else None)

    def chain(self, table: str, name: str) -> LiveChain | None:
        for chain in self.chains:
            if (chain.family, chain.table, chain.name) == ("ip", table, name):
                return chain
        return None


_TABLE = re.compile(r"^table (\w+) (\S+) \{ # handle (\d+)$")
_CHAIN = re.compile(r"^chain (\S+) \{ # handle (\d+)$")
_BASE = re.compile(r"^type \w+ hook (\w+) .*?; (?:policy (\w+);)?")
_COUNTS = re.compile(r"counter packets \d+ bytes \d+")
_RULE = re.compile(r'^(.*?)(?: comment "([^"]*)")? # handle (\d+)$')


def parse_listing(text: str) -> Ruleset:
    """Chains and rules from ``nft -a list ruleset`` (tables of sets and maps are skipped)."""
    chains: list[LiveChain] = []
    rules: list[LiveRule] = []
    family = table = chain = ""
    chain_handle = 0
    hook: str | None = None
    policy: str | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if m := _TABLE.match(line):
            family, table = m.group(1), m.group(2)
        elif m := _CHAIN.match(line):
            chain, chain_handle, hook, policy = m.group(1), int(m.group(2)), None, None
        elif chain and (m := _BASE.match(line)):
            hook, policy = m.group(1), m.group(2)
        elif line == "}" and chain:
            chains.append(LiveChain(family, table, chain, hook, policy, chain_handle))
            chain = ""
        elif chain and (m := _RULE.match(line)):
            text = _COUNTS.sub("counter", m.group(1))  # what the rule is, not how often it ran
            rules.append(LiveRule(family, table, chain, int(m.group(3)), text, m.group(2)))
    return Ruleset(tuple(chains), tuple(rules))
