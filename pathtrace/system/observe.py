"""Observing a namespace: reading its state, never changing it.

Links, routes, neighbours, sysctls, the nftables ruleset, legacy iptables
tables and conntrack entries, read through netlink and the usual tools from
inside the namespace. Everything here only reads.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import Iterable, Sequence
from typing import Any

from pathtrace.errors import EnvironmentProblem
from pathtrace.model.conntrack import ConntrackEntry
from pathtrace.model.ruleset import iptables_made, same_rules
from pathtrace.model.state import (
    INTERFACE_SYSCTLS,
    SYSCTLS,
    BridgePort,
    FdbEntry,
    Link,
    Listener,
    NamespaceState,
    Neighbour,
    RouteEntry,
    Rule,
)
from pathtrace.system import conntrack, netns
from pathtrace.system.rtnl import Rtnl
from pathtrace.system.tcfilters import clsact_filters

# rtnetlink's numbers, as the kernel's headers give them.
ROUTE_TYPES = {
    1: "unicast",
    2: "local",
    3: "broadcast",
    4: "anycast",
    5: "multicast",
    6: "blackhole",
    7: "unreachable",
    8: "prohibit",
    9: "throw",
    10: "nat",
}
RULE_ACTIONS = {1: "lookup", 2: "goto", 3: "nop", 6: "blackhole", 7: "unreachable", 8: "prohibit"}
NUD = {
    0x01: "INCOMPLETE",
    0x02: "REACHABLE",
    0x04: "STALE",
    0x08: "DELAY",
    0x10: "PROBE",
    0x20: "FAILED",
    0x40: "NOARP",
    0x80: "PERMANENT",
}
PORT_STATES = {0: "disabled", 1: "listening", 2: "learning", 3: "forwarding", 4: "blocking"}
NTF_SELF = 0x02


def state(
    namespace: str, node: str, listing: str | None = None, others: Sequence[str] = ()
) -> NamespaceState:
    """What the namespace holds now: links, routes, neighbours, sysctls, rules
    (``listing``: its nft listing, when discovery has just read it)."""
    state = NamespaceState(namespace, node)
    ipr = netns.rtnl(namespace)
    try:
        names = {}
        raw_links = ipr.get_links()
        for link in raw_links:
            names[link["index"]] = link.get("ifname")
        by_index: dict[int, list[str]] = {}  # one dump, not a request per link
        for a in ipr.get_addr():
            address = str(a.get("address"))
            if a["family"] not in (socket.AF_INET, socket.AF_INET6) or address.startswith("fe80:"):
                continue  # link-local IPv6: every link has one; no path is addressed to it
            by_index.setdefault(a["index"], []).append(f"{address}/{a['prefixlen']}")
        for link in raw_links:
            addresses = tuple(by_index.get(link["index"], ()))
            kind = link.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND") or (
                "loopback" if link.get("ifname") == "lo" else "other"
            )
            state.links.append(
                Link(
                    name=link.get("ifname"),
                    index=link["index"],
                    kind=str(kind),
                    up=bool(link["flags"] & 1),
                    carrier=bool(link.get("carrier")),
                    mtu=int(link.get("mtu") or 0),
                    master=names.get(link.get("master")) if link.get("master") else None,
                    addresses=addresses,
                    mac=str(link.get("address") or ""),
                    peer_index=link.get("link") if kind == "veth" else None,
                    port=_bridge_port(link),
                    parent_index=_parent_index(link, str(kind)),
                    parent_elsewhere=link.get("IFLA_LINK_NETNSID") is not None,
                    peer_nsid=link.get("IFLA_LINK_NETNSID"),
                    info=_info(link, str(kind)),
                    noarp=bool(link["flags"] & 0x80),
                    xdp=_xdp(link),
                )
            )
        routes = [
            *ipr.get_routes(family=socket.AF_INET),
            *ipr.get_routes(family=socket.AF_INET6),
        ]
        for route in routes:
            table = route.get("RTA_TABLE") or route["table"]
            if table == 255:
                continue  # the local table: owns() answers for it
            dst = route.get("dst")
            if route["type"] == 1 and route["family"] == socket.AF_INET6 and not route["dst_len"]:
                dst = None  # ::/0
            state.routes.append(
                RouteEntry(
                    dst=f"{dst}/{route['dst_len']}" if dst else "default",
                    gateway=route.get("gateway"),
                    dev=names.get(route.get("oif")),
                    prefsrc=route.get("prefsrc"),
                    table=int(table),
                    type=ROUTE_TYPES.get(route["type"], str(route["type"])),
                    metric=int(route.get("priority") or 0),
                    family=6 if route["family"] == socket.AF_INET6 else 4,
                )
            )
        rules = [
            *ipr.get_rules(family=socket.AF_INET),
            *ipr.get_rules(family=socket.AF_INET6),
        ]
        for rule in rules:
            src, dst = rule.get("FRA_SRC"), rule.get("FRA_DST")
            state.route_rules.append(
                Rule(
                    priority=int(rule.get("FRA_PRIORITY") or 0),
                    action=RULE_ACTIONS.get(rule["action"], str(rule["action"])),
                    table=int(rule.get("FRA_TABLE") or rule["table"]),
                    src=f"{src}/{rule['src_len']}" if src else None,
                    dst=f"{dst}/{rule['dst_len']}" if dst else None,
                    iif=rule.get("FRA_IIFNAME"),
                    oif=rule.get("FRA_OIFNAME"),
                    fwmark=rule.get("FRA_FWMARK"),
                    fwmask=rule.get("FRA_FWMASK"),
                    family=6 if rule["family"] == socket.AF_INET6 else 4,
                )
            )
        state.neighbours = neighbours(ipr, names)
        tunnels = {link.index for link in state.links if link.kind in ("vxlan", "geneve")}
        if tunnels:
            # A VXLAN device's own FDB: which VTEP (dst) each inner MAC goes to.
            for entry in ipr.get_neighbours(family=socket.AF_BRIDGE):
                if entry["ifindex"] in tunnels and entry.get("NDA_DST"):
                    flags = _nud(entry["state"]).lower()
                    state.fdb.append(
                        FdbEntry(
                            str(entry.get("NDA_LLADDR")),
                            str(names.get(entry["ifindex"])),
                            dst=str(entry.get("NDA_DST")),
                            state=flags,
                        )
                    )
        if any(link.kind == "bridge" for link in state.links):
            for entry in ipr.get_neighbours(family=socket.AF_BRIDGE):
                master = entry.get("NDA_MASTER")
                if master is None or entry["flags"] & NTF_SELF:
                    continue  # a device's own address list, not the bridge's table
                flags = _nud(entry["state"]).lower()
                state.fdb.append(
                    FdbEntry(
                        str(entry.get("NDA_LLADDR")),
                        str(names.get(entry["ifindex"])),
                        master=str(names.get(master)),
                        state=flags,
                    )
                )
        clsact = {i: names[i] for i, kind in ipr.qdisc_kinds() if kind == "clsact" and i in names}
        state.tc = clsact_filters(ipr, clsact, names)
        if any(link.peer_nsid is not None for link in state.links):
            state.nsids = _nsids(ipr, namespace, others)
    finally:
        ipr.close()
    keys = [*SYSCTLS] + [
        f"net.ipv4.conf.{link.name}.{key}" for link in state.links for key in INTERFACE_SYSCTLS
    ]
    state.sysctls = netns.read_sysctls(namespace, keys)
    state.listeners = listeners(namespace)
    state.ruleset, state.ruleset_json = ruleset_both(namespace, listing)
    if iptables_made(state.ruleset):
        state.iptables = iptables_save(namespace)
    state.legacy_tables = legacy_tables(namespace)
    if any(not t.startswith("ip6 ") for t in state.legacy_tables.splitlines()):
        state.legacy_save, state.legacy_nft = legacy_rules(namespace)
    if "ip6 " in state.legacy_tables:
        state.legacy6_save, state.legacy6_nft = legacy_rules(namespace, "ip6")
    return state


def _nsids(ipr: Any, namespace: str, others: Sequence[str]) -> dict[str, int]:
    """The id this namespace gives each of ``others`` (RTM_GETNSID by file): what
    resolves a veth's IFLA_LINK_NETNSID to the namespace its peer is in, where
    ifindexes alone repeat across namespaces."""
    found: dict[str, int] = {}
    for other in others:
        if other == namespace:
            continue
        try:
            fd = os.open(netns.path(other), os.O_RDONLY)
        except OSError:
            continue
        try:
            nsid = (ipr.get_netnsid(fd=fd) or {}).get("nsid")
        except OSError:  # an id not known is no id
            nsid = None
        finally:
            os.close(fd)
        if isinstance(nsid, int) and 0 <= nsid < 1 << 31:  # not -1 (none assigned) as u32
            found[other] = nsid
    return found


def neighbours(ipr: Rtnl, names: dict[int, str]) -> list[str]:
    """The ARP table, as Neighbour.describe() words."""
    return [
        Neighbour(
            n.get("dst"), names.get(n["ifindex"], "?"), n.get("lladdr"), _nud(n["state"])
        ).describe()
        for family in (socket.AF_INET, socket.AF_INET6)
        for n in ipr.get_neighbours(family=family)
        if not str(n.get("dst", "")).startswith(("fe80:", "ff"))
    ]


def neighbours_now(namespace: str) -> list[str]:
    """The ARP table now (read again once a run ends: what resolution came to)."""
    ipr = netns.rtnl(namespace)
    try:
        names = {link["index"]: link.get("ifname") for link in ipr.get_links()}
        return neighbours(ipr, names)
    finally:
        ipr.close()


def _nud(value: int) -> str:
    return "|".join(name for bit, name in NUD.items() if value & bit) or "NONE"


# The IFLA_INFO_DATA attributes worth saying, per kind: (attribute, our name).
_INFO = {
    "macvlan": (("IFLA_MACVLAN_MODE", "mode"),),
    "macvtap": (("IFLA_MACVLAN_MODE", "mode"),),
    "ipvlan": (("IFLA_IPVLAN_MODE", "mode"),),
    "vlan": (("IFLA_VLAN_ID", "vlan"),),
    "vxlan": (
        ("IFLA_VXLAN_ID", "vni"),
        ("IFLA_VXLAN_PORT", "port"),
        ("IFLA_VXLAN_LOCAL", "local"),
        ("IFLA_VXLAN_LOCAL6", "local"),
        ("IFLA_VXLAN_GROUP", "remote"),
        ("IFLA_VXLAN_GROUP6", "remote"),
    ),
    "geneve": (
        ("IFLA_GENEVE_ID", "vni"),
        ("IFLA_GENEVE_PORT", "port"),
        ("IFLA_GENEVE_REMOTE", "remote"),
        ("IFLA_GENEVE_REMOTE6", "remote"),
    ),
    "gre": (("IFLA_GRE_LOCAL", "local"), ("IFLA_GRE_REMOTE", "remote")),
    "gretap": (("IFLA_GRE_LOCAL", "local"), ("IFLA_GRE_REMOTE", "remote")),
    "ipip": (("IFLA_IPTUN_LOCAL", "local"), ("IFLA_IPTUN_REMOTE", "remote")),
    "sit": (("IFLA_IPTUN_LOCAL", "local"), ("IFLA_IPTUN_REMOTE", "remote")),
    "ip6tnl": (("IFLA_IPTUN_LOCAL", "local"), ("IFLA_IPTUN_REMOTE", "remote")),
    "bond": (("IFLA_BOND_MODE", "mode"),),
    "tun": (("IFLA_TUN_TYPE", "type"),),
}
_UNSET = {"0.0.0.0", "::", "0", "None", ""}


def _info(link: Any, kind: str) -> tuple[tuple[str, str], ...]:
    """What IFLA_INFO_DATA says of a link's kind (see ``_INFO``); nothing guessed."""
    wanted = _INFO.get(kind, ())
    data = link.get_nested("IFLA_LINKINFO", "IFLA_INFO_DATA") if wanted else None
    found: list[tuple[str, str]] = []
    for attribute, name in wanted:
        value = data.get(attribute) if data is not None else None
        if value is None or str(value) in _UNSET or any(n == name for n, _ in found):
            continue
        if kind == "ipvlan" and name == "mode":
            value = {0: "l2", 1: "l3", 2: "l3s"}.get(int(value), value)
        if kind == "tun" and name == "type":
            value = {1: "tun", 2: "tap"}.get(int(value), value)
        found.append((name, str(value)))
    return tuple(found)


