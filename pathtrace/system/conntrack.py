"""A namespace's conntrack table from netlink (nfnetlink's ctnetlink, the dump
`conntrack -L` makes), decoded by pyroute2's nfct_msg into records."""

from __future__ import annotations

import socket
import struct
from typing import Any

from pathtrace.model.conntrack import ConntrackEntry, CtTuple
from pathtrace.system import _pyroute2, netns
from pathtrace.system.rtnl import _Netlink

NETLINK_NETFILTER = 12
IPCTNL_MSG_CT_GET = (1 << 8) | 1  # NFNL_SUBSYS_CTNETLINK, IPCTNL_MSG_CT_GET
_PROTOCOLS = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6", 132: "sctp"}
# enum tcp_conntrack (uapi nf_conntrack_tcp.h), as conntrack -L names them
_TCP_STATES = (
    "NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT",
    "LAST_ACK", "TIME_WAIT", "CLOSE", "SYN_SENT2",
)  # fmt: skip


class _Ctnetlink(_Netlink):
    PROTOCOL = NETLINK_NETFILTER

    def entries(self, family: int) -> list[ConntrackEntry | None]:
        from pyroute2.netlink.nfnetlink.nfctsocket import nfct_msg

        body = struct.pack("=BBH", family, 0, 0)  # nfgenmsg: family, version 0, res_id
        return self._dump(IPCTNL_MSG_CT_GET, body, nfct_msg, keep=_entry)


def prepare() -> None:
    """Imports the message decoder ahead (~20 ms: pyroute2's socket classes come
    with it), where a thread has the time: a run's last reading wants it at once."""
    _pyroute2.install()
    from pyroute2.netlink.nfnetlink.nfctsocket import nfct_msg  # noqa: F401


def entries(namespace: str) -> list[ConntrackEntry]:
    """Every entry of the namespace's table, IPv4 and IPv6 ([] where conntrack is
    not loaded there: the kernel then has no table to dump)."""
    found = []
    with netns.entered(namespace):
        ct = _Ctnetlink()
    try:
        for family in (socket.AF_INET, socket.AF_INET6):
            try:
                messages = ct.entries(family)
            except OSError:
                continue  # ctnetlink not loaded, or that family has no table
            found += [entry for entry in messages if entry is not None]
    finally:
        ct.close()
    return found


def _entry(message: Any) -> ConntrackEntry | None:
    original, reply = message.get_attr("CTA_TUPLE_ORIG"), message.get_attr("CTA_TUPLE_REPLY")
    if original is None or reply is None:
        return None
    number = original.get_attr("CTA_TUPLE_PROTO").get_attr("CTA_PROTO_NUM") or 0
    state = ""
    info = message.get_attr("CTA_PROTOINFO")
    tcp = info.get_attr("CTA_PROTOINFO_TCP") if info is not None else None
    if tcp is not None:
        value = tcp.get_attr("CTA_PROTOINFO_TCP_STATE")
        state = _TCP_STATES[value] if value is not None and value < len(_TCP_STATES) else ""
    return ConntrackEntry(
        _PROTOCOLS.get(number, str(number)),
        number,
        _tuple(original),
        _tuple(reply),
        message.get_attr("CTA_STATUS") or 0,
        state,
        message.get_attr("CTA_TIMEOUT") or 0,
        message.get_attr("CTA_MARK") or 0,
        message.get_attr("CTA_ZONE") or 0,
    )


def _tuple(nested: Any) -> CtTuple:
    ip, proto = nested.get_attr("CTA_TUPLE_IP"), nested.get_attr("CTA_TUPLE_PROTO")
    src = ip.get_attr("CTA_IP_V4_SRC") or ip.get_attr("CTA_IP_V6_SRC") or ""
    dst = ip.get_attr("CTA_IP_V4_DST") or ip.get_attr("CTA_IP_V6_DST") or ""
    icmp_type = proto.get_attr("CTA_PROTO_ICMP_TYPE")
    if icmp_type is None:
        icmp_type = proto.get_attr("CTA_PROTO_ICMPV6_TYPE")
    if icmp_type is not None:
        return CtTuple(
            str(src),
            str(dst),
            icmp_id=proto.get_attr("CTA_PROTO_ICMP_ID") or proto.get_attr("CTA_PROTO_ICMPV6_ID"),
            icmp_type=icmp_type,
            icmp_code=proto.get_attr("CTA_PROTO_ICMP_CODE")
            or proto.get_attr("CTA_PROTO_ICMPV6_CODE")
            or 0,
        )
    return CtTuple(
        str(src),
        str(dst),
        proto.get_attr("CTA_PROTO_SRC_PORT"),
        proto.get_attr("CTA_PROTO_DST_PORT"),
    )
