"""The state of each traced namespace at the time of a run.

Hops and diagnoses are read against it (which bridge a port belongs to, where
a route leads, which rule translated), and bundles save it, so that a run can
be explained later, elsewhere, from its files alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from ipaddress import IPv4Network, IPv6Network, ip_address
from typing import Any, cast

from pathtrace.model.ruleset import Ruleset, parse_legacy, parse_listing

SYSCTLS = (
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.rp_filter",
    "net.ipv4.conf.default.rp_filter",
    "net.ipv4.conf.all.arp_ignore",
    "net.ipv4.conf.all.forwarding",
    "net.ipv4.conf.all.route_localnet",
    "net.ipv4.icmp_echo_ignore_all",
    "net.bridge.bridge-nf-call-iptables",
    "net.ipv6.conf.all.forwarding",
    "net.ipv6.conf.all.disable_ipv6",
    "net.bridge.bridge-nf-call-ip6tables",
)
# Read for each interface: net.ipv4.conf.IFNAME.KEY
INTERFACE_SYSCTLS = ("forwarding", "rp_filter", "arp_ignore", "route_localnet")


@dataclass(frozen=True)
class BridgePort:
    """A bridge port's switches, as `bridge -d link` shows them."""

    state: str  # disabled listening learning forwarding blocking
    learning: bool = True
    flood: bool = True  # unknown unicast
    bcast_flood: bool = True
    isolated: bool = False

    def describe(self) -> str:
        off = [
            n
            for n, on in (
                ("learning", self.learning),
                ("flood", self.flood),
                ("bcast_flood", self.bcast_flood),
            )
            if not on
        ]
        return " ".join(
            [f"state {self.state}", *(f"{n} off" for n in off)]
            + (["isolated on"] if self.isolated else [])
        )


# How each IFLA_INFO_DATA detail observe.py keeps is said.
_INFO_WORDS = {
    "mode": "{} mode",
    "vni": "VNI {}",
    "port": "UDP port {}",
    "local": "local {}",
    "remote": "remote {}",
    "vlan": "VLAN {}",
    "type": "{}",
}


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
    mac: str = ""
    peer_index: int | None = None  # a veth's peer's ifindex (in the peer's namespace)
    port: BridgePort | None = None  # set on bridge ports
    # The lower device (IFLA_LINK: a macvlan's or vlan's parent; a tunnel's
    # underlay device) by ifindex, and whether it is in another namespace.
    parent_index: int | None = None
    parent_elsewhere: bool | None = False  # None: not recorded (a bundle from before)
    # IFLA_LINK_NETNSID: the id, in this namespace, of the namespace the peer (or the
    # lower device) is in; NamespaceState.nsids says which namespace that is.
    peer_nsid: int | None = None
    # What IFLA_INFO_DATA says of the kind, as (name, value): mode, vni, port...
    info: tuple[tuple[str, str], ...] = ()
    noarp: bool = False  # IFF_NOARP: answers (and sends) no ARP
    xdp: str = ""  # an attached XDP program: "generic id 42", "native id 7" (IFLA_XDP)

    def detail(self, name: str) -> str | None:
        return next((v for k, v in self.info if k == name), None)

    def describe_kind(self, parent: str | None = None) -> str:
        """The kind in netlink's words: "macvlan, bridge mode, on lan0", "vxlan VNI 1,
        UDP port 8472, local 172.30.0.1, on ul0". ``parent``: the lower device's name."""
        words = [self.kind]
        for name, value in self.info:
            words.append(_INFO_WORDS.get(name, name + " {}").format(value))
        if parent:
            words.append(f"on {parent}")
        return ", ".join(words)


