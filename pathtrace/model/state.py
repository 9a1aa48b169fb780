"""The state of each traced namespace at the time of a run.

Hops and diagnoses are read against it (which bridge a port belongs to, where
a route leads, which rule translated), and bundles save it, so that a run can
be explained later, elsewhere, from its files alone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from pathtrace.model.ruleset import Ruleset, parse_listing

SYSCTLS = (
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.rp_filter",
    "net.ipv4.conf.default.rp_filter",
    "net.bridge.bridge-nf-call-iptables",
)


@dataclass(frozen=True)
class Link:
    name: str
    index: int
    kind: str
    up: bool
    carrier: bool
    mtu: int
    master: str | None
    addresses: tuple[str, ...]


@dataclass(frozen=True)
class RouteEntry:
    dst: str  # "default" or a network
    gateway: str | None
    dev: str | None
    prefsrc: str | None

    def describe(self) -> str:
        via = f" via {self.gateway}" if self.gateway else ""
        return f"{self.dst}{via}" + (f" dev {self.dev}" if self.dev else "")

    def network(self) -> IPv4Network:
        return IPv4Network("0.0.0.0/0" if self.dst == "default" else self.dst)


@dataclass
class NamespaceState:
    namespace: str
    node: str
    links: list[Link] = field(default_factory=list)
    routes: list[RouteEntry] = field(default_factory=list)
    neighbours: list[str] = field(default_factory=list)
    sysctls: dict[str, str] = field(default_factory=dict)
    ruleset: str = ""
    legacy_tables: str = ""  # iptables-legacy tables, which nft does not list
    iptables: str = ""  # iptables-save, where iptables-nft manages tables (their comments)

    @property
    def has_rules(self) -> bool:
        """Whether netfilter can translate or filter here (where netfilter links go)."""
        return bool(self.ruleset.strip() or self.legacy_tables.strip())

    def link(self, name: str) -> Link | None:
        return next((link for link in self.links if link.name == name), None)

    def is_bridge(self, name: str) -> bool:
        link = self.link(name)
        return link is not None and link.kind == "bridge"

    def route_for(self, dst: str) -> RouteEntry | None:
        """The longest-prefix match in the main table."""
        address = IPv4Address(dst)
        matching = [r for r in self.routes if address in r.network()]
        return max(matching, key=lambda r: r.network().prefixlen, default=None)

    def rules(self) -> Ruleset:
        return parse_listing(self.ruleset, self.iptables)

    def owns(self, address: str) -> bool:
        return any(a.split("/")[0] == address for link in self.links for a in link.addresses)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NamespaceState:
        return cls(
            namespace=data["namespace"],
            node=data["node"],
            links=[
                Link(**{**link, "addresses": tuple(link["addresses"])}) for link in data["links"]
            ],
            routes=[RouteEntry(**r) for r in data["routes"]],
            neighbours=list(data.get("neighbours", [])),
            sysctls=dict(data["sysctls"]),
            ruleset=data["ruleset"],
            legacy_tables=data.get("legacy_tables", ""),
            iptables=data.get("iptables", ""),
        )