# IFLA_XDP_ATTACHED, as a number or as pyroute2 names it.
_XDP_MODES: dict[object, str] = {
    1: "native", 2: "generic", 3: "offloaded", 4: "multi",
    "xdpdrv": "native", "xdp": "native", "xdpgeneric": "generic", "xdpoffload": "offloaded",
    "xdpmulti": "multi",
}  # fmt: skip


def _xdp(link: Any) -> str:
    """The XDP program attached to a link, as IFLA_XDP says: mode and program id."""
    mode = link.get_nested("IFLA_XDP", "IFLA_XDP_ATTACHED")
    if not mode:
        return ""
    prog = link.get_nested("IFLA_XDP", "IFLA_XDP_PROG_ID")
    return f"{_XDP_MODES.get(mode, f'mode {mode}')} id {prog}"


def _parent_index(link: Any, kind: str) -> int | None:
    """The lower device's ifindex: IFLA_LINK (not for a veth, where it is the peer),
    or a tunnel's underlay device."""
    if kind == "vxlan":
        data = link.get_nested("IFLA_LINKINFO", "IFLA_INFO_DATA")
        index = data.get("IFLA_VXLAN_LINK") if data is not None else None
        return int(index) if index else None
    if kind in ("veth", "loopback", "other") or not link.get("link"):
        return None
    return int(link.get("link"))


