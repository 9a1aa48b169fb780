"""The lab's declarative description: nodes, interfaces, routes, sysctls, rules.

A topology is read from TOML (the reference one ships as ``reference.toml``) and
validated completely before anything touches the kernel, so that a bad file
leaves nothing behind. Every error names the field at fault.

File format (see README, "Topology files")::

    prefix = "pt-"                       # namespace name = prefix + node name
    [nodes.NODE]
    routes = [{ to = "default", via = "192.168.100.1" }]   # also: dev = "eth0"
    sysctls = { "net.ipv4.ip_forward" = "1" }               # net.* only
    policies = { "filter FORWARD" = "drop" }                # base chain policies
    services = ["tcp:80", "udp:53"]      # listeners the lab runs (udp echoes)
    [nodes.NODE.interfaces.IFNAME]
    kind = "veth"                        # veth (default), bridge, loopback
    peer = "OTHERNODE:IFNAME"            # the other end of a veth pair
    master = "br0"                       # a bridge of the same node
    addresses = ["192.168.100.2/24"]
    mtu = 1500
    [[nodes.NODE.rules]]
    name = "masquerade"                  # unique in the node; reports cite it
    chain = "nat POSTROUTING"            # TABLE CHAIN: nat or filter, an iptables chain
    rule = 'ip saddr 192.168.100.0/24 oifname "eth0" masquerade'   # nft syntax
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from dataclasses import dataclass, field
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
    ip_address,
    ip_interface,
    ip_network,
)
from pathlib import Path
from typing import Any, Literal

from pathtrace.errors import TopologyError
from pathtrace.lab import DEFAULT_PREFIX

InterfaceKind = Literal["veth", "bridge", "loopback"]

# Chains a rule may name, with their netfilter hook and the iptables-like priority.
CHAIN_HOOKS: dict[str, dict[str, tuple[str, int]]] = {
    "nat": {
        "PREROUTING": ("prerouting", -100),
        "INPUT": ("input", 100),
        "OUTPUT": ("output", -100),
        "POSTROUTING": ("postrouting", 100),
    },
    "filter": {
        "INPUT": ("input", 0),
        "FORWARD": ("forward", 0),
        "OUTPUT": ("output", 0),
    },
}

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # fullmatch: "$" takes a final newline
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_FILE_MAX = 1 << 20  # a topology file is a page of TOML, never more than this
_IFNAME_MAX = 15  # IFNAMSIZ - 1
_NETNS_MAX = 64


Address = IPv4Address | IPv6Address
Network = IPv4Network | IPv6Network
AddressPrefix = IPv4Interface | IPv6Interface


@dataclass(frozen=True)
class Route:
    to: Network | None  # None is the default route (of via's family; IPv4 without via)
    via: Address | None = None
    dev: str | None = None

    @property
    def version(self) -> int:
        if self.to is not None:
            return self.to.version
        return self.via.version if self.via is not None else 4

    @property
    def key(self) -> tuple[str, str | None, str | None]:
        """What makes two routes the same: the kernel fills in a dev for a gateway."""
        to = self.destination
        return (to, str(self.via) if self.via else None, None if self.via else self.dev)

    @property
    def destination(self) -> str:
        """The network as the kernel is given it: default is 0.0.0.0/0 or ::/0."""
        if self.to is not None:
            return str(self.to)
        return "::/0" if self.version == 6 else "0.0.0.0/0"

    def describe(self) -> str:
        text = "default" if self.to is None else str(self.to)
        if self.via is not None:
            text += f" via {self.via}"
        if self.dev is not None:
            text += f" dev {self.dev}"
        return text


@dataclass(frozen=True)
class Rule:
    name: str
    table: str
    chain: str
    text: str
    family: str = "ip"  # ip (IPv4) or ip6: the nft table family

    @property
    def where(self) -> str:
        prefix = "" if self.family == "ip" else f"{self.family} "
        return f"{prefix}{self.table} {self.chain}"


@dataclass(frozen=True)
class Interface:
    node: str
    name: str
    kind: InterfaceKind = "veth"
    peer: tuple[str, str] | None = None  # (node, interface) for a veth
    master: str | None = None
    addresses: tuple[AddressPrefix, ...] = ()
    mtu: int | None = None

    @property
    def label(self) -> str:
        return f"{self.node}/{self.name}"


@dataclass(frozen=True)
class Node:
    name: str
    interfaces: dict[str, Interface] = field(default_factory=dict)
    routes: tuple[Route, ...] = ()
    sysctls: dict[str, str] = field(default_factory=dict)
    policies: dict[tuple[str, str], str] = field(default_factory=dict)
    rules: tuple[Rule, ...] = ()
    services: tuple[str, ...] = ()  # "tcp:80", "udp:53": what the lab listens on


@dataclass(frozen=True)
class Topology:
    prefix: str
    nodes: dict[str, Node]
    source: str = "reference"

    def namespace(self, node: str) -> str:
        return self.prefix + node

    def node_of_namespace(self, namespace: str) -> str | None:
        if namespace.startswith(self.prefix) and namespace[len(self.prefix) :] in self.nodes:
            return namespace[len(self.prefix) :]
        return None

    def require_known_sysctls(self) -> None:
        """Every sysctl the file sets exists in a new namespace (checked before
        anything is made). A per-interface key is checked on the ``default``
        entry new interfaces copy, for interfaces the node declares."""
        # lazy: parsing a file asks no kernel; only this check does
        from pathtrace.system import netns

        wanted: dict[str, tuple[str, str]] = {}  # key to look up -> (node, key as written)
        for node in self.nodes.values():
            for key in node.sysctls:
                parts = key.split(".")
                if len(parts) > 4 and parts[2] in ("conf", "neigh") and parts[3] in node.interfaces:
                    parts[3] = "default"
                wanted.setdefault(".".join(parts), (node.name, key))
        known = netns.sysctls_of_new_namespaces(sorted(wanted))
        for probe, (name, key) in sorted(wanted.items()):
            if probe not in known:
                raise TopologyError(
                    f"nodes.{name}.sysctls.{key}",
                    "no such sysctl in a network namespace of this kernel (the host's own "
                    "keys, or unknown)",
                    self.source,
                )

    def veth_pairs(self) -> list[tuple[Interface, Interface]]:
        """Each veth pair once, in description order."""
        pairs: list[tuple[Interface, Interface]] = []
        seen: set[tuple[str, str]] = set()
        for node in self.nodes.values():
            for iface in node.interfaces.values():
                if iface.kind != "veth" or (iface.node, iface.name) in seen:
                    continue
                assert iface.peer is not None
                other = self.nodes[iface.peer[0]].interfaces[iface.peer[1]]
                seen.update({(iface.node, iface.name), iface.peer})
                pairs.append((iface, other))
        return pairs


def reference_text() -> str:
    return (Path(__file__).parent / "reference.toml").read_text()


def load(path: str | Path | None = None) -> Topology:
    """The topology in ``path``, or the reference topology."""
    if path is None:
        return parse(reference_text(), source="reference")
    return parse(read_file(str(path)), source=str(path))


def read_file(path: str) -> str:
    """A topology file's text: a regular file of UTF-8 text, at most 1 MiB."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        raise TopologyError(path, f"cannot read it ({error.strerror})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise TopologyError(path, "not a regular file")
        if info.st_size > _FILE_MAX:
            raise TopologyError(path, f"{info.st_size} bytes: a topology file is at most 1 MiB")
        data = os.read(fd, _FILE_MAX + 1)
    except OSError as error:
        raise TopologyError(path, f"cannot read it ({error.strerror})") from None
    finally:
        os.close(fd)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise TopologyError(path, f"not UTF-8 text (byte {error.start})") from None


