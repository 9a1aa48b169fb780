"""A namespace's nftables ruleset as pathtrace reads it: chains and rules with handles.

Read structured from ``nft -j -a list ruleset`` (whoever wrote the rules: the lab,
iptables-nft, a CNI plugin): chains with their hook, priority, type and policy, rules
with their expressions as nft's JSON gives them (what the predicted path evaluates),
named sets with their elements. Reports cite rules in nft's own words, from
``nft -a list ruleset`` (the rule with the same handle); bundles from before the JSON
was kept are read from those words alone. The analysis finds chains by hook,
following jumps into user chains (CNI's ``CNI-...``, Docker's ``DOCKER``). Tables
that iptables-nft manages are also read in iptables' own words (``iptables-save``),
matched rule for rule by chain and position: nft does not print their comments.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

# A rule that needs conntrack: matches or sets its state, or translates.
_CT_WORDS = re.compile(
    r"\bct (state|status|direction|mark|zone|helper|count|original|reply)\b"
    r"|\b(masquerade|snat|dnat|redirect)\b"
)


@dataclass(frozen=True)
class LiveChain:
    family: str
    table: str
    name: str
    hook: str | None
    policy: str | None
    handle: int
    priority: int = 0  # among chains at the same hook, lower runs first
    type: str = "filter"  # filter, nat (sees only a flow's first packet), route


@dataclass(frozen=True)
class LiveRule:
    family: str
    table: str
    chain: str
    handle: int
    text: str  # as nft prints it, without comment and handle
    comment: str | None
    iptables: str | None = None  # "-A CHAIN ..." as iptables-save shows it, if iptables made it
    # An iptables-legacy (x_tables) rule: nft cannot list it; ``handle`` is its position
    # in the chain (1, 2, ...), ``text`` iptables-restore-translate's nft form of it.
    legacy: bool = False
    # Its expressions as ``nft -j`` gives them (matches and statements, in order);
    # empty where only the words are known (legacy rules, bundles before the JSON).
    expr: tuple[Any, ...] = field(default=(), compare=False, repr=False)

    @property
    def cited(self) -> str:
        """How a report names the rule: where, handle and text (and iptables' form)."""
        return self.cited_via(())

    def cited_via(self, path: tuple[LiveRule, ...]) -> str:
        """The rule named with the chains a packet went through to meet it:
        ``nat POSTROUTING -> CNI-1a2b handle 3: ...``."""
        # A jump's comment often says whom the chain it leads to is for (netavark's
        # "dnat name: podman id: ..."): it labels that arrow, unless the rule says it.
        chains = ""
        for step in path:
            label = step.comment if step.comment and step.comment != self.comment else ""
            chains += f"{step.chain} -[{label}]-> " if label else f"{step.chain} -> "
        chains += self.chain
        place = f"rule {self.handle}" if self.legacy else f"handle {self.handle}"
        said = f"{self.table} {chains} {place}: {self.text}"
        if not self.iptables:
            return said
        comment = f"comment: {self.comment}; " if self.comment else ""
        tool = ("ip6tables" if self.family == "ip6" else "iptables") + (
            "-legacy" if self.legacy else ""
        )
        return f"{said} ({comment}{tool}: {self.iptables})"

    @property
    def delete_command(self) -> str:
        """The command that removes this rule, in the tool that made it."""
        tool = "ip6tables" if self.family == "ip6" else "iptables"
        if self.legacy:
            return f"{tool}-legacy -t {self.table} -D {self.chain} {self.handle}"
        if self.iptables and self.iptables.startswith("-A "):
            return f"{tool} -t {self.table} -D {self.iptables[3:]}"
        return f"nft delete rule {self.family} {self.table} {self.chain} handle {self.handle}"

    @property
    def name(self) -> str:
        """What the rule is called: its own comment (the lab names its rules so),
        else its handle (an iptables comment names who made it, not the rule)."""
        return self.comment if self.comment and not self.iptables else f"handle {self.handle}"

    @property
    def jump(self) -> str | None:
        """The user chain this rule jumps or goes to, if it does."""
        if self.expr:
            return next(
                (str(e[k]["target"]) for e in self.expr for k in ("jump", "goto") if k in e),
                None,
            )
        m = _JUMP.search(self.text)
        return m.group(1) if m else None

    @property
    def verdict(self) -> str | None:
        """accept, drop, reject or return: where evaluation stops for a packet it matches."""
        if self.expr:
            words = ("accept", "drop", "reject", "return")
            return next((k for e in self.expr for k in words if k in e), None)
        m = _VERDICT.search(self.text)
        return m.group(1) if m else None

    def does(self, kind: str) -> bool:
        """Whether one of its statements is ``kind`` (dnat, snat, masquerade,
        redirect, notrack, reject, mangle...), from its expressions where they were
        read, else from its words."""
        if self.expr:
            return any(kind in e for e in self.expr)
        return kind in self.text.split()


@dataclass(frozen=True)
class Ruleset:
    chains: tuple[LiveChain, ...]
    rules: tuple[LiveRule, ...]
    # Named sets' elements as nft -j gives them, by (family, table, name).
    sets: dict[tuple[str, str, str], tuple[Any, ...]] = field(default_factory=dict, compare=False)

    def set_elements(self, rule: LiveRule, name: str) -> tuple[Any, ...] | None:
        """The elements of the set ``@name`` a rule refers to (None: not read)."""
        return self.sets.get((rule.family, rule.table, name.lstrip("@")))

    def rule_named(self, table: str, chain: str, name: str, family: str = "ip") -> LiveRule | None:
        for rule in self.rules:
            if (rule.family, rule.table, rule.chain, rule.comment) == (family, table, chain, name):
                return rule
        return None

    def conntrack_users(self, family: str = "ip") -> list[str]:
        """What makes conntrack run in the namespace for ``family``: a NAT base chain
        (NAT needs it) or a rule that reads or sets conntrack's state (``ct ...``);
        conntrack attaches an entry to each packet there, or to none if INVALID."""
        found = [
            f"{c.family} {c.table} {c.name} (a nat chain)"
            for c in self.chains
            if c.type == "nat" and c.hook and c.family in (family, "inet")
        ]
        found += [
            r.cited for r in self.rules if r.family in (family, "inet") and _CT_WORDS.search(r.text)
        ]
        return found

    def rules_at(self, hook: str, family: str = "ip") -> list[LiveRule]:
        """Rules a packet can meet at ``hook`` (PREROUTING, FORWARD, ...) in the
        chains of its family (ip or ip6, and inet's) hooked there, whatever they are
        called, and in the user chains they jump to, in the order they are evaluated."""
        return [rule for rule, _ in self.walk(hook, family)]

    def walk(self, hook: str, family: str = "ip") -> list[tuple[LiveRule, tuple[LiveRule, ...]]]:
        """Each rule met at ``hook`` with the jumps that lead to it (base chain first)."""
        found: list[tuple[LiveRule, tuple[LiveRule, ...]]] = []
        for chain in self.chains:
            if chain.family in (family, "inet") and (chain.hook or "").upper() == hook.upper():
                self._enter(chain.family, chain.table, chain.name, (), found)
        return found

    def _enter(
        self,
        family: str,
        table: str,
        chain: str,
        path: tuple[LiveRule, ...],
        found: list[tuple[LiveRule, tuple[LiveRule, ...]]],
    ) -> None:
        if len(path) > 16 or any(step.jump == chain for step in path[:-1]):
            return  # a loop nft itself would refuse; never follow one
        for rule in self.rules:
            if (rule.family, rule.table, rule.chain) != (family, table, chain):
                continue
            found.append((rule, path))
            if rule.jump is not None:
                self._enter(family, table, rule.jump, (*path, rule), found)

    def policy_at(self, hook: str, family: str = "ip") -> str | None:
        """drop if any base chain at ``hook`` drops by policy, else its policy."""
        policies = [
            c.policy
            for c in self.chains
            if c.family in (family, "inet") and (c.hook or "").upper() == hook.upper() and c.policy
        ]
        return "drop" if "drop" in policies else (policies[0] if policies else None)

    def hook_of(self, rule: LiveRule) -> str | None:
        """The hook of the base chain ``rule`` is in (None for a user chain)."""
        for chain in self.chains:
            if (chain.family, chain.table, chain.name) == (rule.family, rule.table, rule.chain):
                return chain.hook.upper() if chain.hook else None
        return None

    def chain(self, table: str, name: str, family: str = "ip") -> LiveChain | None:
        for chain in self.chains:
            if (chain.family, chain.table, chain.name) == (family, table, name):
                return chain
        return None


_TABLE = re.compile(r"^table (\w+) (\S+) \{ # handle (\d+)$")
_CHAIN = re.compile(r"^chain (\S+) \{ # handle (\d+)$")
_BASE = re.compile(r"^type (\w+) hook (\w+)(?: device \S+)? priority ([^;]+);(?: policy (\w+);)?")
# nft's names for the standard priorities (ip, ip6, inet; bridge's differ).
_PRIORITIES = {
    "raw": -300,
    "mangle": -150,
    "dstnat": -100,
    "filter": 0,
    "security": 50,
    "srcnat": 100,
}
_BRIDGE_PRIORITIES = {"dstnat": -300, "filter": -200, "out": 100, "srcnat": 300}


def priority(text: str, family: str = "ip") -> int:
    """A chain's priority as nft prints it: ``filter``, ``mangle - 5``, ``-150``."""
    words = text.replace("+", " + ").replace(" - ", " -").split()
    names = _BRIDGE_PRIORITIES if family == "bridge" else _PRIORITIES
    total = 0
    for word in words:
        if word in names:
            total += names[word]
        elif word.lstrip("-").isdigit():
            total += int(word)
    return total


_COUNTS = re.compile(r"counter packets \d+ bytes \d+")
_JUMP = re.compile(r"\b(?:jump|goto) (\S+)")
_VERDICT = re.compile(r"\b(accept|drop|reject|return)\b\s*$")
_MANAGED = re.compile(r"^# Warning: table (\w+) (\S+) is managed by iptables-nft")
_RULE = re.compile(r'^(.*?)(?: comment "([^"]*)")? # handle (\d+)$')


def parse_listing(
    text: str, iptables_save: str = "", objects: list[dict[str, Any]] | None = None
) -> Ruleset:
    """Chains and rules from ``nft -a list ruleset``; with ``objects`` (the
    ``nftables`` array of ``nft -j -a list ruleset``) the chains, each rule's
    expressions and the named sets come from the JSON, the words from the text.
    With ``iptables-save``'s output, rules of the tables iptables-nft manages carry
    their iptables form."""
    found = _parse_words(text, iptables_save)
    return _with_json(found, objects) if objects else found


def _with_json(words: Ruleset, objects: list[dict[str, Any]]) -> Ruleset:
    chains: list[LiveChain] = []
    expr: dict[tuple[str, str, str, int], tuple[Any, ...]] = {}
    sets: dict[tuple[str, str, str], tuple[Any, ...]] = {}
    for item in objects:
        if "chain" in item:
            c = item["chain"]
            chains.append(
                LiveChain(
                    c["family"],
                    c["table"],
                    c["name"],
                    c.get("hook"),
                    c.get("policy") if c.get("hook") else None,
                    int(c["handle"]),
                    int(c.get("prio", 0)),
                    c.get("type", "filter"),
                )
            )
        elif "rule" in item:
            r = item["rule"]
            key = (r["family"], r["table"], r["chain"], int(r["handle"]))
            found = tuple(r.get("expr", ()))
            # An x_tables match or target (iptables-nft's MASQUERADE, DNAT, comment)
            # is opaque in the JSON ({"xt": {"name": "MASQUERADE"}}); nft's words say
            # it through libxtables' translation: such a rule is read from its words.
            if not any("xt" in e for e in found):
                expr[key] = found
        elif "set" in item or "map" in item:
            s = item.get("set") or item["map"]
            sets[(s["family"], s["table"], s["name"])] = tuple(s.get("elem", ()))
    rules = tuple(
        replace(rule, expr=expr.get((rule.family, rule.table, rule.chain, rule.handle), ()))
        for rule in words.rules
    )
    return Ruleset(tuple(chains), rules, sets)


def same_rules(text: str, objects: list[dict[str, Any]]) -> bool:
    """Whether a listing and a JSON listing (read one after the other) hold the same
    rules: a rule added or deleted between the two makes them differ."""
    words = {(r.family, r.table, r.chain, r.handle) for r in _parse_words(text).rules}
    keys = {
        (r["family"], r["table"], r["chain"], int(r["handle"]))
        for item in objects
        if (r := item.get("rule"))
    }
    return words == keys


def _parse_words(text: str, iptables_save: str = "") -> Ruleset:
    chains: list[LiveChain] = []
    rules: list[LiveRule] = []
    managed: set[tuple[str, str]] = set()
    family = table = chain = ""
    chain_handle = 0
    hook: str | None = None
    policy: str | None = None
    rank, kind = 0, "filter"
    for raw in text.splitlines():
        line = raw.strip()
        if m := _MANAGED.match(line):
            managed.add((m.group(1), m.group(2)))
        elif m := _TABLE.match(line):
            family, table = m.group(1), m.group(2)
        elif m := _CHAIN.match(line):
            chain, chain_handle, hook, policy = m.group(1), int(m.group(2)), None, None
            rank, kind = 0, "filter"
        elif chain and (m := _BASE.match(line)):
            kind, hook, policy = m.group(1), m.group(2), m.group(4)
            rank = priority(m.group(3), family)
        elif line == "}" and chain:
            chains.append(LiveChain(family, table, chain, hook, policy, chain_handle, rank, kind))
            chain = ""
        elif chain and (m := _RULE.match(line)):
            # What the rule is, not how often it ran; one space between words.
            text = " ".join(_COUNTS.sub("counter", m.group(1)).split())
            rules.append(LiveRule(family, table, chain, int(m.group(3)), text, m.group(2)))
    if iptables_save:
        rules = _with_iptables_lines(rules, managed | _uncommented(rules), iptables_save)
    return Ruleset(tuple(chains), tuple(rules))


_ADD_CHAIN = re.compile(
    r"^add chain ip6? (\S+) (\S+)(?: \{ type (\w+) hook (\w+) priority ([^;]+); policy (\w+); \})?$"
)
_ADD_RULE = re.compile(r'^add rule ip6? (\S+) (\S+) (.*?)(?: comment "([^"]*)")?$')


def parse_legacy(translated: str, save: str, family: str = "ip") -> Ruleset:
    """iptables-legacy's chains and rules, from ``iptables-restore-translate`` of
    ``iptables-legacy-save`` (``family`` ip6: ip6tables'): each rule matched to its
    save line by table, chain and position (a chain whose rules the two list
    differently is left out: no guess)."""
    chains: list[LiveChain] = []
    translated_rules: dict[tuple[str, str], list[tuple[str, str | None]]] = {}
    for raw in translated.splitlines():
        line = raw.strip()
        if m := _ADD_CHAIN.match(line):
            rank = priority(m.group(5) or "0", family)
            chains.append(
                LiveChain(
                    family,
                    m.group(1),
                    m.group(2),
                    m.group(4),
                    m.group(6),
                    0,
                    rank,
                    m.group(3) or "filter",
                )
            )
        elif m := _ADD_RULE.match(line):
            text = " ".join(m.group(3).split())
            translated_rules.setdefault((m.group(1), m.group(2)), []).append((text, m.group(4)))
        elif line.startswith("# -A "):  # a rule the translator could not put in nft's words
            chain = line.split()[2]
            table = chains[-1].table if chains else ""
            translated_rules.setdefault((table, chain), []).append((line[2:], None))
    rules: list[LiveRule] = []
    for (table, chain), theirs in _save_lines(save).items():
        ours = translated_rules.get((table, chain), [])
        if len(ours) != len(theirs):
            continue
        for position, ((text, comment), line) in enumerate(zip(ours, theirs, strict=True), 1):
            rules.append(LiveRule(family, table, chain, position, text, comment, line, legacy=True))
    return Ruleset(tuple(chains), tuple(rules))


def iptables_made(listing: str) -> bool:
    """Whether some table of ``listing`` may be iptables': nft says so (it does not
    always), or a table's rules carry no nft comment (iptables' comments are
    invisible to nft; the lab, and most nft users, name their rules)."""
    if "is managed by iptables-nft" in listing:
        return True
    return bool(_uncommented(list(parse_listing(listing).rules)))


def _uncommented(rules: list[LiveRule]) -> set[tuple[str, str]]:
    """(family, table) of the tables none of whose rules has an nft comment."""
    tables: dict[tuple[str, str], bool] = {}
    for rule in rules:
        key = (rule.family, rule.table)
        tables[key] = tables.get(key, False) or rule.comment is not None
    return {key for key, commented in tables.items() if not commented}


def _with_iptables_lines(
    rules: list[LiveRule], managed: set[tuple[str, str]], save: str
) -> list[LiveRule]:
    """Each rule of an iptables-managed table with its iptables-save line, where both
    list the chain's rules alike (same count); a chain that differs is left as is."""
    lines = _save_lines(save)
    by_chain: dict[tuple[str, str], list[int]] = {}
    for i, rule in enumerate(rules):
        # iptables-save lists IPv4's tables only: an ip6 table's rules are never its lines.
        if (rule.family, rule.table) in managed and rule.family == "ip":
            by_chain.setdefault((rule.table, rule.chain), []).append(i)
    result = list(rules)
    for key, positions in by_chain.items():
        theirs = lines.get(key, [])
        if len(theirs) != len(positions):
            continue  # not the same rules: no guess
        for i, line in zip(positions, theirs, strict=True):
            found = _IPT_COMMENT.search(line)
            comment = found.group(1).replace('\\"', '"') if found else None
            result[i] = replace(result[i], iptables=line, comment=result[i].comment or comment)
    return result


def _save_lines(save: str) -> dict[tuple[str, str], list[str]]:
    """iptables-save's "-A CHAIN ..." lines by (table, chain), in order."""
    lines: dict[tuple[str, str], list[str]] = {}
    table = ""
    for line in save.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
        elif line.startswith("-A ") and table:
            lines.setdefault((table, line.split()[1]), []).append(line)
    return lines


_IPT_COMMENT = re.compile(r'--comment "((?:[^"\\]|\\.)*)"')
