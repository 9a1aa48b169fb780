"""The lab's services: listens on the given ports inside a lab namespace.

`python -I -S responder.py tcp:80 udp:53` accepts TCP connections (the
kernel's SYN-ACK is what a tcp probe needs) and echoes UDP datagrams, marking a
tagged payload as an answer (PTRC -> PTRR) so the probes know the reply.
Started by `lab up`, ended by `lab down`; prints "ready" once every port is bound.
It imports nothing from pathtrace (the tag's magic numbers are repeated here and
a test checks them), so it starts in a few milliseconds with `-I -S`.
"""

from __future__ import annotations

import selectors
import signal
import socket
import struct
import sys

MAGIC = 0x50545243  # "PTRC": pathtrace.model.tag.MAGIC
MAGIC_REPLY = 0x50545252  # "PTRR": pathtrace.model.tag.MAGIC_REPLY
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)  # Python < 3.12 lacks the name
IPV6_PKTINFO = getattr(socket, "IPV6_PKTINFO", 50)


def main(specs: list[str]) -> int:
    selector = selectors.DefaultSelector()
    for spec in specs:
        proto, _, port = spec.partition(":")
        kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
        for family in (socket.AF_INET, socket.AF_INET6):
            listener = socket.socket(family, kind)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                # One socket per family (IPv4's is the one every test knows).
                listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                try:
                    listener.bind(("::", int(port)))
                except OSError:
                    listener.close()  # IPv6 is off in this namespace
                    continue
            else:
                listener.bind(("0.0.0.0", int(port)))
            if proto == "tcp":
                listener.listen(128)
            elif family == socket.AF_INET:
                # To learn each datagram's destination, and answer from it: a node
                # owning several addresses (wan: 8.8.8.8, 1.1.1.1) must not answer
                # 8.8.8.8's question from another.
                listener.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
            else:
                listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
            listener.setblocking(False)
            selector.register(listener, selectors.EVENT_READ, proto)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("ready", flush=True)
    while True:
        for key, _ in selector.select():
            sock = key.fileobj
            if not isinstance(sock, socket.socket):
                continue
            try:
                if key.data == "tcp":
                    conn, _ = sock.accept()
                    conn.close()
                else:
                    data, ancillary, _, peer = sock.recvmsg(65535, socket.CMSG_SPACE(12))
                    if len(data) >= 12 and int.from_bytes(data[:4], "big") == MAGIC:
                        data = MAGIC_REPLY.to_bytes(4, "big") + data[4:]
                    reply_from = [
                        (
                            socket.IPPROTO_IP,
                            IP_PKTINFO,
                            struct.pack("=I4s4s", 0, cdata[8:12], cdata[8:12]),
                        )
                        for level, kind, cdata in ancillary
                        if level == socket.IPPROTO_IP and kind == IP_PKTINFO
                    ] + [
                        # in6_pktinfo: the address it came to, any interface
                        (socket.IPPROTO_IPV6, IPV6_PKTINFO, cdata[:16] + bytes(4))
                        for level, kind, cdata in ancillary
                        if level == socket.IPPROTO_IPV6 and kind == IPV6_PKTINFO
                    ]
                    sock.sendmsg([data], reply_from, 0, peer)
            except OSError:
                continue


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