def _bridge_port(link: object) -> BridgePort | None:
    get = link.get_nested  # type: ignore[attr-defined]
    if get("IFLA_LINKINFO", "IFLA_INFO_SLAVE_KIND") != "bridge":
        return None
    data = get("IFLA_LINKINFO", "IFLA_INFO_SLAVE_DATA")
    if not data:
        return None
    return BridgePort(
        state=PORT_STATES.get(data.get("IFLA_BRPORT_STATE"), "?"),
        learning=bool(data.get("IFLA_BRPORT_LEARNING", 1)),
        flood=bool(data.get("IFLA_BRPORT_UNICAST_FLOOD", 1)),
        bcast_flood=bool(data.get("IFLA_BRPORT_BCAST_FLOOD", 1)),
        isolated=bool(data.get("IFLA_BRPORT_ISOLATED", 0)),
    )


def listeners(namespace: str) -> list[Listener]:
    """Listening TCP and bound UDP sockets (tcp 127.0.0.1:9000, udp [::]:53).

    Asked of sock_diag, which walks the namespace's listening sockets only:
    /proc/net/tcp walks the whole machine's connection table (~5 ms a file here)."""
    found = []
    sock = netns.sock_diag(namespace)
    try:
        for family in (socket.AF_INET, socket.AF_INET6):
            for protocol, name, state in (
                (socket.IPPROTO_TCP, "tcp", _TCP_LISTEN),
                (socket.IPPROTO_UDP, "udp", _UDP_BOUND),
            ):
                for address, port in sock.sockets(family, protocol, 1 << state):
                    found.append(Listener(name, address, port))
    finally:
        sock.close()
    return sorted(set(found), key=Listener.describe)


