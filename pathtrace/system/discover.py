"""Which namespaces a run's packets can reach, and what people call them.

A run from a namespace pathtrace did not build traces the namespaces its
packets can get to: the source, and whatever a veth pair (or any link that
crosses namespaces) leads to from there, the host's own namespace included.
Unrelated namespaces on the machine (another lab, another project's) are left
alone: no netfilter link, no capture socket goes there. Only reads.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from pathtrace.system import netns

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


def reachable(source: str, among: Sequence[str]) -> list[str]:
    """``source`` and the namespaces of ``among`` that links lead to from it, in
    the order found. A link to another namespace carries that namespace's id as
    its own namespace numbers it (IFLA_LINK_NETNSID); each candidate's id there is
    asked of the kernel (RTM_GETNSID), so no guess is made from names or indexes."""
    fds: dict[str, int] = {}
    try:
        for candidate in among:
            try:
                fds[candidate] = os.open(netns.path(candidate), os.O_RDONLY)
            except OSError:
                continue
        found = [source]
        numbers = {netns.inode(source)}
        queue = [source]
        while queue:
            here = queue.pop(0)
            ipr = netns.iproute(here)
            try:
                peers = {link.get("IFLA_LINK_NETNSID") for link in ipr.get_links()} - {None}
                for candidate, fd in fds.items():
                    if not peers:
                        break
                    number = os.fstat(fd).st_ino
                    if number in numbers:
                        continue
                    answer = ipr.get_netnsid(fd=fd)
                    if answer and answer.get("nsid") in peers:
                        peers.discard(answer["nsid"])
                        numbers.add(number)
                        found.append(candidate)
                        queue.append(candidate)
            finally:
                ipr.close()
        return found
    finally:
        for fd in fds.values():
            os.close(fd)


def name_of(path: str) -> str:
    """How people know a namespace: its /run/netns name; 'host' for pathtrace's
    own; else what holds it (netns:INODE, pid and command)."""
    if not path.startswith("/"):
        return path
    if path == host_path() or netns.inode(path) == netns.inode(host_path()):
        return HOST
    number = os.stat(path).st_ino
    pid = path.split("/")[2]
    try:
        with open(f"/proc/{pid}/comm") as f:
            comm = f.read().strip()
    except OSError:
        comm = "?"
    return f"netns:{number} (pid {pid}, {comm})"


def _pids() -> list[int]:
    return sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
