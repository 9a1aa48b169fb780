"""Whether a netfilter rule matches a packet: yes, no, or not known.

The predicted path evaluates chains with this: a rule's expressions as ``nft -j``
gives them (``evaluate_rule``), or, for what has only words (iptables-legacy's
rules through the translator, bundles from before the JSON was kept), the rule as
nft prints it. Modelled: addresses (prefixes, ranges, anonymous and named sets),
interface names, protocols, ports, ICMP types, conntrack state, marks, the
family, ``fib ... type local``. A rule with any other expression "may match"
(None), and the prediction says so rather than guess either way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fnmatch import fnmatchcase
from ipaddress import ip_address, ip_network
from typing import Any

from pathtrace.model.ruleset import LiveRule, Ruleset

ICMP_TYPES = {"echo-reply": 0, "destination-unreachable": 3, "echo-request": 8, "time-exceeded": 11}
ICMP6_TYPES = {
    "destination-unreachable": 1,
    "packet-too-big": 2,
    "time-exceeded": 3,
    "echo-request": 128,
    "echo-reply": 129,
    "nd-neighbor-solicit": 135,
    "nd-neighbor-advert": 136,
}
PROTOCOLS = {"icmp": 1, "tcp": 6, "udp": 17, "icmpv6": 58, "ipv6-icmp": 58}


@dataclass(frozen=True)
class Packet:
    """What a rule can look at, at one hook."""

    family: int  # 4, 6, or 0 for an ARP frame (on a bridge)
    src: str
    dst: str
    protocol: str  # icmp, icmpv6, tcp, udp, arp
    sport: int = 0
    dport: int = 0
    icmp_type: int | None = None
    iif: str | None = None
    oif: str | None = None
    mark: int = 0
    ct: str = "new"  # new, established, untracked
    local: tuple[str, ...] = ()  # the namespace's own addresses (fib ... type local)


@dataclass(frozen=True)
class Statement:
    """What a matching rule does: its verdict, a translation, a mark, notrack."""

    verdict: str | None  # accept drop reject return jump goto
    target: str | None = None  # the chain a jump leads to; the address NAT gives
    nat: str | None = None  # masquerade snat dnat redirect
    port: int | None = None  # the port a DNAT gives
    mark: int | None = None  # meta mark set
    notrack: bool = False
    ttl: int | None = None  # ip ttl set / ip6 hoplimit set


_VALUE = r'(?:!= )?(?:\{[^}]*\}|"[^"]*"|\S+)'
_MATCHERS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(rf"^(ip6?) (saddr|daddr) ({_VALUE})"), "address"),
    (re.compile(rf"^(?:meta )?(iifname|oifname|iif|oif) ({_VALUE})"), "interface"),
    (re.compile(rf"^(?:meta l4proto|ip protocol|ip6 nexthdr) ({_VALUE})"), "protocol"),
    (re.compile(rf"^(icmp|icmpv6) type ({_VALUE})"), "icmp"),
    (re.compile(rf"^(tcp|udp|th) (sport|dport) ({_VALUE})"), "port"),
    (re.compile(rf"^ct state ({_VALUE})"), "ct"),
    (re.compile(rf"^(?:meta )?mark ({_VALUE})(?! set)"), "mark"),
    (re.compile(r"^meta nfproto (ipv4|ipv6)"), "nfproto"),
    (re.compile(r"^ether type (ip6?|arp)"), "ethertype"),
    (re.compile(rf"^fib (saddr|daddr) type ({_VALUE})"), "fib"),
    (re.compile(r"^(ip|ip6) (?=dscp|length|ttl|hoplimit)"), "unknown"),
]
_STATEMENTS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^counter"), "counter"),
    (re.compile(r'^log(?: prefix "[^"]*")?(?: level \w+)?'), "counter"),
    (re.compile(r"^(?:meta )?mark set (0x[0-9a-f]+|\d+)"), "mark"),
    (re.compile(r"^notrack"), "notrack"),
    (re.compile(r"^ct state set untracked"), "notrack"),
    (re.compile(r"^(?:ip ttl|ip6 hoplimit) set (\d+)"), "ttl"),
    (re.compile(r"^masquerade(?: (?:random|fully-random|persistent|to :\S+),?)*"), "masquerade"),
    (re.compile(r"^(snat|dnat)(?: ip6?)? to (\S+)"), "nat"),
    (re.compile(r"^redirect(?: to :?(\d+))?"), "redirect"),
    (re.compile(r"^(jump|goto) (\S+)"), "jump"),
    (re.compile(r"^reject(?: with [\w-]+(?: type)? [\w-]+)?"), "reject"),
    (re.compile(r"^(accept|drop|return)$"), "verdict"),
]


def evaluate_rule(
    rule: LiveRule, packet: Packet, ruleset: Ruleset | None = None
) -> tuple[bool | None, Statement]:
    """As ``evaluate``, from the rule's expressions where they were read (the named
    sets it refers to from ``ruleset``), else from its words."""
    if not rule.expr:
        return evaluate(rule.text, packet)
    known: bool | None = True
    for item in rule.expr:
        if "match" in item:
            said = _json_match(item["match"], packet, rule, ruleset)
            if said is False:
                return False, statement(rule)
            if said is None:
                known = None
        elif not _json_statement_known(item):
            known = None  # limit, quota, queue, an xt match: not modelled
    return known, statement(rule)


def statement(rule: LiveRule) -> Statement:
    """What the rule does when it matches: from its expressions, else its words."""
    if not rule.expr:
        return _statement(_after_matches(rule.text))
    verdict: str | None = None
    target: str | None = None
    nat: str | None = None
    port: int | None = None
    mark: int | None = None
    notrack = False
    ttl: int | None = None
    for item in rule.expr:
        key, value = next(iter(item.items()))
        if key in ("accept", "drop", "return", "reject"):
            verdict = key
        elif key in ("jump", "goto"):
            verdict, target = key, str(value["target"])
        elif key == "masquerade":
            nat, verdict = "masquerade", "accept"
        elif key in ("snat", "dnat"):
            nat, verdict = key, "accept"
            value = value or {}
            target = value["addr"] if isinstance(value.get("addr"), str) else None
            port = value["port"] if isinstance(value.get("port"), int) else None
        elif key == "redirect":
            nat, verdict = "redirect", "accept"
            value = value or {}
            port = value["port"] if isinstance(value.get("port"), int) else None
        elif key == "notrack":
            notrack = True
        elif key == "mangle" and isinstance(value.get("value"), int):
            what = value.get("key", {})
            if what.get("meta", {}).get("key") == "mark":
                mark = value["value"]
            elif what.get("payload", {}).get("field") in ("ttl", "hoplimit"):
                ttl = value["value"]
    return Statement(verdict, target, nat, port, mark, notrack, ttl)


# Statements that neither stop a match nor do what a Statement says.
_PASSIVE = ("counter", "log", "accept", "drop", "return", "reject", "jump", "goto")
_ACTING = ("masquerade", "snat", "dnat", "redirect", "notrack", "mangle", "continue")


def _json_statement_known(item: dict[str, Any]) -> bool:
    return any(k in item for k in _PASSIVE + _ACTING)


def _after_matches(text: str) -> str:
    rest = text.strip()
    while rest and not _statement_start(rest):
        for pattern, _ in _MATCHERS:
            m = pattern.match(rest)
            if m is not None:
                rest = rest[m.end() :].strip()
                break
        else:
            rest = _skip_expression(rest)
    return rest


def _json_match(
    match: dict[str, Any], packet: Packet, rule: LiveRule, ruleset: Ruleset | None
) -> bool | None:
    """One ``match`` expression: ``left`` (what of the packet) ``op`` ``right``."""
    left, right, op = match.get("left"), match.get("right"), match.get("op", "==")
    if op not in ("==", "!=", "in"):
        return None  # <, >, bit tests: not modelled
    if isinstance(right, str) and right.startswith("@"):
        elements = ruleset.set_elements(rule, right) if ruleset is not None else None
        if elements is None:
            return None
        right = {"set": list(elements)}
    kind, value = _json_left(left, packet)
    if kind is None:
        return None
    if kind == "absent":
        # The packet has no such field (a port on ICMP, an IPv4 address on IPv6): the
        # match's implicit dependency fails, whatever the operator.
        return False
    items = right["set"] if isinstance(right, dict) and "set" in right else right
    items = items if isinstance(items, list) else [items]
    found = [_json_one(kind, value, item) for item in items]
    if None in found and True not in found:
        return None
    return bool(any(found) != (op == "!="))


def _json_left(left: Any, packet: Packet) -> tuple[str | None, Any]:
    """(the kind of value, the packet's value) that ``left`` reads; ("absent", None)
    where the packet has no such field; (None, None) where it is not modelled."""
    if not isinstance(left, dict):
        return None, None
    if "&" in left:  # a masked value: meta mark & 0x2000 (CNI portmap's, kube-proxy's)
        inner, mask = left["&"]
        kind, value = _json_left(inner, packet)
        if kind == "mark" and isinstance(mask, int):
            return kind, value & mask
        return (kind, None) if kind == "absent" else (None, None)
    if "payload" in left:
        proto, name = left["payload"].get("protocol"), left["payload"].get("field")
        if proto in ("ip", "ip6") and name in ("saddr", "daddr"):
            if packet.family != (6 if proto == "ip6" else 4):
                return "absent", None
            return "address", packet.src if name == "saddr" else packet.dst
        if proto in ("tcp", "udp", "th") and name in ("sport", "dport"):
            if packet.protocol not in ("tcp", "udp") or proto not in ("th", packet.protocol):
                return "absent", None
            return "port", packet.sport if name == "sport" else packet.dport
        if proto in ("icmp", "icmpv6") and name == "type":
            if packet.protocol != proto or packet.icmp_type is None:
                return "absent", None
            return proto, packet.icmp_type
        if (proto, name) in (("ip", "protocol"), ("ip6", "nexthdr")):
            if packet.family != (6 if proto == "ip6" else 4):
                return "absent", None
            return "protocol", packet.protocol
        if (proto, name) == ("ether", "type"):
            return "ethertype", packet.family
        return None, None
    if "meta" in left:
        key = left["meta"].get("key")
        if key in ("iifname", "iif"):
            return "interface", packet.iif
        if key in ("oifname", "oif"):
            return "interface", packet.oif
        if key == "l4proto":
            return "protocol", packet.protocol
        if key == "nfproto":
            return "nfproto", packet.family
        if key == "protocol":
            return "ethertype", packet.family
        if key == "mark":
            return "mark", packet.mark
        return None, None
    if "ct" in left and left["ct"].get("key") == "state" and "dir" not in left["ct"]:
        return "ct", packet.ct
    if "fib" in left and left["fib"].get("result") == "type":
        flags = set(left["fib"].get("flags", ()))
        if not packet.local or len(flags) != 1 or not flags <= {"saddr", "daddr"}:
            return None, None  # relative to an interface (iif, oif): not modelled
        address = packet.src if "saddr" in flags else packet.dst
        return "fib", "local" if address in packet.local else "unicast"
    return None, None


def _json_one(kind: str, value: Any, item: Any) -> bool | None:
    """Whether the packet's ``value`` is ``item`` (a value, prefix, range)."""
    if isinstance(item, dict) and "elem" in item:
        item = item["elem"].get("val")
    if kind == "address":
        if isinstance(item, dict) and "prefix" in item:
            return _address_in(value, f"{item['prefix']['addr']}/{item['prefix']['len']}")
        if isinstance(item, dict) and "range" in item:
            low, high = item["range"]
            return _address_in(value, f"{low}-{high}")
        return _address_in(value, str(item)) if isinstance(item, str) else None
    if kind == "port":
        if isinstance(item, dict) and "range" in item:
            low, high = item["range"]
            return isinstance(low, int) and isinstance(high, int) and low <= value <= high
        return value == item if isinstance(item, int) else None
    if kind == "interface":
        if not isinstance(item, str):
            return None
        return value is not None and fnmatchcase(value, item)
    if kind == "protocol":
        number = PROTOCOLS.get(str(item), item if isinstance(item, int) else -1)
        return PROTOCOLS.get(value, -2) == number
    if kind in ("icmp", "icmpv6"):
        table = ICMP_TYPES if kind == "icmp" else ICMP6_TYPES
        return bool(value == (table.get(item, -1) if isinstance(item, str) else item))
    if kind == "ct":
        states = item if isinstance(item, list) else [item]
        return bool(value in states)
    if kind == "mark":
        return bool(value == item) if isinstance(item, int) else None
    if kind == "nfproto":
        return bool(value == {"ipv4": 4, "ipv6": 6}.get(str(item)))
    if kind == "ethertype":
        return bool(value == {"ip": 4, "ip6": 6, "arp": 0}.get(str(item), -1))
    if kind == "fib":
        return bool(value == item) if item in ("local", "unicast") else None
    return None


def evaluate(text: str, packet: Packet) -> tuple[bool | None, Statement]:
    """(whether ``text`` matches ``packet``: True, False, None for not known; what
    the rule does when it matches). A rule with an expression not modelled here
    matches None unless a modelled one already says no."""
    rest = text.strip()
    known: bool | None = True
    while rest and not _statement_start(rest):
        for pattern, kind in _MATCHERS:
            m = pattern.match(rest)
            if m is not None:
                said = _match(kind, m, packet)
                break
        else:
            m, said = None, None
        if said is False:
            return False, _statement(rest)
        if said is None:
            known = None
        if m is None or kind == "unknown":
            rest = _skip_expression(rest)
        else:
            rest = rest[m.end() :].strip()
    return known, _statement(rest)


def _first_statement(rest: str) -> tuple[re.Match[str], str] | None:
    for pattern, kind in _STATEMENTS:
        m = pattern.match(rest)
        if m is not None:
            return m, kind
    return None


def _statement_start(rest: str) -> bool:
    return any(p.match(rest) for p, _ in _STATEMENTS)


def _skip_expression(rest: str) -> str:
    """Past one expression not modelled (its words up to the next known one)."""
    words = rest.split(" ")
    for i in range(1, len(words)):
        tail = " ".join(words[i:])
        if _statement_start(tail) or any(p.match(tail) for p, _ in _MATCHERS):
            return tail
    return ""


def _statement(rest: str) -> Statement:
    verdict: str | None = None
    target: str | None = None
    nat: str | None = None
    port: int | None = None
    mark: int | None = None
    notrack = False
    ttl: int | None = None
    while rest:
        found = _first_statement(rest)
        if found is None:
            rest = _skip_expression(rest)
            continue
        m, kind = found
        rest = rest[m.end() :].strip()
        if kind == "mark":
            mark = int(m.group(1), 0)
        elif kind == "notrack":
            notrack = True
        elif kind == "ttl":
            ttl = int(m.group(1))
        elif kind == "masquerade":
            nat, verdict = "masquerade", "accept"
        elif kind == "nat":
            nat, verdict = m.group(1), "accept"
            target, port = _address_port(m.group(2))
        elif kind == "redirect":
            nat, verdict = "redirect", "accept"
            port = int(m.group(1)) if m.group(1) else None
        elif kind == "jump":
            verdict, target = m.group(1), m.group(2)
        elif kind == "reject":
            verdict = "reject"
        elif kind == "verdict":
            verdict = m.group(1)
    return Statement(verdict, target, nat, port, mark, notrack, ttl)


def _address_port(text: str) -> tuple[str | None, int | None]:
    """``192.168.100.2:80``, ``[fd00::2]:80``, ``:80``, ``10.0.0.1``."""
    if text.startswith("["):
        address, _, port = text[1:].partition("]:")
        return address, int(port) if port.isdigit() else None
    if text.count(":") == 1:
        address, _, port = text.partition(":")
        return address or None, int(port) if port.isdigit() else None
    return text, None


def _values(text: str) -> tuple[bool, list[str]]:
    """(negated, the values) of ``!= X``, ``{ a, b }``, ``"name"``."""
    negated = text.startswith("!= ")
    text = text[3:] if negated else text
    if text.startswith("{"):
        items = [v.strip().strip('"') for v in text.strip("{} ").split(",")]
        return negated, [v for v in items if v]
    return negated, [text.strip('"')]


def _match(kind: str, m: re.Match[str], packet: Packet) -> bool | None:
    if kind == "unknown":
        return None
    if kind == "nfproto":
        return packet.family == (4 if m.group(1) == "ipv4" else 6)
    if kind == "fib":
        negated, values = _values(m.group(2))
        if not packet.local or not set(values) <= {"local", "unicast"}:
            return None  # other address types (broadcast, multicast...) are not read
        address = packet.src if m.group(1) == "saddr" else packet.dst
        kind_of = "local" if address in packet.local else "unicast"
        return (kind_of in values) != negated
    if kind == "ethertype":
        want = {"ip": 4, "ip6": 6, "arp": 0}[m.group(1)]
        return packet.family == want
    if kind == "address":
        if packet.family != (6 if m.group(1) == "ip6" else 4):
            return False
        negated, values = _values(m.group(3))
        address = packet.src if m.group(2) == "saddr" else packet.dst
        found = [_address_in(address, v) for v in values]
        if None in found:
            return None
        return any(found) != negated
    if kind == "interface":
        negated, values = _values(m.group(2))
        name = packet.iif if m.group(1).startswith("i") else packet.oif
        if name is None:
            return False if not negated else True
        return any(fnmatchcase(name, v) for v in values) != negated
    if kind == "protocol":
        negated, values = _values(m.group(1))
        numbers = {PROTOCOLS.get(v, int(v) if v.isdigit() else -1) for v in values}
        return (PROTOCOLS.get(packet.protocol, -2) in numbers) != negated
    if kind == "icmp":
        table = ICMP_TYPES if m.group(1) == "icmp" else ICMP6_TYPES
        if packet.protocol != m.group(1) or packet.icmp_type is None:
            return False
        negated, values = _values(m.group(2))
        types = {table.get(v, int(v) if v.isdigit() else -1) for v in values}
        return (packet.icmp_type in types) != negated
    if kind == "port":
        if m.group(1) != "th" and packet.protocol != m.group(1):
            return False
        if packet.protocol not in ("tcp", "udp"):
            return False
        negated, values = _values(m.group(3))
        port = packet.sport if m.group(2) == "sport" else packet.dport
        return any(_port_in(port, v) for v in values) != negated
    if kind == "ct":
        negated, values = _values(m.group(1))
        states = {s for v in values for s in v.split(",")}
        return (packet.ct in states) != negated
    if kind == "mark":
        negated, values = _values(m.group(1))
        try:
            return (packet.mark in {int(v, 0) for v in values}) != negated
        except ValueError:
            return None
    return None


def _address_in(address: str, value: str) -> bool | None:
    if value.startswith(("@", "$")):
        return None  # a named set: its elements are not read
    try:
        if "-" in value and "/" not in value:
            low, high = (ip_address(v) for v in value.split("-"))
            ip = ip_address(address)
            return ip.version == low.version and low <= ip <= high  # type: ignore[operator]
        return ip_address(address) in ip_network(value, strict=False)
    except ValueError:
        return None


def _port_in(port: int, value: str) -> bool:
    if "-" in value:
        low, _, high = value.partition("-")
        return low.isdigit() and high.isdigit() and int(low) <= port <= int(high)
    return value.isdigit() and int(value) == port