@dataclass(frozen=True)
class Rule:
    """A policy routing rule (`ip rule`)."""

    priority: int
    action: str  # lookup, blackhole, unreachable, prohibit, goto, nop
    table: int = 0
    src: str | None = None  # a network
    dst: str | None = None
    iif: str | None = None
    oif: str | None = None
    fwmark: int | None = None
    fwmask: int | None = None
    family: int = 4  # 4 or 6 (`ip -6 rule`); bundles before 2026-11-28 hold IPv4's only

    def describe(self) -> str:
        words = [f"{self.priority}:"]
        words.append(f"from {self.src}" if self.src else "from all")
        if self.dst:
            words.append(f"to {self.dst}")
        if self.iif:
            words.append(f"iif {self.iif}")
        if self.oif:
            words.append(f"oif {self.oif}")
        if self.fwmark is not None:
            mask = f"/{self.fwmark_mask:#x}" if self.fwmask not in (None, 0xFFFFFFFF) else ""
            words.append(f"fwmark {self.fwmark:#x}{mask}")
        words.append(
            f"lookup {TABLE_NAMES.get(self.table, self.table)}"
            if self.action == "lookup"
            else self.action
        )
        return " ".join(words)

    @property
    def fwmark_mask(self) -> int:
        return 0xFFFFFFFF if self.fwmask is None else self.fwmask


TABLE_NAMES = {253: "default", 254: "main", 255: "local"}


@dataclass(frozen=True)
class Neighbour:
    dst: str
    dev: str
    lladdr: str | None
    state: str  # REACHABLE STALE DELAY PROBE INCOMPLETE FAILED PERMANENT NOARP NONE

    def describe(self) -> str:
        ll = f" lladdr {self.lladdr}" if self.lladdr else ""
        return f"{self.dst} dev {self.dev}{ll} {self.state}"

    @classmethod
    def parse(cls, text: str) -> Neighbour:
        """From `describe()`'s words, or the older saved form
        ("DST lladdr MAC dev DEV state N")."""
        words = text.split()
        values = dict(zip(words[1::2], words[2::2], strict=False))
        if "state" in values:  # the older form
            return cls(words[0], values.get("dev", ""), values.get("lladdr"), values["state"])
        return cls(words[0], values.get("dev", ""), values.get("lladdr"), words[-1])


@dataclass(frozen=True)
class FdbEntry:
    """One forwarding-database entry: a bridge's (``master``: which port a MAC is
    behind) or a tunnel device's own (``dst``: the VTEP a MAC is sent to)."""

    mac: str
    dev: str
    master: str | None = None
    dst: str | None = None
    state: str = ""  # the NUD state, lower case: permanent, reachable, stale, noarp

    def describe(self) -> str:
        """As `bridge fdb` says it (and as bundles keep it)."""
        where = f"dst {self.dst} self" if self.dst else f"master {self.master}"
        return f"{self.mac} dev {self.dev} {where} {self.state}".rstrip()

    def is_for(self, mac: str) -> bool:
        return self.mac.lower() == mac.lower()

    @classmethod
    def parse(cls, text: str) -> FdbEntry:
        """From ``describe()``'s words (a bundle's)."""
        words = text.split()

        def after(word: str) -> str | None:
            return words[words.index(word) + 1] if word in words[:-1] else None

        dev, master, dst = after("dev") or "", after("master"), after("dst")
        last = words[-1] if len(words) > 3 else ""
        state = "" if last in ("self", master, dst, dev) else last
        return cls(words[0] if words else "", dev, master, dst, state)