def parse(text: str, source: str = "") -> Topology:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise TopologyError("file", f"not valid TOML ({error})", source) from None
    return _Parser(source).topology(data)


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, problem: str) -> TopologyError:
        return TopologyError(where, problem, self.source)

    def table(self, value: Any, where: str, allowed: set[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, "must be a table")
        unknown = sorted(set(value) - allowed)
        if unknown:
            raise self.fail(f"{where}.{unknown[0]}" if where else unknown[0], "unknown field")
        return value

    def string(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(where, "must be a non-empty string")
        if _CONTROL.search(value):
            # A newline in a rule would be a second nft command.
            raise self.fail(where, f"{value!r} holds a control character")
        return value

    def name(self, value: Any, where: str, limit: int) -> str:
        text = self.string(value, where)
        if not _NAME.fullmatch(text) or len(text) > limit:
            raise self.fail(
                where,
                f"{text!r} is not a valid name (letters, digits, _.-; at most {limit} characters)",
            )
        return text

    def topology(self, data: dict[str, Any]) -> Topology:
        data = self.table(data, "", {"prefix", "nodes"})
        prefix = data.get("prefix", DEFAULT_PREFIX)
        if (
            not isinstance(prefix, str)
            or (prefix and not _NAME.fullmatch(prefix))
            or len(prefix) > 20
        ):
            raise self.fail("prefix", "must be a short name (letters, digits, _.-)")
        if not prefix:
            # An empty prefix would let the lab take names like a user's own `container1`.
            raise self.fail("prefix", "must not be empty: lab namespaces need their own names")
        raw_nodes = self.table(data.get("nodes"), "nodes", set(data.get("nodes") or {}))
        if not raw_nodes:
            raise self.fail("nodes", "the topology has no nodes")
        nodes = {
            self.name(name, f"nodes.{name}", _NETNS_MAX - len(prefix)): self.node(name, raw)
            for name, raw in raw_nodes.items()
        }
        nodes = self.resolve_peers(nodes)
        self.check_addresses(nodes)
        self.check_routes(nodes)
        return Topology(prefix=prefix, nodes=nodes, source=self.source or "reference")

    def node(self, name: str, raw: Any) -> Node:
        where = f"nodes.{name}"
        raw = self.table(
            raw, where, {"interfaces", "routes", "sysctls", "policies", "rules", "services"}
        )
        ifaces_raw = self.table(
            raw.get("interfaces", {}), f"{where}.interfaces", set(raw.get("interfaces", {}) or {})
        )
        interfaces = {
            self.name(ifname, f"{where}.interfaces.{ifname}", _IFNAME_MAX): self.interface(
                name, ifname, body
            )
            for ifname, body in ifaces_raw.items()
        }
        routes = raw.get("routes", [])
        if not isinstance(routes, list):
            raise self.fail(f"{where}.routes", "must be a list of tables")
        sysctls = self.table(
            raw.get("sysctls", {}), f"{where}.sysctls", set(raw.get("sysctls", {}) or {})
        )
        for key, value in sysctls.items():
            if not key.startswith("net.") or not re.fullmatch(r"[a-z0-9_.-]+", key):
                raise self.fail(
                    f"{where}.sysctls.{key}", "only net.* sysctls, which belong to the namespace"
                )
            if not isinstance(value, str | int):
                raise self.fail(f"{where}.sysctls.{key}", "must be a string or an integer")
        policies = self.table(
            raw.get("policies", {}), f"{where}.policies", set(raw.get("policies", {}) or {})
        )
        rules = raw.get("rules", [])
        if not isinstance(rules, list):
            raise self.fail(f"{where}.rules", "must be a list of tables")
        parsed_rules = tuple(self.rule(f"{where}.rules[{i}]", r) for i, r in enumerate(rules))
        names = [r.name for r in parsed_rules]
        for i, rule_name in enumerate(names):
            if rule_name in names[:i]:
                raise self.fail(f"{where}.rules[{i}].name", f"{rule_name!r} is used twice")
        services = raw.get("services", [])
        if not isinstance(services, list):
            raise self.fail(f"{where}.services", 'must be a list like ["tcp:80", "udp:53"]')
        for i, spec in enumerate(services):
            proto, _, port = str(spec).partition(":")
            if proto not in ("tcp", "udp") or not port.isdigit() or not 0 < int(port) < 65536:
                raise self.fail(f"{where}.services[{i}]", f"{spec!r} is not tcp:PORT or udp:PORT")
        node = Node(
            name=name,
            interfaces=interfaces,
            routes=tuple(self.route(f"{where}.routes[{i}]", r) for i, r in enumerate(routes)),
            sysctls={k: str(v) for k, v in sysctls.items()},
            policies={
                self.chain(f"{where}.policies.{k}", k): self.policy(f"{where}.policies.{k}", v)
                for k, v in policies.items()
            },
            rules=parsed_rules,
            services=tuple(str(s) for s in services),
        )
        for iface in interfaces.values():
            if iface.master is not None:
                master = interfaces.get(iface.master)
                if master is None or master.kind != "bridge":
                    raise self.fail(
                        f"{where}.interfaces.{iface.name}.master",
                        f"node {name} has no bridge {iface.master!r}",
                    )
        for route in node.routes:
            if route.dev is not None and route.dev not in interfaces:
                raise self.fail(f"{where}.routes", f"node {name} has no interface {route.dev!r}")
        return node

    def interface(self, node: str, name: str, raw: Any) -> Interface:
        where = f"nodes.{node}.interfaces.{name}"
        raw = self.table(raw, where, {"kind", "peer", "master", "addresses", "mtu"})
        kind = raw.get("kind", "veth")
        if kind not in ("veth", "bridge", "loopback"):
            raise self.fail(f"{where}.kind", f"{kind!r} is not one of veth, bridge, loopback")
        if kind == "loopback" and name != "lo":
            raise self.fail(f"{where}.kind", "the loopback interface is called lo")
        if name == "lo" and kind != "loopback":
            raise self.fail(f"{where}.kind", 'lo is the loopback interface: kind = "loopback"')
        peer = None
        if "peer" in raw:
            if kind != "veth":
                raise self.fail(f"{where}.peer", f"a {kind} has no peer")
            text = self.string(raw["peer"], f"{where}.peer")
            if text.count(":") != 1:
                raise self.fail(f"{where}.peer", f"{text!r} is not NODE:INTERFACE")
            peer_node, peer_if = text.split(":")
            peer = (peer_node, peer_if)
        master = raw.get("master")
        if master is not None:
            master = self.string(master, f"{where}.master")
            if kind == "bridge":
                raise self.fail(f"{where}.master", "a bridge cannot be a port of another bridge")
        addresses = raw.get("addresses", [])
        if not isinstance(addresses, list):
            raise self.fail(f"{where}.addresses", "must be a list of ADDRESS/PREFIX strings")
        parsed = []
        for i, text in enumerate(addresses):
            try:
                if not isinstance(text, str) or "/" not in text:
                    raise ValueError
                parsed.append(ip_interface(text))
            except ValueError:
                raise self.fail(
                    f"{where}.addresses[{i}]", f"{text!r} is not an IP ADDRESS/PREFIX"
                ) from None
        mtu = raw.get("mtu")
        if mtu is not None and (not isinstance(mtu, int) or not 68 <= mtu <= 65535):
            raise self.fail(f"{where}.mtu", "must be an integer from 68 to 65535")
        return Interface(
            node=node,
            name=name,
            kind=kind,
            peer=peer,
            master=master,
            addresses=tuple(parsed),
            mtu=mtu,
        )

    def route(self, where: str, raw: Any) -> Route:
        raw = self.table(raw, where, {"to", "via", "dev"})
        to_text = self.string(raw.get("to"), f"{where}.to")
        try:
            to = None if to_text == "default" else ip_network(to_text)
        except ValueError:
            raise self.fail(f"{where}.to", f"{to_text!r} is not default or a network") from None
        via = None
        if "via" in raw:
            try:
                via = ip_address(self.string(raw["via"], f"{where}.via"))
            except ValueError:
                raise self.fail(f"{where}.via", f"{raw['via']!r} is not an address") from None
            if to is not None and to.version != via.version:
                raise self.fail(f"{where}.via", f"{via} is not of {to}'s family")
        dev = self.string(raw["dev"], f"{where}.dev") if "dev" in raw else None
        if via is None and dev is None:
            raise self.fail(where, "a route needs via, dev or both")
        return Route(to=to, via=via, dev=dev)

    def rule(self, where: str, raw: Any) -> Rule:
        raw = self.table(raw, where, {"name", "chain", "rule"})
        name = self.name(raw.get("name"), f"{where}.name", 64)
        spec = self.string(raw.get("chain"), f"{where}.chain")
        family = "ip"
        if spec.startswith("ip6 "):  # "ip6 nat POSTROUTING": the IPv6 tables
            family, spec = "ip6", spec[4:]
        table, chain = self.chain(f"{where}.chain", spec)
        text = self.string(raw.get("rule"), f"{where}.rule")
        if "comment" in text or "\n" in text or ";" in text:
            raise self.fail(f"{where}.rule", "one rule, without comment (its name is the comment)")
        return Rule(name=name, table=table, chain=chain, text=text, family=family)

    def chain(self, where: str, value: Any) -> tuple[str, str]:
        text = self.string(value, where)
        parts = text.split()
        if len(parts) != 2 or parts[0] not in CHAIN_HOOKS or parts[1] not in CHAIN_HOOKS[parts[0]]:
            known = ", ".join(f"{t} {c}" for t, cs in CHAIN_HOOKS.items() for c in cs)
            raise self.fail(where, f"{text!r} is not one of: {known}")
        return parts[0], parts[1]

    def policy(self, where: str, value: Any) -> str:
        if value not in ("accept", "drop"):
            raise self.fail(where, "must be accept or drop")
        return str(value)

    def resolve_peers(self, nodes: dict[str, Node]) -> dict[str, Node]:
        """Checks each veth's peer and adds ends that are named only from the other side."""
        added: dict[str, dict[str, Interface]] = {
            n: dict(node.interfaces) for n, node in nodes.items()
        }
        for node in nodes.values():
            for iface in node.interfaces.values():
                if iface.peer is None:
                    continue
                where = f"nodes.{node.name}.interfaces.{iface.name}.peer"
                peer_node, peer_if = iface.peer
                if peer_node not in nodes:
                    raise self.fail(where, f"there is no node {peer_node!r}")
                if (peer_node, peer_if) == (node.name, iface.name):
                    raise self.fail(where, "a veth cannot be its own peer")
                other = added[peer_node].get(peer_if)
                if other is None:
                    if not _NAME.fullmatch(peer_if) or len(peer_if) > _IFNAME_MAX:
                        raise self.fail(where, f"{peer_if!r} is not a valid interface name")
                    added[peer_node][peer_if] = Interface(
                        peer_node, peer_if, "veth", (node.name, iface.name)
                    )
                elif other.kind != "veth":
                    raise self.fail(where, f"{peer_node}:{peer_if} is a {other.kind}, not a veth")
                elif other.peer is None:
                    added[peer_node][peer_if] = Interface(
                        other.node,
                        other.name,
                        "veth",
                        (node.name, iface.name),
                        other.master,
                        other.addresses,
                        other.mtu,
                    )
                elif other.peer != (node.name, iface.name):
                    raise self.fail(
                        where, f"{peer_node}:{peer_if} names {':'.join(other.peer)} as its peer"
                    )
        for name, ifaces in added.items():
            for iface in ifaces.values():
                if iface.kind == "veth" and iface.peer is None:
                    raise self.fail(
                        f"nodes.{name}.interfaces.{iface.name}",
                        'a veth needs a peer (peer = "NODE:INTERFACE")',
                    )
        return {
            name: Node(
                name,
                added[name],
                node.routes,
                node.sysctls,
                node.policies,
                node.rules,
                node.services,
            )
            for name, node in nodes.items()
        }

    def check_addresses(self, nodes: dict[str, Node]) -> None:
        owner: dict[Address, str] = {}
        for node in nodes.values():
            for iface in node.interfaces.values():
                for i, address in enumerate(iface.addresses):
                    where = f"nodes.{node.name}.interfaces.{iface.name}.addresses[{i}]"
                    if address.ip in owner:
                        raise self.fail(
                            where, f"address clash: {address.ip} is also on {owner[address.ip]}"
                        )
                    owner[address.ip] = iface.label

    def check_routes(self, nodes: dict[str, Node]) -> None:
        for node in nodes.values():
            for i, route in enumerate(node.routes):
                if route.via is None or route.dev is not None:
                    continue
                on_link = any(
                    a.version == route.via.version and route.via in a.network
                    for iface in node.interfaces.values()
                    for a in iface.addresses
                )
                if not on_link:
                    raise self.fail(
                        f"nodes.{node.name}.routes[{i}].via",
                        f"{route.via} is on no subnet of node {node.name}",
                    )
