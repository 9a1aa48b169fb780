"""`lab up` and `lab down`: make the kernel match the description, or remove it all.

``up`` is convergent: it reads what is there and changes only what differs, so a
second ``up`` changes nothing, and an ``up`` after a crash finishes the job.
Everything is done through netlink sockets opened inside the lab namespaces, so
no step can touch the root namespace.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import ip_address, ip_network
from pathlib import Path
from typing import Any

from pathtrace.errors import ConflictError, TopologyError
from pathtrace.lab import DEFAULT_PREFIX, firewall, lock, record
from pathtrace.lab.topology import Interface, Node, Route, Topology, reference_text
from pathtrace.model.ruleset import Ruleset
from pathtrace.system import netns, privileges

# IPv6 with static addresses: no duplicate address detection, no router
# advertisements or solicitations, no SLAAC (RS and DAD would be noise in every
# trace, and DAD holds a fresh address "tentative" for a second). Link-local
# addresses stay: MLD reports need one as their source, or a bridge's multicast
# snooping ignores them and stops passing neighbour solicitations to the port.
# Set before any link is made, so every interface inherits them from `default`.
BASELINE_SYSCTLS = {
    f"net.ipv6.conf.{scope}.{key}": value
    for scope in ("all", "default")
    for key, value in (
        ("disable_ipv6", "0"),
        ("accept_dad", "0"),
        ("accept_ra", "0"),
        ("autoconf", "0"),
        ("router_solicitations", "0"),
    )
}

Progress = Callable[[str], None]
DEFAULT_MTU = 1500  # a veth's, unless the description says otherwise


@dataclass
class UpResult:
    created_namespaces: list[str] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)


@dataclass
class DownResult:
    removed: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _quiet(_: str) -> None:
    pass


def up(
    topology: Topology, topology_text: str | None = None, progress: Progress = _quiet
) -> UpResult:
    """Converges the lab to ``topology`` (idempotent), holding the lab's lock."""
    privileges.require("CAP_SYS_ADMIN", "CAP_NET_ADMIN", doing="pathtrace lab up")
    topology.require_known_sysctls()  # before anything is made
    with lock.held(topology.prefix, exclusive=True, doing="lab up"):
        return _up(topology, topology_text, progress)


def _up(topology: Topology, topology_text: str | None, progress: Progress) -> UpResult:
    text = topology_text if topology_text is not None else reference_text()
    wanted = [topology.namespace(n) for n in topology.nodes]
    previous = record.read_record(topology.prefix)
    record.require_separate(wanted)  # fail closed, before the first change
    _check_conflicts(topology, wanted, previous, text)

    result = UpResult()
    record.write_record(record.LabRecord(topology.prefix, topology.source, text, tuple(wanted)))
    sockets: dict[str, Any] = {}
    try:
        for node in topology.nodes.values():
            ns = topology.namespace(node.name)
            if netns.exists(ns) and record.mark_of(ns) is not None:
                sockets[node.name] = netns.iproute(ns)
            else:
                netns.remove(ns)  # a half-made one from a killed `up`
                progress(f"creating namespace {ns}")
                sockets[node.name] = netns.create(ns)
                result.created_namespaces.append(ns)
            netns.require_not_host(ns)  # the socket was opened in it: check before marking
            record.set_mark(sockets[node.name], topology.prefix)
            for key, value in BASELINE_SYSCTLS.items():
                _ensure_sysctl(ns, key, value, result)
        record.require_separate(wanted)
        _Converger(topology, sockets, result, progress).run()
    finally:
        for ipr in sockets.values():
            ipr.close()
    for node in topology.nodes.values():
        ns = topology.namespace(node.name)
        for key, value in node.sysctls.items():
            _ensure_sysctl(ns, key, value, result)
        fresh = ns in result.created_namespaces
        if fresh and not node.rules and not node.policies:
            continue  # a new namespace has no rules, and none are wanted
        if fresh or _firewall_differs(node, firewall.read(ns)):
            progress(f"loading the firewall of {node.name}")
            firewall.apply(ns, firewall.render(node))
            result.changes.append(f"{node.name}: firewall loaded")
    _ensure_services(
        {topology.namespace(n.name): n.services for n in topology.nodes.values()}, result
    )
    if result.changes:
        # Forget what the broken lab taught the routing caches (a learned path
        # MTU outlives the MTU that caused it).
        for name in topology.nodes:
            netns.write_sysctl(topology.namespace(name), "net.ipv4.route.flush", "1")
    return result