@dataclass(frozen=True)
class Listener:
    """A listening TCP or bound UDP socket, as sock_diag reports it."""

    protocol: str  # tcp, udp
    address: str  # as bound: 0.0.0.0, ::, 127.0.0.1, fd00::2
    port: int

    @property
    def endpoint(self) -> str:
        """``127.0.0.1:9000``, ``[::]:53``."""
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"

    def describe(self) -> str:
        """As bundles keep it: ``tcp 127.0.0.1:9000``."""
        return f"{self.protocol} {self.endpoint}"

    def takes(self, address: str) -> bool:
        """Whether it takes packets to ``address``: bound to it, or to a wildcard that
        covers it. IPv6's wildcard takes IPv4 too unless the socket is IPV6_V6ONLY,
        which sock_diag's listing does not say: counted as taking it, so that no
        verdict says "nothing listens" on a guess."""
        wildcards = ("::", "*") if ":" in address else ("0.0.0.0", "::", "*")
        return self.address == address or self.address in wildcards

    @classmethod
    def parse(cls, text: str) -> Listener:
        protocol, _, endpoint = text.partition(" ")
        host, _, port = endpoint.rpartition(":")
        return cls(protocol, host.strip("[]"), int(port) if port.isdigit() else 0)


@dataclass(frozen=True)
class TcFilter:
    """A tc filter on a device's clsact hook, as netlink gives it (RTM_GETTFILTER)."""

    dev: str
    direction: str  # ingress, egress
    kind: str  # u32, matchall, bpf, flower...
    protocol: str = "all"  # the ethertype it applies to: all, ip, ipv6, arp, or hex
    pref: int = 0
    # Whether it takes every frame of its protocol (matchall; a u32 whose every key
    # has mask 0): True, False, or None where its match is not read (bpf, flower).
    every: bool | None = None
    matches: tuple[str, ...] = ()  # u32's keys: "0a000000/ff000000 at 16"
    # What it does with what it takes, in order: "drop", "pass", "redirect dev X"
    # (mirred egress), "mirror dev X", "ingress redirect dev X", "action N" (a gact
    # code without a name), "kind" for an action not read.
    actions: tuple[str, ...] = ()
    program: str = ""  # a bpf filter's program: "name id 42 direct-action"
    text: str = ""  # an older bundle's line, kept as it was

    def describe(self) -> str:
        """One line: ``veth0 ingress: u32 protocol all pref 49152 match all: redirect
        dev sink``."""
        if self.text:
            return self.text
        match = "" if self.every is None else "match all" if self.every else "match "
        match += ", ".join(self.matches) if self.every is False else ""
        words = [self.kind, f"protocol {self.protocol}", f"pref {self.pref}", self.program, match]
        said = " ".join(w for w in words if w)
        return f"{self.dev} {self.direction}: {said}" + (
            f": {', '.join(self.actions)}" if self.actions else ""
        )

    def redirects_to(self) -> str | None:
        """The device a mirred redirect sends what it takes to."""
        for action in self.actions:
            if "redirect dev " in action:
                return action.rsplit(" ", 1)[1]
        return None

    def drops(self) -> bool:
        return "drop" in self.actions

    @classmethod
    def parse(cls, text: str) -> TcFilter:
        """From an older bundle's ``"DEV ingress|egress: filter ..."`` line (tc's own
        words, what bundles before 2026-11-30 kept)."""
        dev, _, rest = text.partition(" ")
        direction = rest.split(":", 1)[0]
        words = rest.split()
        kind = next((k for k in ("u32", "matchall", "bpf", "flower") if k in words), "")
        every = True if "match 00000000/00000000" in text or kind == "matchall" else None
        actions: list[str] = []
        if (at := text.find("Redirect to device ")) >= 0:
            actions.append("redirect dev " + text[at:].split()[3].rstrip(")"))
        if " drop" in text:
            actions.append("drop")
        return cls(dev, direction, kind, every=every, actions=tuple(actions), text=text)

    @classmethod
    def from_json(cls, data: Any) -> TcFilter:
        if isinstance(data, str):
            return cls.parse(data)
        return cls(
            **{
                **data,
                "matches": tuple(data.get("matches", ())),
                "actions": tuple(data.get("actions", ())),
            }
        )


