"""Which namespaces a run's packets can reach, and what people call them.

A run from a namespace pathtrace did not build traces the namespaces its
packets can get to: the source, and whatever a veth pair (or any link that
crosses namespaces) leads to from there, the host's own namespace included.
Unrelated namespaces on the machine (another lab, another project's) are left
alone: no netfilter link, no capture socket goes there. Only reads.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from ipaddress import IPv6Address

from pathtrace.system import containers, netns, observe
from pathtrace.system.rtnl import Rtnl

HOST = "host"  # what reports call the namespace pathtrace runs in


def host_path() -> str:
    """The namespace pathtrace itself runs in (the machine's, on a real host)."""
    return f"/proc/{os.getpid()}/ns/net"


def candidates() -> list[str]:
    """Every namespace on the machine that can be entered: the host, the named
    ones (/run/netns), and those only processes hold (as Docker keeps them),
    each once, by a path that enters it."""
    host = host_path()
    seen = {netns.inode(host)}
    found = [host]
    for name in netns.names():
        if name.startswith(netns.SCRATCH_PREFIX):
            continue  # pathtrace's own short-lived ones
        try:
            number = netns.inode(name)
        except OSError:
            continue  # a half-made or stale file
        if number not in seen:
            seen.add(number)
            found.append(name)
    for pid in _pids():
        path = f"/proc/{pid}/ns/net"
        try:
            number = os.stat(path).st_ino
        except OSError:
            continue  # gone, or not ours to see
        if number not in seen:
            seen.add(number)
            found.append(path)
    return found


@dataclass
class Reach:
    """What a run traces: the namespaces, and in each the links that lead away
    from them (to namespaces left alone): no capture socket goes on those."""

    namespaces: list[str]
    beside: dict[str, set[str]] = field(default_factory=dict)
    rulesets: dict[str, str] = field(default_factory=dict)  # listed on the way: not twice


def reachable(source: str, among: Sequence[str], target: str | None = None) -> Reach:
    """``source`` and the namespaces of ``among`` that links lead to from it, in
    the order found. A link to another namespace carries that namespace's id as
    its own namespace numbers it (IFLA_LINK_NETNSID); each candidate's id there is
    asked of the kernel (RTM_GETNSID), so no guess is made from names or indexes.

    With a ``target``, only namespaces that can carry the run's packets: those
    that forward (ip_forward, or a bridge: the way through), and those that own
    the target or an address a forwarding namespace translates it to (DNAT);
    the search goes on only through the ones that forward. A pod beside the
    path on the same bridge is neither, and is left alone."""
    fds: dict[str, int] = {}
    try:
        for candidate in among:
            try:
                fds[candidate] = os.open(netns.path(candidate), os.O_RDONLY)
            except OSError:
                continue
        found = [source]
        beside: dict[str, set[str]] = {}
        rulesets: dict[str, str] = {}
        traced, left = {netns.inode(source)}, set()
        owned: set[str] = set()  # what namespaces found hold of the target, a DNAT's address
        on_segment: list[tuple[str, str, int, set[str]]] = []
        wanted = {target} if target else set()
        queue = [source]
        while queue:
            here = queue.pop(0)
            if target is not None:
                rulesets[here] = observe.ruleset(here)
                wanted |= set(_DNAT.findall(rulesets[here]))
            ipr = netns.rtnl(here)
            try:
                # The link the kernel routes the target out of: the namespace at its
                # other end is on the path whatever it does with the packet (a
                # router with ip_forward=0 is where the packet dies: traced).
                toward = _route_out(ipr, target) if target is not None else None
                # Where each address the packets go to (the target, a DNAT's) is routed.
                outs = {_route_out(ipr, w) for w in wanted} if target is not None else set()
                by_id: dict[int, set[str]] = {}
                masters: dict[str, int | None] = {}
                out_indexes = set()
                for link in ipr.get_links():
                    name = str(link.get("ifname"))
                    masters[name] = link.get("IFLA_MASTER")
                    if name in outs:
                        out_indexes.add(link["index"])
                    nsid = link.get("IFLA_LINK_NETNSID")
                    if nsid is not None:
                        by_id.setdefault(nsid, set()).add(name)
                # The ports of the bridges those are routed out of: their segments.
                segment = {n for n, m in masters.items() if m is not None and m in out_indexes}
                peers = set(by_id)
                for candidate, fd in fds.items():
                    if not peers:
                        break
                    answer = ipr.get_netnsid(fd=fd)
                    nsid = answer.get("nsid") if answer else None
                    if nsid not in peers:
                        continue
                    peers.discard(nsid)
                    number = os.fstat(fd).st_ino
                    if number in traced:
                        continue  # a link back to a namespace already traced
                    if number not in left:
                        owns, forwards = (set(), True) if target is None else _glance(candidate)
                        if forwards or owns & wanted or toward in by_id[nsid]:
                            traced.add(number)
                            found.append(candidate)
                            owned |= owns & wanted
                            if forwards:  # the way goes on through it
                                queue.append(candidate)
                            continue
                        left.add(number)
                        if by_id[nsid] & segment:
                            on_segment.append((here, candidate, number, by_id[nsid]))
                    beside.setdefault(here, set()).update(by_id[nsid])
                for nsid in peers:  # links to namespaces no candidate is: unknown, left alone
                    beside.setdefault(here, set()).update(by_id[nsid])
            finally:
                ipr.close()
        upper = _upper_devices_owning(fds, found, traced | left, wanted) if target else []
        found += upper
        missing = wanted - owned if target is not None and not upper else set()
        # (The source is glanced at only then: most runs find every address held.)
        if missing and missing - _owned_by(source):
            # Nobody traced holds the target (or a DNAT's address): the stations on its
            # segment are where it should be (an address removed, a pod gone bare), and
            # the evidence of why.
            for here, candidate, number, names in on_segment:
                traced.add(number)
                found.append(candidate)
                beside[here] = beside.get(here, set()) - names
        return Reach(found, beside, rulesets)
    finally:
        for fd in fds.values():
            os.close(fd)


def _upper_devices_owning(
    fds: dict[str, int], found: list[str], seen: set[int], wanted: set[str]
) -> list[str]:
    """Namespaces owning a wanted address that no link of the found ones leads to, but
    whose own link leads to one of them: a macvlan, ipvlan or vlan whose lower device
    is there (netlink shows the link only on the upper device's side). Asked only
    when the search found no owner of the target: each costs a look inside."""
    if any(_glance(n)[0] & wanted for n in found[1:]) or not wanted:
        return []
    homes = {os.fstat(fds[n]).st_ino: fds[n] for n in found if n in fds}
    added = []
    for candidate, fd in fds.items():
        number = os.fstat(fd).st_ino
        if number in seen or number in homes or not _glance(candidate)[0] & wanted:
            continue
        ipr = netns.rtnl(candidate)
        try:
            ids = {
                link.get("IFLA_LINK_NETNSID")
                for link in ipr.get_links()
                if link.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND") not in (None, "veth")
            } - {None}
            for home_fd in homes.values():
                answer = ipr.get_netnsid(fd=home_fd) if ids else None
                if answer and answer.get("nsid") in ids:
                    added.append(candidate)
                    break
        finally:
            ipr.close()
    return added


def _route_out(ipr: Rtnl, target: str) -> str | None:
    """The name of the link a route lookup for ``target`` leaves by, if any."""
    family = socket.AF_INET6 if ":" in target else socket.AF_INET
    try:
        answer = ipr.route_get(target, family)
        index = answer[0].get("RTA_OIF") if answer else None
        links = ipr.get_links(index) if index else []
    except (OSError, ValueError):  # no route (ENETUNREACH), not an address: no way out
        return None
    return str(links[0].get("ifname")) if links else None


def _owned_by(namespace: str) -> set[str]:
    try:
        return _glance(namespace)[0]
    except OSError:
        return set()


def _glance(namespace: str) -> tuple[set[str], bool]:
    """(its local addresses, whether it forwards: ip_forward=1, IPv6 forwarding,
    or a bridge), read from inside it through /proc (a netlink socket each costs a
    millisecond, which a node with hundreds of pods would pay hundreds of times)."""
    with netns.entered(namespace):
        with open("/proc/thread-self/net/fib_trie") as f:
            trie = f.read()
        with open("/proc/thread-self/net/dev") as f:
            devices = [line.split(":")[0].strip() for line in f.readlines()[2:]]
        with open("/proc/sys/net/ipv4/ip_forward") as f:
            forwards = f.read().strip() == "1"
        try:
            with open("/proc/thread-self/net/if_inet6") as f:
                inet6 = [line.split()[0] for line in f]
            with open("/proc/sys/net/ipv6/conf/all/forwarding") as f:
                forwards = forwards or f.read().strip() == "1"
        except OSError:
            inet6 = []  # IPv6 is not built in
    owns = set(_LOCAL.findall(trie))
    owns |= {str(IPv6Address(bytes.fromhex(a))) for a in inet6}
    if not forwards and len([d for d in devices if d != "lo"]) > 1:
        forwards = _has_bridge(namespace)  # more than one device: it may switch
    return owns, forwards


_LOCAL = re.compile(r"\|-- (\d+\.\d+\.\d+\.\d+)\n\s+/32 host LOCAL")


def _has_bridge(namespace: str) -> bool:
    ipr = netns.rtnl(namespace)
    try:
        return any(
            link.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND") == "bridge"
            for link in ipr.get_links()
        )
    finally:
        ipr.close()


_DNAT = re.compile(r"\bdnat (?:ip6? )?to \[?([\d.]+\d|[0-9a-f:]*:[0-9a-f:]+)")


def name_of(path: str) -> str:
    """How people know a namespace: its /run/netns name; 'host' for pathtrace's
    own; else the hostname of the UTS namespace of the process that holds it, when
    it has one of its own (a container's); else netns:INODE with the pid and command."""
    if not path.startswith("/"):
        return path
    if path == host_path() or netns.inode(path) == netns.inode(host_path()):
        return HOST
    number = os.stat(path).st_ino
    named = netns.namespace_names().get(number)
    if named is not None and named != "root":
        return named  # a path to a namespace that has a /run/netns name
    container = containers.names_by_inode().get(number)
    if container:
        return container  # as `docker ps` names it
    pid = path.split("/")[2]
    try:
        with open(f"/proc/{pid}/comm") as f:
            comm = f.read().strip()
    except OSError:
        comm = "?"
    # A container has a hostname of its own: the name its owner gave it (Docker's
    # short container id, a pod's name), short enough for a report's node column.
    hostname = netns.hostname_of(int(pid)) if pid.isdigit() else None
    if hostname and hostname != HOST:
        return hostname
    return f"netns:{number} (pid {pid}, {comm})"


def _pids() -> list[int]:
    return sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