_TCP_LISTEN, _UDP_BOUND = 10, 7  # the socket states sock_diag reports them in


def legacy_tables(namespace: str) -> str:
    """iptables-legacy tables in use (x_tables, which nft does not list)."""
    found = ""
    with netns.entered(namespace):
        for family, name in (("", "ip_tables_names"), ("ip6 ", "ip6_tables_names")):
            try:
                with open(f"/proc/thread-self/net/{name}") as f:
                    found += "".join(f"{family}{table}\n" for table in f.read().split())
            except OSError:
                pass  # that family's x_tables is not loaded: no tables
    return found


def ruleset(namespace: str, strict: bool = False) -> str:
    """``nft -a list ruleset`` inside the namespace ('' when nft cannot list it,
    unless ``strict``)."""
    result = netns.run(namespace, ["nft", "-a", "list", "ruleset"], check=False)
    if result.returncode == 0:
        # nft says on stderr which tables iptables-nft manages: kept with the listing.
        warnings = [w for w in result.stderr.splitlines() if w.startswith("# Warning: table")]
        return "".join(f"{w}\n" for w in warnings) + result.stdout
    if strict:
        raise EnvironmentProblem(f"cannot list the ruleset of {namespace}: {result.stderr.strip()}")
    return ""


def ruleset_json(namespace: str) -> list[dict[str, Any]]:
    """``nft -j -a list ruleset``'s objects ([] when nft cannot list it)."""
    result = netns.run(namespace, ["nft", "-j", "-a", "list", "ruleset"], check=False)
    if result.returncode != 0:
        return []
    try:
        objects = json.loads(result.stdout).get("nftables", [])
    except (ValueError, AttributeError):
        return []
    return [o for o in objects if isinstance(o, dict) and "metainfo" not in o]