@dataclass(frozen=True)
class RouteEntry:
    dst: str  # "default" or a network
    gateway: str | None
    dev: str | None
    prefsrc: str | None
    table: int = 254
    type: str = "unicast"  # unicast local broadcast blackhole unreachable prohibit throw
    metric: int = 0
    family: int = 4  # 4 or 6 (bundles before 2026-11-28 hold IPv4 routes only)

    def describe(self) -> str:
        kind = f"{self.type} " if self.type not in ("unicast",) else ""
        via = f" via {self.gateway}" if self.gateway else ""
        table = f" table {TABLE_NAMES.get(self.table, self.table)}" if self.table != 254 else ""
        src = f" src {self.prefsrc}" if self.prefsrc else ""
        return f"{kind}{self.dst}{via}" + (f" dev {self.dev}" if self.dev else "") + table + src

    def network(self) -> IPv4Network | IPv6Network:
        if self.dst == "default":
            return IPv6Network("::/0") if self.family == 6 else IPv4Network("0.0.0.0/0")
        return IPv6Network(self.dst) if self.family == 6 else IPv4Network(self.dst)

    def holds(self, address: str) -> bool:
        """Whether ``address`` (of either family) is in this route's network."""
        ip = ip_address(address)
        return ip.version == self.family and ip in self.network()


