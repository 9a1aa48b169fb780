"""Reading a namespace's netlink (rtnetlink, sock_diag): dumps and lookups on a
plain socket.

pyroute2's IPRoute runs every request through an asyncio loop of its own: its
import and the loop cost more than reading four namespaces' state (0.2 s of a
1 s run). Reading needs none of it: a request, then the kernel's answers until
NLMSG_DONE. pyroute2 still decodes every message (its ``ifinfmsg``, ``rtmsg``
and kin), so callers get the objects IPRoute returns. Writes stay with IPRoute.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Callable, Iterator
from typing import Any, Self

from pathtrace.system import _pyroute2

NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLM_F_DUMP_INTR = 0x10
RTM_GETLINK, RTM_GETADDR, RTM_GETROUTE, RTM_GETNEIGH = 18, 22, 26, 30
RTM_GETRULE, RTM_GETQDISC, RTM_GETTFILTER, RTM_GETNSID = 34, 38, 46, 90
RTA_DST, NETNSA_FD, TCA_KIND, TCA_OPTIONS = 1, 3, 1, 2
_HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port
_ATTR = struct.Struct("=HH")
_RECEIVE = 1 << 20  # one read holds any message the kernel makes
Decoder = Callable[..., Any]  # (data, offset=, length=) -> a message with .decode()


class _Netlink:
    """A netlink socket in the namespace the calling thread is in when it is made."""

    PROTOCOL = socket.NETLINK_ROUTE

    def __init__(self) -> None:
        _pyroute2.install()
        self.sock = socket.socket(
            socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, self.PROTOCOL
        )
        self.sock.bind((0, 0))
        self._seq = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _dump(
        self, kind: int, body: bytes, cls: Decoder, keep: Callable[[Any], Any] | None = None
    ) -> list[Any]:
        """Every message of the dump, decoded; ``keep``: what of each to keep, taken as
        it is decoded (a message holds its whole receive buffer: a conntrack table of
        10,000 entries kept as messages took ~340 MB)."""
        for _ in range(5):  # the table changed during the dump: the kernel says so
            try:
                return list(self._request(kind, NLM_F_REQUEST | NLM_F_DUMP, body, cls, keep))
            except _Interrupted:
                continue
        raise OSError(errno.EAGAIN, "the kernel's table kept changing while it was read")

    def _request(
        self,
        kind: int,
        flags: int,
        body: bytes,
        cls: Decoder,
        keep: Callable[[Any], Any] | None = None,
    ) -> Iterator[Any]:
        self._seq += 1
        seq = self._seq
        self.sock.send(_HEADER.pack(_HEADER.size + len(body), kind, flags, seq, 0) + body)
        dump = flags & NLM_F_DUMP == NLM_F_DUMP
        messages = []
        interrupted = False
        while True:
            data = self.sock.recv(_RECEIVE)
            at, done = 0, False
            while at + _HEADER.size <= len(data):
                length, mtype, mflags, mseq, _ = _HEADER.unpack_from(data, at)
                if length < _HEADER.size:
                    break
                if mseq == seq:
                    interrupted |= bool(mflags & NLM_F_DUMP_INTR)
                    if mtype == NLMSG_ERROR:
                        (code,) = struct.unpack_from("=i", data, at + _HEADER.size)
                        if code:
                            raise OSError(-code, os.strerror(-code))
                        done = True
                    elif mtype == NLMSG_DONE:
                        done = True
                    else:
                        message = cls(data, offset=at, length=length)
                        message.decode()
                        messages.append(keep(message) if keep else message)
                        done = not dump
                at += (length + 3) & ~3
            if done:
                break
        if interrupted:
            raise _Interrupted
        return iter(messages)


class Rtnl(_Netlink):
    """rtnetlink: links, addresses, routes, rules, neighbours, qdiscs, namespace ids."""

    # -- what the namespace holds ------------------------------------------

    def get_links(self, index: int | None = None) -> list[Any]:
        from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

        links = self._dump(RTM_GETLINK, struct.pack("=BxHiII", 0, 0, 0, 0, 0), ifinfmsg)
        return [m for m in links if index is None or m["index"] == index]

    def get_addr(self, index: int | None = None) -> list[Any]:
        from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg

        found = self._dump(RTM_GETADDR, struct.pack("=BBBBI", 0, 0, 0, 0, 0), ifaddrmsg)
        return [m for m in found if index is None or m["index"] == index]

    def get_routes(self, family: int, table: int | None = None) -> list[Any]:
        """Every table's routes, or ``table``'s."""
        from pyroute2.netlink.rtnl.rtmsg import rtmsg

        found = self._dump(RTM_GETROUTE, struct.pack("=8BI", family, *[0] * 7, 0), rtmsg)
        return [r for r in found if table is None or (r.get("RTA_TABLE") or r["table"]) == table]

    def get_rules(self, family: int) -> list[Any]:
        from pyroute2.netlink.rtnl.fibmsg import fibmsg

        return self._dump(RTM_GETRULE, struct.pack("=8BI", family, *[0] * 7, 0), fibmsg)

    def get_neighbours(self, family: int) -> list[Any]:
        from pyroute2.netlink.rtnl.ndmsg import ndmsg

        return self._dump(RTM_GETNEIGH, struct.pack("=BxxxiHBB", family, 0, 0, 0, 0), ndmsg)

    def qdisc_kinds(self) -> list[tuple[int, str]]:
        """(ifindex, kind) of every qdisc: "clsact", "noqueue", ... (the rest of a
        qdisc is not read: pyroute2's tcmsg costs 26 ms to import for one string)."""
        return [
            m.qdisc
            for m in self._dump(RTM_GETQDISC, struct.pack("=BxxxiIII", 0, 0, 0, 0, 0), _Qdisc)
        ]

    def filters(self, index: int, parent: int) -> list[RawFilter]:
        """The tc filters of the device ``index`` under ``parent`` (clsact's ingress
        0xFFFFFFF2, egress 0xFFFFFFF3), undecoded past their kind: pyroute2's tcmsg
        reads u32's selector four bytes off, so system.tcfilters reads them."""
        body = struct.pack("=BxxxiIII", 0, index, 0, parent, 0)
        return list(self._dump(RTM_GETTFILTER, body, RawFilter))

    def get_netnsid(self, fd: int) -> dict[str, Any] | None:
        """The id this namespace gives the namespace open at ``fd`` (RTM_GETNSID)."""
        from pyroute2.netlink.rtnl.nsidmsg import nsidmsg

        body = struct.pack("=Bxxx", socket.AF_UNSPEC) + _attr(NETNSA_FD, struct.pack("=I", fd))
        for m in self._request(RTM_GETNSID, NLM_F_REQUEST, body, nsidmsg):
            return {"nsid": m.get_attr("NETNSA_NSID")}
        return None

    def route_get(self, dst: str, family: int) -> list[Any]:
        """The kernel's route lookup for ``dst`` (`ip route get`); OSError (ENETUNREACH
        and kin) when the lookup is refused."""
        from pyroute2.netlink.rtnl.rtmsg import rtmsg

        packed = socket.inet_pton(family, dst)
        body = struct.pack("=8BI", family, len(packed) * 8, *[0] * 6, 0) + _attr(RTA_DST, packed)
        return list(self._request(RTM_GETROUTE, NLM_F_REQUEST, body, rtmsg))


class SockDiag(_Netlink):
    """sock_diag: the namespace's sockets, as `ss` lists them."""

    PROTOCOL = 4  # NETLINK_SOCK_DIAG
    BY_FAMILY = 20  # SOCK_DIAG_BY_FAMILY

    def sockets(self, family: int, protocol: int, states: int) -> list[tuple[str, int]]:
        """(local address, local port) of the sockets in ``states`` (a bit per TCP state)."""
        request = struct.pack("=BBBxI48x", family, protocol, 0, states)
        return [m.local for m in self._dump(self.BY_FAMILY, request, _DiagMessage)]


class _DiagMessage:
    """One inet_diag_msg: only the local end is read."""

    def __init__(self, data: bytes, offset: int, length: int) -> None:
        self.data, self.offset = data, offset + _HEADER.size
        self.local: tuple[str, int] = ("", 0)

    def decode(self) -> None:
        family = self.data[self.offset]
        (port,) = struct.unpack_from("!H", self.data, self.offset + 4)
        size = 16 if family == socket.AF_INET6 else 4
        raw = self.data[self.offset + 8 : self.offset + 8 + size]
        self.local = (socket.inet_ntop(family, raw), port)


class _Qdisc:
    """One tcmsg: its ifindex and its TCA_KIND."""

    def __init__(self, data: bytes, offset: int, length: int) -> None:
        self.data, self.offset, self.end = data, offset + _HEADER.size, offset + length
        self.qdisc: tuple[int, str] = (0, "")

    def decode(self) -> None:
        (index,) = struct.unpack_from("=i", self.data, self.offset + 4)
        at = self.offset + 20
        while at + _ATTR.size <= self.end:
            size, kind = _ATTR.unpack_from(self.data, at)
            if size < _ATTR.size:
                break
            if kind == TCA_KIND:
                value = self.data[at + _ATTR.size : at + size].split(b"\0", 1)[0]
                self.qdisc = (index, value.decode(errors="replace"))
                return
            at += (size + 3) & ~3
        self.qdisc = (index, "")


class _Interrupted(Exception):
    pass


def _attr(kind: int, payload: bytes) -> bytes:
    raw = _ATTR.pack(_ATTR.size + len(payload), kind) + payload
    return raw + b"\0" * (-len(raw) % 4)


def attributes(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(type, payload) of each netlink attribute in ``data`` (nested ones included
    as their payload; the nested flag taken off the type)."""
    at = 0
    while at + _ATTR.size <= len(data):
        size, kind = _ATTR.unpack_from(data, at)
        if size < _ATTR.size:
            return
        yield kind & 0x3FFF, data[at + _ATTR.size : at + size]
        at += (size + 3) & ~3


class RawFilter:
    """One tcmsg of a filter dump: its device, parent, info (preference and
    protocol), kind, and options as the kernel sent them."""

    def __init__(self, data: bytes, offset: int, length: int) -> None:
        self.data, self.offset, self.end = data, offset + _HEADER.size, offset + length
        self.index = self.parent = self.info = 0
        self.kind, self.options = "", b""

    def decode(self) -> None:
        _, self.index, _, self.parent, self.info = struct.unpack_from(
            "=BxxxiIII", self.data, self.offset
        )
        for kind, value in attributes(self.data[self.offset + 20 : self.end]):
            if kind == TCA_KIND:
                self.kind = value.split(b"\0", 1)[0].decode(errors="replace")
            elif kind == TCA_OPTIONS:
                self.options = value