def ruleset_both(namespace: str, listing: str | None = None) -> tuple[str, list[dict[str, Any]]]:
    """The ruleset in nft's words and as JSON, holding the same rules: two listings
    are two reads, and a rule added between them is read again (``listing``: the
    words, when discovery has just read them)."""
    words = listing if listing is not None else ruleset(namespace)
    if not words.strip():
        return words, []  # no tables: nothing for the JSON to add
    objects = ruleset_json(namespace)
    for _ in range(3):
        if not objects or same_rules(words, objects):
            return words, objects
        words, objects = ruleset(namespace), ruleset_json(namespace)
    # The rules keep changing: the words alone, as bundles before the JSON were read.
    return words, objects if same_rules(words, objects) else []


class ConntrackListing:
    """Each namespace's conntrack table, read from netlink when made (a run makes it
    as it winds down its sockets and probes), filtered later."""

    def __init__(self, namespaces: Iterable[str]) -> None:
        self.tables: dict[str, list[ConntrackEntry]] = {}
        for ns in namespaces:
            try:
                self.tables[ns] = conntrack.entries(ns)
            except OSError:
                continue  # the namespace went, or netlink refused: the run stands

    def entries(self, addresses: set[str]) -> dict[str, list[ConntrackEntry]]:
        """Each namespace's entries that involve any of ``addresses``."""
        found: dict[str, list[ConntrackEntry]] = {}
        for ns, table in self.tables.items():
            kept = [e for e in table if any(e.involves(a) for a in addresses)]
            if kept:
                found[ns] = kept
        return found


def with_rules(namespaces: Sequence[str]) -> list[str]:
    """Those of ``namespaces`` with netfilter rules (nftables, or iptables-legacy).

    The nft listings run side by side: one process each, ~7 ms apiece."""
    legacy = {n for n in namespaces if legacy_tables(n).strip()}
    listings = {
        n: subprocess.Popen(
            netns.command(n, ["nft", "list", "tables"]),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for n in namespaces
        if n not in legacy
    }
    found = set(legacy)
    for n, proc in listings.items():
        out, _ = proc.communicate(timeout=30)
        if proc.returncode != 0 or out.strip():
            found.add(n)
    return [n for n in namespaces if n in found]


def legacy_rules(namespace: str, family: str = "ip") -> tuple[str, str]:
    """iptables-legacy-save (ip6tables-legacy-save for ``family`` ip6) in the
    namespace, and the same in nft's words (the restore-translate tool, which reads
    text only); '' for what is missing."""
    tool = "ip6tables" if family == "ip6" else "iptables"
    try:
        save = netns.run(namespace, [f"{tool}-legacy-save"], check=False).stdout
    except EnvironmentProblem:
        return "", ""
    try:
        translated = subprocess.run(
            [f"{tool}-restore-translate", "-f", "/dev/stdin"],
            input=save,
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        translated = ""
    return save, translated


def iptables_save(namespace: str) -> str:
    """The iptables-nft rules in iptables' own words (comments included: nft
    does not print them), or '' where the tool is missing."""
    try:
        result = netns.run(namespace, ["iptables-nft-save"], check=False)
    except EnvironmentProblem:
        return ""
    return result.stdout if result.returncode == 0 else ""
