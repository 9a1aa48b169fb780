"""`ip route get` over a saved state: which rule, which table, which route.

A pure function of the namespace's saved rules and tables, so that a verdict
read back from a bundle decides exactly as the live one did.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import ip_address, ip_network

from pathtrace.model.cause import ref
from pathtrace.model.state import TABLE_NAMES, NamespaceState, RouteEntry, Rule

REFUSING = ("blackhole", "unreachable", "prohibit")


@dataclass(frozen=True)
class Lookup:
    """Where the kernel's route lookup ends for one packet."""

    kind: str  # local, unicast, blackhole, unreachable, prohibit, none
    rule: Rule | None  # the rule that decided (None: no policy rules were saved)
    route: RouteEntry | None

    @property
    def refused(self) -> bool:
        return self.kind in (*REFUSING, "none")

    def describe(self) -> str:
        """The lookup's path as a person checks it: rule, then route."""
        parts = []
        if self.rule is not None and not (
            self.rule.action == "lookup" and self.rule.table in (254, 255)
        ):
            parts.append(f"rule {self.rule.describe()}")
        if self.route is not None:
            parts.append(f"route {self.route.describe()}")
        elif self.kind == "none":
            parts.append("no route matches")
        elif self.kind == "local":
            parts.append("a local address")
        return ", ".join(parts) or self.kind


def _in(address: str | None, network: str | None) -> bool:
    if network is None:
        return True
    if address is None:
        return False
    ip, net = ip_address(address), ip_network(network, strict=False)
    return ip.version == net.version and ip in net


def _matches(rule: Rule, src: str | None, dst: str, iif: str | None, mark: int) -> bool:
    if not (_in(src, rule.src) and _in(dst, rule.dst)):
        return False
    if rule.iif is not None and rule.iif != (iif or "lo"):
        return False
    return rule.fwmark is None or (mark & rule.fwmark_mask) == rule.fwmark


def best_route(state: NamespaceState, table: int, dst: str) -> RouteEntry | None:
    """The longest prefix (then the lowest metric) in ``table`` that holds ``dst``."""
    found = [r for r in state.routes if r.table == table and r.holds(dst)]
    return min(found, key=lambda r: (-r.network().prefixlen, r.metric), default=None)


def route_get(
    state: NamespaceState,
    dst: str,
    src: str | None = None,
    iif: str | None = None,
    mark: int = 0,
) -> Lookup:
    """The lookup for a packet to ``dst`` (from ``src``, arriving on ``iif``; None:
    sent by the namespace itself), as fib_lookup makes it."""
    version = ip_address(dst).version
    mine = [r for r in state.route_rules if r.family == version]
    rules = sorted(mine, key=lambda r: r.priority) or [
        Rule(0, "lookup", 255),
        Rule(32766, "lookup", 254),
        Rule(32767, "lookup", 253),
    ]
    for rule in rules:
        if not _matches(rule, src, dst, iif, mark):
            continue
        if rule.action in REFUSING:
            return Lookup(rule.action, rule, None)
        if rule.action != "lookup":
            continue
        if rule.table == 255:
            if state.owns(dst):
                return Lookup("local", rule, None)
            continue
        route = best_route(state, rule.table, dst)
        if route is None or route.type == "throw":
            continue
        return Lookup(route.type, rule, route)
    return Lookup("none", None, None)


def table_name(table: int) -> str:
    return TABLE_NAMES.get(table, str(table))


def delete_command(lookup: Lookup) -> str | None:
    """The command that removes what refused the packet: the rule or the route."""
    if lookup.kind not in REFUSING:
        return None
    if lookup.route is None and lookup.rule is not None:
        six = "-6 " if lookup.rule.family == 6 else ""
        return f"ip {six}rule del pref {lookup.rule.priority}"
    if lookup.route is not None:
        six = "-6 " if lookup.route.family == 6 else ""
        table = f" table {table_name(lookup.route.table)}" if lookup.route.table != 254 else ""
        dst = "::/0" if lookup.route.dst == "default" and six else lookup.route.dst
        return f"ip {six}route del {lookup.route.type} {dst}{table}"
    return None


def refs(node: str, lookup: Lookup, dst: str) -> tuple[str, ...]:
    """The objects a lookup's end names: the rule that decided (a table of its own
    or a refusing action), and the route it found, or the route to ``dst`` it needed."""
    found = []
    rule = lookup.rule
    if rule is not None and (rule.action != "lookup" or rule.table not in (254, 255)):
        found.append(ref("rule", node, f"pref {rule.priority}"))
    found.append(ref("route", node, lookup.route.dst if lookup.route else dst))
    return tuple(found)
