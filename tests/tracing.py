"""Tracing on the lab in tests: a Session sends tagged probes and collects events."""

from __future__ import annotations

import time
from collections.abc import Callable
from ipaddress import IPv4Address

from pathtrace.inject import send
from pathtrace.kernel.decode import DecodeContext, decode
from pathtrace.kernel.engine import Tracer
from pathtrace.lab import topology
from pathtrace.model.event import Event


class Session:
    """A tracer armed on a lab, with a way to send tagged probes and collect events."""

    def __init__(self, lab: topology.Topology, tracer: Tracer) -> None:
        self.lab = lab
        self.tracer = tracer
        self.ctx = DecodeContext(notes=tracer.note)
        self.events: list[Event] = []

    def send(self, node: str, probe: send.Probe, index: int = 0) -> None:
        ns = self.lab.namespace(node)
        src = send.source_address(ns, probe.dst)
        with send.Sender(ns) as sender:
            sender.send(send.build(probe, src, self.tracer.run, index), probe.dst)

    def collect(self, until: Callable[[list[Event]], bool], timeout: float = 5.0) -> list[Event]:
        deadline = time.monotonic() + timeout
        while True:
            assert self.tracer.layout is not None
            self.events.extend(
                decode(self.tracer.layout.unpack(r), self.ctx) for r in self.tracer.drain()
            )
            if until(self.events) or time.monotonic() > deadline:
                return sorted(self.events, key=lambda e: e.time_ns)
            time.sleep(0.01)


def ping(dst: str, **kw: object) -> send.Probe:
    return send.Probe("ping", IPv4Address(dst), **kw)  # type: ignore[arg-type]


def flood_of_new_flows(dst: str, seconds: float = 1.5) -> str:
    """A Python program sending UDP datagrams to ``dst`` port 9999 from a new source
    port each (a raw socket), as fast as Python sends them: each datagram a flow."""
    return f"""
import socket, struct, time
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
end, port = time.monotonic() + {seconds}, 20000
while time.monotonic() < end:
    for _ in range(200):
        port = port + 1 if port < 60000 else 20000
        s.sendto(struct.pack("!HHHH", port, 9999, 8, 0), ({dst!r}, 0))
"""
