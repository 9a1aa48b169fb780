"""Observing a namespace: reading its state, never changing it.

Links, routes, neighbours, sysctls, the nftables ruleset, legacy iptables
tables and conntrack entries, read through netlink and the usual tools from
inside the namespace. Everything here only reads.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterable, Sequence

from pathtrace.errors import EnvironmentProblem
from pathtrace.model.ruleset import iptables_made
from pathtrace.model.state import SYSCTLS, Link, NamespaceState, RouteEntry
from pathtrace.system import netns


def state(namespace: str, node: str, listing: str | None = None) -> NamespaceState:
    """What the namespace holds now: links, routes, neighbours, sysctls, rules
    (``listing``: its nft listing, when discovery has just read it)."""
    state = NamespaceState(namespace, node)
    ipr = netns.iproute(namespace)
    try:
        names = {}
        raw_links = ipr.get_links()
        for link in raw_links:
            names[link["index"]] = link.get("ifname")
        by_index: dict[int, list[str]] = {}  # one dump, not a request per link
        for a in ipr.get_addr(family=socket.AF_INET):
            by_index.setdefault(a["index"], []).append(f"{a.get('address')}/{a['prefixlen']}")
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
                )
            )
        for route in ipr.get_routes(family=socket.AF_INET, table=254):
            dst = route.get("dst")
            state.routes.append(
                RouteEntry(
                    dst=f"{dst}/{route['dst_len']}" if dst else "default",
                    gateway=route.get("gateway"),
                    dev=names.get(route.get("oif")),
                    prefsrc=route.get("prefsrc"),
                )
            )
        for neigh in ipr.get_neighbours(family=socket.AF_INET):
            state.neighbours.append(
                f"{neigh.get('dst')} lladdr {neigh.get('lladdr')} dev "
                f"{names.get(neigh['ifindex'])} state {neigh['state']}"
            )
    finally:
        ipr.close()
    for key in SYSCTLS:
        value = netns.read_sysctl(namespace, key)
        if value is not None:
            state.sysctls[key] = value
    state.ruleset = listing if listing is not None else ruleset(namespace)
    if iptables_made(state.ruleset):
        state.iptables = iptables_save(namespace)
    state.legacy_tables = legacy_tables(namespace)
    return state


def legacy_tables(namespace: str) -> str:
    """iptables-legacy tables in use (x_tables, which nft does not list)."""
    with netns.entered(namespace):
        try:
            with open("/proc/thread-self/net/ip_tables_names") as f:
                return f.read()
        except OSError:
            return ""


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


class ConntrackListing:
    """`conntrack -L` in each namespace, started now, side by side (~10 ms apiece),
    read later: a run starts it while it winds down its sockets and probes."""

    def __init__(self, namespaces: Iterable[str]) -> None:
        self.listings: dict[str, subprocess.Popen[str]] = {}
        try:
            for ns in namespaces:
                self.listings[ns] = subprocess.Popen(
                    netns.command(ns, ["conntrack", "-L"]),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    text=True,
                )
        except FileNotFoundError:
            pass  # no conntrack tool: the entries are left out, the run stands

    def entries(self, addresses: set[str]) -> dict[str, list[str]]:
        """Each namespace's entries that involve any of ``addresses``."""
        found: dict[str, list[str]] = {}
        for ns, proc in self.listings.items():
            out, _ = proc.communicate(timeout=30)
            lines = [line for line in out.splitlines() if any(f"={a} " in line for a in addresses)]
            if lines:
                found[ns] = lines
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


def iptables_save(namespace: str) -> str:
    """The iptables-nft rules in iptables' own words (comments included: nft
    does not print them), or '' where the tool is missing."""
    try:
        result = netns.run(namespace, ["iptables-nft-save"], check=False)
    except EnvironmentProblem:
        return ""
    return result.stdout if result.returncode == 0 else ""
