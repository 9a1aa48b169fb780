"""`lab status`: every piece of the lab as the kernel has it, checked against the description."""

from __future__ import annotations

import socket
from dataclasses import asdict, dataclass, field
from typing import Any

from pathtrace.lab import firewall, record
from pathtrace.lab.build import (
    BASELINE_SYSCTLS,
    DEFAULT_MTU,
    gateway_routes,
    live_route,
    responders,
)
from pathtrace.lab.topology import Node, Topology
from pathtrace.model.ruleset import Ruleset
from pathtrace.system import netns, privileges

STATUS_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Check:
    """One thing the description asks for: what it wants, what there is."""

    kind: str  # namespace, interface, address, route, sysctl, chain, rule
    subject: str
    expected: str
    actual: str
    ok: bool


@dataclass
class NodeStatus:
    node: str
    namespace: str
    checks: list[Check] = field(default_factory=list)

    def add(
        self, kind: str, subject: str, expected: str, actual: str, ok: bool | None = None
    ) -> None:
        self.checks.append(
            Check(kind, subject, expected, actual, expected == actual if ok is None else ok)
        )


@dataclass
class StatusReport:
    prefix: str
    source: str
    nodes: list[NodeStatus]

    @property
    def healthy(self) -> bool:
        return all(c.ok for n in self.nodes for c in n.checks)

    @property
    def problems(self) -> list[str]:
        return [
            f"{n.node}: {c.kind} {c.subject}: want {c.expected}, have {c.actual}"
            for n in self.nodes
            for c in n.checks
            if not c.ok
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "version": STATUS_SCHEMA_VERSION,
            "prefix": self.prefix,
            "source": self.source,
            "healthy": self.healthy,
            "nodes": [asdict(n) for n in self.nodes],
        }


def observe(topology: Topology) -> StatusReport:
    privileges.require("CAP_SYS_ADMIN", "CAP_NET_ADMIN", doing="pathtrace lab status")
    previous = record.read_record(topology.prefix)
    nodes = []
    for node in topology.nodes.values():
        status = NodeStatus(node.name, topology.namespace(node.name))
        ns = status.namespace
        present = netns.exists(ns) and record.is_ours(ns, topology.prefix, previous)
        status.add(
            "namespace",
            ns,
            "present",
            "present" if present else ("not made by pathtrace" if netns.exists(ns) else "absent"),
        )
        if present:
            _observe_node(node, ns, status)
        nodes.append(status)
    return StatusReport(topology.prefix, topology.source, nodes)


def _observe_node(node: Node, ns: str, status: NodeStatus) -> None:
    ipr = netns.rtnl(ns)
    try:
        links = {link.get("ifname"): link for link in ipr.get_links()}
        names = {link["index"]: link.get("ifname") for link in links.values()}
        for iface in node.interfaces.values():
            link = links.get(iface.name)
            if link is None:
                status.add("interface", iface.name, iface.kind, "absent")
                continue
            kind = link.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND") or "loopback"
            state = "up" if link["flags"] & 1 else "down"
            carrier = link.get("operstate", "").lower()
            master = names.get(link.get("master")) if link.get("master") else None
            status.add(
                "interface",
                iface.name,
                f"{iface.kind} up",
                f"{kind} {state}"
                + (f" ({carrier})" if carrier not in ("up", "unknown") and state == "up" else ""),
                ok=kind == iface.kind and state == "up",
            )
            if iface.master is not None or master is not None:
                status.add("master", iface.name, iface.master or "none", master or "none")
            mtu = iface.mtu or (DEFAULT_MTU if iface.kind == "veth" else None)
            if mtu is not None:
                status.add("mtu", iface.name, str(mtu), str(link.get("mtu")))
            live = sorted(
                f"{a.get('address')}/{a['prefixlen']}"
                for a in ipr.get_addr(index=link["index"])
                if a.get("address") not in ("127.0.0.1", "::1")
                and a["family"] in (socket.AF_INET, socket.AF_INET6)
                and not str(a.get("address")).startswith("fe80:")
            )
            wanted = sorted(str(a) for a in iface.addresses)
            status.add(
                "addresses", iface.name, " ".join(wanted) or "none", " ".join(live) or "none"
            )
        live_routes = {r.key: r for raw in gateway_routes(ipr) if (r := live_route(raw, ipr))}
        for route in node.routes:
            found = live_routes.pop(route.key, None)
            status.add("route", route.describe(), "present", "present" if found else "absent")
        for extra in live_routes.values():
            status.add("route", extra.describe(), "absent", "present")
    finally:
        ipr.close()
    for key, value in {**BASELINE_SYSCTLS, **node.sysctls}.items():
        status.add("sysctl", key, value, netns.read_sysctl(ns, key) or "missing")
    _observe_firewall(node, firewall.read(ns), status)
    if node.services:
        running = responders(ns)
        serving = next(
            (f"running (pid {pid})" for pid, ports in running.items() if ports == node.services),
            "not running",
        )
        status.add(
            "services",
            " ".join(node.services),
            "running",
            serving,
            ok=serving.startswith("running"),
        )


def _observe_firewall(node: Node, ruleset: Ruleset, status: NodeStatus) -> None:
    for family, table, chain_name in firewall.used_chains(node):
        chain = ruleset.chain(table, chain_name, family)
        policy = node.policies.get((table, chain_name), "accept") if family == "ip" else "accept"
        status.add(
            "chain",
            f"{'' if family == 'ip' else family + ' '}{table} {chain_name}",
            f"policy {policy}",
            f"policy {chain.policy}" if chain else "absent",
        )
    described = set()
    for rule in node.rules:
        found = ruleset.rule_named(rule.table, rule.chain, rule.name, rule.family)
        described.add((rule.family, rule.table, rule.chain, rule.name))
        status.add(
            "rule",
            rule.name,
            f"{rule.where}: {rule.text}",
            f"{found.table} {found.chain}: {found.text} (handle {found.handle})"
            if found
            else "absent",
            ok=found is not None,
        )
    for extra in ruleset.rules:
        if (extra.family, extra.table, extra.chain, extra.comment) not in described:
            status.add(
                "rule",
                extra.comment or f"handle {extra.handle}",
                "absent",
                f"{extra.table} {extra.chain}: {extra.text} (handle {extra.handle})",
            )


def print_report(report: StatusReport) -> None:
    from rich.console import Console
    from rich.markup import escape

    console = Console(highlight=False, emoji=False)
    console.print(f"lab [bold]{report.prefix!r}[/] ({report.source})")
    for node in report.nodes:
        bad = sum(not c.ok for c in node.checks)
        verdict = "[green]ok[/]" if not bad else f"[red]{bad} differ[/]"
        console.print(f"[bold magenta]{node.node}[/]  [dim]netns {node.namespace}[/]  {verdict}")
        for c in node.checks:
            line = f"  {'[green]ok[/]' if c.ok else '[red]!![/]'} {c.kind:<9} {escape(c.subject)}"
            if c.actual not in ("present",) or not c.ok:
                line += f": {escape(c.actual)}"
            if not c.ok:
                line += f" [red](want {escape(c.expected)})[/]"
            console.print(line)
    if report.healthy:
        console.print("[green]the lab matches its description[/]")
    else:
        console.print(
            f"[red]{len(report.problems)} differences from the description;"
            " `pathtrace lab up` restores it[/]"
        )