RESPONDER = str(Path(__file__).with_name("responder.py"))


def responders(namespace: str) -> dict[int, tuple[str, ...]]:
    """Our responder processes living in ``namespace``: pid -> the ports it serves."""
    found = {}
    for pid in netns.holders(namespace):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = [a.decode() for a in f.read().split(b"\0") if a]
        except OSError:
            continue
        script = next(
            (
                i
                for i, a in enumerate(argv)
                if a.endswith("lab/responder.py") or a == "pathtrace.lab.responder"
            ),
            None,
        )
        if script is not None:
            found[pid] = tuple(argv[script + 1 :])
    return found


def _ensure_services(wanted: dict[str, tuple[str, ...]], result: UpResult) -> None:
    """Each namespace's responder serving exactly its services; all started at once."""
    import shutil
    import sys

    waiting = []
    for ns, services in wanted.items():
        running = responders(ns)
        if services and tuple(services) in running.values():
            continue
        for pid in running:  # serving something else: replace it
            _end(pid)
        if not services:
            continue
        # A daemon, not a child to wait for: its own session, found again by
        # `down` through its namespace and command line.
        read_end, write_end = os.pipe()
        argv = netns.command(ns, [sys.executable, "-I", "-S", RESPONDER, *services])
        try:
            os.posix_spawn(
                shutil.which(argv[0]) or argv[0],
                argv,
                os.environ,
                setsid=True,
                file_actions=[
                    (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                    (os.POSIX_SPAWN_DUP2, write_end, 1),
                    (os.POSIX_SPAWN_DUP2, write_end, 2),
                    (os.POSIX_SPAWN_CLOSE, read_end),
                ],
            )
        finally:
            os.close(write_end)
        waiting.append((ns, services, read_end))
    for ns, services, read_end in waiting:
        with os.fdopen(read_end) as said:
            first = said.readline().strip()
            rest = [] if first == "ready" else [first, *said.read().splitlines()]
        if first != "ready":
            lines = [line for line in rest if line.strip()]
            raise ConflictError(
                f"the lab's services {' '.join(services)} did not start in "
                f"{ns}: " + (lines[-1] if lines else "no word from them")
            )
        result.changes.append(f"{ns}: services {' '.join(services)}")


def _end(pid: int) -> None:
    import signal
    import time

    try:
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            try:
                if os.waitpid(pid, os.WNOHANG)[0] == pid:  # our own child: reap it
                    return
            except ChildProcessError:
                pass
            os.kill(pid, 0)
            time.sleep(0.01)
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _check_conflicts(
    topology: Topology, wanted: list[str], previous: record.LabRecord | None, text: str
) -> None:
    if previous is not None and previous.topology_text != text:
        alive = [ns for ns in previous.namespaces if netns.exists(ns)]
        if alive:
            raise ConflictError(
                f"a lab with prefix {topology.prefix!r} is up from another topology "
                f"({previous.source}); run `pathtrace lab down` first"
            )
    for ns in wanted:
        if netns.exists(ns) and not record.is_ours(ns, topology.prefix, previous):
            raise ConflictError(
                f"namespace {ns} exists and was not made by pathtrace; remove it "
                "(ip netns delete) or choose another prefix in the topology file"
            )


def _ensure_sysctl(ns: str, key: str, value: str, result: UpResult) -> None:
    if netns.read_sysctl(ns, key) != value:
        try:
            netns.write_sysctl(ns, key, value)
        except OSError as error:  # EINVAL: a value the kernel does not take
            raise TopologyError(
                f"sysctls.{key}",
                f"the kernel refused {value!r} in {ns} ({error.strerror}); "
                "`pathtrace lab down` removes what was made",
            ) from None
        result.changes.append(f"{ns}: {key}={value}")


def _firewall_differs(node: Node, live: Ruleset) -> bool:
    wanted_chains = firewall.used_chains(node)
    for family, table, chain in wanted_chains:
        found = live.chain(table, chain, family)
        policy = node.policies.get((table, chain), "accept") if family == "ip" else "accept"
        if found is None or found.policy != policy:
            return True
    names = {(r.family, r.table, r.chain, r.name) for r in node.rules}
    live_names = {(r.family, r.table, r.chain, r.comment) for r in live.rules}
    return names != live_names or len(live.chains) != len(wanted_chains)


class _Converger:
    """Links, addresses and routes of every node, made to match the description."""

    def __init__(
        self, topology: Topology, sockets: dict[str, Any], result: UpResult, progress: Progress
    ) -> None:
        self.topology = topology
        self.sockets = sockets
        self.result = result
        self.progress = progress
        self.links: dict[str, dict[str, Any]] = {}
        # Namespaces made by this run hold no addresses or routes yet: no need to ask.
        self.fresh = {topology.node_of_namespace(ns) for ns in result.created_namespaces}

    def run(self) -> None:
        # Links are deleted and changed only in namespaces this lab made and marked:
        # asked through the very sockets that will change them (their first dump).
        for name in self.topology.nodes:
            lo = self.link(name, "lo")
            if lo is None or lo.get("ifalias") != record.MARK + self.topology.prefix:
                record.unmarked(self.topology.namespace(name), self.topology.prefix)
        for node in self.topology.nodes.values():
            for iface in node.interfaces.values():
                if iface.kind == "bridge":
                    self.ensure_bridge(iface)
        for a, b in self.topology.veth_pairs():
            self.ensure_veth_pair(a, b)
        for node in self.topology.nodes.values():
            for iface in node.interfaces.values():
                self.ensure_settings(iface)
            self.ensure_routes(node)

    def link(self, node: str, name: str) -> Any | None:
        """The link as last dumped; one dump per node until something changes."""
        if node not in self.links:
            self.links[node] = {link.get("ifname"): link for link in self.sockets[node].get_links()}
        return self.links[node].get(name)

    def changed(self, *nodes: str) -> None:
        for node in nodes:
            self.links.pop(node, None)

    def ensure_bridge(self, iface: Interface) -> None:
        ipr = self.sockets[iface.node]
        existing = self.link(iface.node, iface.name)
        if existing is not None and _kind(existing) == "bridge":
            return
        if existing is not None:
            ipr.link("del", index=existing["index"])
        self.progress(f"creating bridge {iface.label}")
        ipr.link("add", ifname=iface.name, kind="bridge")
        self.changed(iface.node)
        self.result.changes.append(f"{iface.label}: bridge created")

    def ensure_veth_pair(self, a: Interface, b: Interface) -> None:
        la, lb = self.link(a.node, a.name), self.link(b.node, b.name)
        paired = (
            la is not None
            and lb is not None
            and _kind(la) == _kind(lb) == "veth"
            and la.get("link") == lb["index"]
            and lb.get("link") == la["index"]
        )
        if paired:
            return
        for end, existing in ((a, la), (b, lb)):
            if existing is not None:
                self.sockets[end.node].link("del", index=existing["index"])
        self.progress(f"creating veth pair {a.label} <-> {b.label}")
        fd = os.open(netns.path(self.topology.namespace(b.node)), os.O_RDONLY)
        try:
            self.sockets[a.node].link(
                "add", ifname=a.name, kind="veth", peer={"ifname": b.name, "net_ns_fd": fd}
            )
        finally:
            os.close(fd)
        self.changed(a.node, b.node)
        self.result.changes.append(f"{a.label} <-> {b.label}: veth pair created")

    def ensure_settings(self, iface: Interface) -> None:
        ipr = self.sockets[iface.node]
        link = self.link(iface.node, iface.name)
        assert link is not None, iface.label
        index = link["index"]
        changes: dict[str, Any] = {}
        mtu = iface.mtu or (DEFAULT_MTU if iface.kind == "veth" else None)
        if mtu is not None and link.get("mtu") != mtu:
            changes["mtu"] = mtu
        if iface.master is not None:
            bridge = self.link(iface.node, iface.master)
            assert bridge is not None, "bridges are made before their ports"
            master = bridge["index"]
            if link.get("master") != master:
                changes["master"] = master
        if link["flags"] & 1 == 0:  # IFF_UP
            changes["state"] = "up"
        if changes:
            ipr.link("set", index=index, **changes)
            self.changed(iface.node)
            self.result.changes.append(f"{iface.label}: {', '.join(sorted(changes))}")
        live = self.addresses(iface, index)
        wanted = {(str(a.ip), a.network.prefixlen) for a in iface.addresses}
        if iface.kind == "loopback":
            wanted.add(("127.0.0.1", 8))
        for address, prefixlen in sorted(wanted - live):
            # nodad: a lab address is usable at once (no second of "tentative").
            flags = {"flags": 0x02} if ":" in address else {}  # IFA_F_NODAD
            ipr.addr("add", index=index, address=address, prefixlen=prefixlen, **flags)
            self.result.changes.append(f"{iface.label}: {address}/{prefixlen} added")
        for address, prefixlen in sorted(live - wanted):
            ipr.addr("del", index=index, address=address, prefixlen=prefixlen)
            self.result.changes.append(f"{iface.label}: {address}/{prefixlen} removed")

    def addresses(self, iface: Interface, index: int) -> set[tuple[str, int]]:
        if iface.node in self.fresh:
            return {("127.0.0.1", 8)} if iface.kind == "loopback" else set()
        ipr = self.sockets[iface.node]
        return {
            (a.get("address"), a["prefixlen"])
            for a in ipr.get_addr(index=index)
            if a["family"] in (socket.AF_INET, socket.AF_INET6) and not _link_local(a)
        }

    def ensure_routes(self, node: Node) -> None:
        ipr = self.sockets[node.name]
        raws = [] if node.name in self.fresh else gateway_routes(ipr)
        live = {r.key: (r, raw) for raw in raws if (r := live_route(raw, ipr))}
        wanted = {r.key: r for r in node.routes}
        for key, (route, raw) in live.items():
            if key not in wanted:
                ipr.route("del", dst=route.destination, table=254, family=raw["family"])
                self.result.changes.append(f"{node.name}: route {route.describe()} removed")
        for key, r in wanted.items():
            if key in live:
                continue
            spec: dict[str, Any] = {"dst": r.destination, "table": 254}
            if r.via is not None:
                spec["gateway"] = str(r.via)
            if r.dev is not None:
                spec["oif"] = ipr.link_lookup(ifname=r.dev)[0]
            ipr.route("replace", **spec)
            self.result.changes.append(f"{node.name}: route {r.describe()}")


def gateway_routes(ipr: Any) -> list[Any]:
    """Routes of the main table that were added by hand, not made by an address."""
    return [
        r
        for family in (socket.AF_INET, socket.AF_INET6)
        for r in ipr.get_routes(family=family, table=254)
        if r["proto"] != 2 and r["type"] == 1  # not RTPROT_KERNEL (connected), unicast
    ]


def live_route(raw: Any, ipr: Any) -> Route:
    dst = raw.get("dst")
    to = ip_network(f"{dst}/{raw['dst_len']}") if dst and raw["dst_len"] else None
    via = ip_address(raw.get("gateway")) if raw.get("gateway") else None
    dev = None
    if raw.get("oif"):
        links = ipr.get_links(raw.get("oif"))
        dev = links[0].get("ifname") if links else None
    return Route(to=to, via=via, dev=dev)


def _link_local(address: Any) -> bool:
    """fe80::/10, and ::1 (lo's own): the kernel's to manage, never the description's."""
    text = str(address.get("address", ""))
    return text.startswith("fe80:") or text == "::1"


def _kind(link: Any) -> str | None:
    kind = link.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND")
    return str(kind) if kind is not None else None


def down(
    topology: Topology | None, prefix: str | None = None, progress: Progress = _quiet
) -> DownResult:
    """Removes every namespace of the lab; succeeds when there is nothing to remove.

    Waits for the runs on the lab to end (they hold its lock shared)."""
    privileges.require("CAP_SYS_ADMIN", doing="pathtrace lab down")
    prefix = topology.prefix if topology is not None else (prefix or DEFAULT_PREFIX)
    with lock.held(prefix, exclusive=True, doing="lab down"):
        result = _down(topology, prefix, progress)
        lock.forget(prefix)  # no lab, no lock file left behind
        return result


def _down(topology: Topology | None, prefix: str, progress: Progress) -> DownResult:
    previous = record.read_record(prefix)
    candidates: set[str] = set()
    if topology is not None:
        candidates.update(topology.namespace(n) for n in topology.nodes)
    if previous is not None:
        candidates.update(previous.namespaces)
    # Marked namespaces whose record was lost.
    candidates.update(n for n in netns.names() if n.startswith(prefix))
    # A lab file bound to the host would make "remove the lab" end host processes.
    record.require_separate(sorted(candidates))
    result = DownResult()
    for ns in sorted(candidates):
        if not netns.exists(ns):
            continue
        if not record.is_ours(ns, prefix, previous):
            if topology is not None and ns in {topology.namespace(n) for n in topology.nodes}:
                result.warnings.append(f"left {ns} alone: pathtrace did not make it")
            continue
        for pid in responders(ns):  # the lab's own services: started by us
            _end(pid)
        holders = netns.holders(ns)
        progress(f"removing namespace {ns}")
        netns.remove(ns)
        result.removed.append(ns)
        if holders:
            result.warnings.append(
                f"{ns} lives on while processes {', '.join(map(str, holders))} run in it"
            )
    record.delete_record(prefix)
    return result