@dataclass
class NamespaceState:
    namespace: str
    node: str
    links: list[Link] = field(default_factory=list)
    routes: list[RouteEntry] = field(default_factory=list)  # every table but local
    neighbours: list[str] = field(default_factory=list)  # Neighbour.describe(), before the run
    neighbours_after: list[str] = field(default_factory=list)  # the same, once the run ended
    route_rules: list[Rule] = field(default_factory=list)  # `ip rule`, by priority
    fdb: list[FdbEntry] = field(default_factory=list)  # bridges' and tunnel devices' FDBs
    listeners: list[Listener] = field(default_factory=list)  # listening and bound sockets
    tc: list[TcFilter] = field(default_factory=list)  # filters on clsact hooks
    sysctls: dict[str, str] = field(default_factory=dict)
    ruleset: str = ""  # nft -a list ruleset: the rules in nft's words, as reports cite them
    # nft -j -a list ruleset's objects (chains, rules' expressions, sets' elements):
    # what the model reads; empty in bundles from before 2026-11-30.
    ruleset_json: list[dict[str, Any]] = field(default_factory=list)
    legacy_tables: str = ""  # iptables-legacy tables, which nft does not list
    iptables: str = ""  # iptables-save, where iptables-nft manages tables (their comments)
    legacy_save: str = ""  # iptables-legacy-save, where legacy tables are in use
    legacy_nft: str = ""  # the same through iptables-restore-translate (nft's words)
    legacy6_save: str = ""  # ip6tables-legacy-save, where legacy IPv6 tables are in use
    legacy6_nft: str = ""  # the same through ip6tables-restore-translate
    nsids: dict[str, int] = field(default_factory=dict)  # other traced namespaces' ids here

    @property
    def has_rules(self) -> bool:
        """Whether netfilter can translate or filter here (where netfilter links go)."""
        return bool(self.ruleset.strip() or self.legacy_tables.strip())

    def link(self, name: str) -> Link | None:
        return next((link for link in self.links if link.name == name), None)

    def link_by_index(self, index: int) -> Link | None:
        return next((link for link in self.links if link.index == index), None)

    def is_bridge(self, name: str) -> bool:
        link = self.link(name)
        return link is not None and link.kind == "bridge"

    def route_for(self, dst: str) -> RouteEntry | None:
        """The longest-prefix match in the main table."""
        matching = [r for r in self.routes if r.table == 254 and r.holds(dst)]
        return max(matching, key=lambda r: r.network().prefixlen, default=None)

    def neighbour_entries(self, after: bool = False) -> list[Neighbour]:
        return [Neighbour.parse(n) for n in (self.neighbours_after if after else self.neighbours)]

    def sysctl(self, key: str, interface: str | None = None) -> str | None:
        """``key`` as net.ipv4.conf.IFNAME.KEY when ``interface`` is given."""
        if interface is not None:
            return self.sysctls.get(f"net.ipv4.conf.{interface}.{key}")
        return self.sysctls.get(key)

    def rules(self) -> Ruleset:
        """The ruleset parsed, once for the texts it is parsed from (a watch of 10,000
        flows asked 43,866 times: 5 s of parsing). Fields replaced (a fix proven on
        the state) are other objects: parsed again."""
        sources = (
            self.ruleset, self.iptables, self.ruleset_json, self.legacy_save, self.legacy_nft,
            self.legacy6_save, self.legacy6_nft,
        )  # fmt: skip
        cached = self.__dict__.get("_rules")
        if cached is not None and all(a is b for a, b in zip(cached[0], sources, strict=True)):
            return cast(Ruleset, cached[1])
        found = self._parse_rules()
        self.__dict__["_rules"] = (sources, found)
        return found

    def _parse_rules(self) -> Ruleset:
        found = parse_listing(self.ruleset, self.iptables, self.ruleset_json)
        for save, nft, family in (
            (self.legacy_save, self.legacy_nft, "ip"),
            (self.legacy6_save, self.legacy6_nft, "ip6"),
        ):
            if save:
                legacy = parse_legacy(nft, save, family)
                found = Ruleset(
                    found.chains + legacy.chains, found.rules + legacy.rules, found.sets
                )
        return found

    def has_default(self, version: int) -> bool:
        """Whether the main table has a default route of the family."""
        return any(
            r.dst == "default" and r.family == version and r.table == 254 for r in self.routes
        )

    def owns(self, address: str) -> bool:
        return any(a.split("/")[0] == address for link in self.links for a in link.addresses)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["fdb"] = [entry.describe() for entry in self.fdb]  # as bundles always kept it
        data["listeners"] = [listener.describe() for listener in self.listeners]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NamespaceState:
        return cls(
            namespace=data["namespace"],
            node=data["node"],
            links=[_link(link) for link in data["links"]],
            routes=[RouteEntry(**r) for r in data["routes"]],
            neighbours=list(data.get("neighbours", [])),
            neighbours_after=list(data.get("neighbours_after", [])),
            route_rules=[Rule(**r) for r in data.get("route_rules", [])],
            fdb=[FdbEntry.parse(str(entry)) for entry in data.get("fdb", [])],
            listeners=[Listener.parse(str(s)) for s in data.get("listeners", [])],
            tc=[TcFilter.from_json(f) for f in data.get("tc", [])],
            sysctls=dict(data["sysctls"]),
            ruleset=data["ruleset"],
            ruleset_json=list(data.get("ruleset_json", [])),
            legacy_tables=data.get("legacy_tables", ""),
            iptables=data.get("iptables", ""),
            legacy_save=data.get("legacy_save", ""),
            legacy_nft=data.get("legacy_nft", ""),
            legacy6_save=data.get("legacy6_save", ""),
            legacy6_nft=data.get("legacy6_nft", ""),
            nsids={str(k): int(v) for k, v in data.get("nsids", {}).items()},
        )


def _link(data: dict[str, Any]) -> Link:
    port = data.get("port")
    return Link(
        **{
            **data,
            "addresses": tuple(data["addresses"]),
            "port": BridgePort(**port) if port else None,
            "parent_elsewhere": data.get("parent_elsewhere"),
            "info": tuple((str(k), str(v)) for k, v in data.get("info", ())),
        }
    )


def tunnel_ports(states: Iterable[NamespaceState]) -> list[tuple[int, str]]:
    """(UDP port, link kind) of every tunnel device that listens on a port (VXLAN,
    Geneve): the probes look inside the datagrams to those ports."""
    return [
        (int(port), link.kind)
        for state in states
        for link in state.links
        if (port := link.detail("port")) is not None and port.isdigit()
    ]
