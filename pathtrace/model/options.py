"""What a run is asked to do: the probe, its source and target, how to capture.

Validated once, when made: the CLI, the TUI and the library share one check.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any, Literal

from pathtrace.errors import UsageError
from pathtrace.model.tag import TAG_SIZE

Kind = Literal["ping", "udp", "tcp", "dns"]
KINDS = ("ping", "udp", "tcp", "dns")
Address = IPv4Address | IPv6Address


@dataclass(frozen=True)
class RunOptions:
    kind: Kind
    target: Address
    port: int = 0
    source: str = ""  # a lab node, a namespace, a pid or a path; "" is the lab's default
    count: int = 3
    interval: float = 0.01
    size: int = 56
    ttl: int = 64
    dont_fragment: bool = False
    timeout: float = 1.0
    capture: Literal["run", "all", "off"] = "run"  # the run's packets, everything, none
    query: str = "example.com"  # dns: the name asked (type A)

    def __post_init__(self) -> None:
        """Checked here once, for the CLI, the TUI and the library alike."""
        if self.kind not in KINDS:
            raise UsageError(f"unknown probe kind {self.kind!r}: ping, udp, tcp or dns")
        if self.kind != "ping" and not 0 < self.port < 65536:
            raise UsageError(f"{self.kind} needs a port from 1 to 65535")
        if not 1 <= self.count <= 1000:
            raise UsageError("--count must be from 1 to 1000")
        if self.size < TAG_SIZE and self.kind != "tcp":
            raise UsageError(f"--size must be at least {TAG_SIZE} (the tag)")
        if not 1 <= self.ttl <= 255:
            raise UsageError("--ttl must be from 1 to 255")
        largest = self.largest_size
        if self.size > largest:
            raise UsageError(
                f"--size {self.size} is more than an IPv{self.target.version} {self.kind} "
                f"packet can carry (at most {largest})"
            )
        if not (math.isfinite(self.interval) and 0 <= self.interval <= 60):
            raise UsageError("--interval must be a number of seconds from 0 to 60")
        if not (math.isfinite(self.timeout) and 0 < self.timeout <= 600):
            raise UsageError("--timeout must be a number of seconds above 0, at most 600")
        _check_target(self.target)
        if self.capture not in ("run", "all", "off"):
            raise UsageError(f"--capture is run, all or off, not {self.capture!r}")
        if self.kind == "dns":
            _check_name(self.query)

    @property
    def largest_size(self) -> int:
        """The most payload one packet of this kind carries: an IP packet is at most
        65535 bytes (IPv4: with its 20-byte header; IPv6: not counting its own)."""
        l4 = 20 if self.kind == "tcp" else 8  # dns: --size is not used
        return 65535 - l4 - (20 if self.target.version == 4 else 0)

    @classmethod
    def parse(cls, kind: str, target: str, **settings: Any) -> RunOptions:
        """From what a person types: ``ping 8.8.8.8``, ``tcp 198.51.100.2:8080``."""
        address, port = parse_target(kind, target)
        return cls(kind, address, port, **settings)  # type: ignore[arg-type]  # kind: checked

    @property
    def label(self) -> str:
        return f"{self.kind} {self.target_text} from {self.source}"

    @property
    def target_text(self) -> str:
        """The target as typed: 8.8.8.8, 198.51.100.2:8080, [2001:db8::1]:53."""
        if self.kind == "ping":
            return str(self.target)
        host = f"[{self.target}]" if self.target.version == 6 else str(self.target)
        return f"{host}:{self.port}"


def parse_target(kind: str, text: str) -> tuple[Address, int]:
    """ping: ADDRESS; udp, tcp: ADDRESS:PORT, an IPv6 address in brackets; dns:
    ADDRESS[:PORT] (53)."""
    host, port = text, 0
    if kind == "dns" and text.startswith("[") and text.endswith("]"):
        text += ":53"  # the port is optional
    elif kind == "dns" and not (text.count(":") == 1 or text.startswith("[")):
        text = f"[{text}]:53" if ":" in text else f"{text}:53"
    if kind in ("udp", "tcp", "dns"):
        if ":" not in text or (text.count(":") > 1 and not text.startswith("[")):
            raise UsageError(f"{kind} needs ADDRESS:PORT ([ADDRESS]:PORT for IPv6), got {text!r}")
        host, _, port_text = text.rpartition(":")
        if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
            raise UsageError(f"{port_text!r} is not a port (1-65535)")
        port = int(port_text)
    bracketed = host.startswith("[") and host.endswith("]")
    if bracketed:
        host = host[1:-1]
        if ":" not in host:  # brackets set an IPv6 address apart from its port
            raise UsageError(f"[{host}]: brackets are for IPv6 addresses")
    try:
        return ip_address(host), port
    except ValueError:
        raise UsageError(f"{host!r} is not an IP address (pathtrace resolves no names)") from None


def _check_name(name: str) -> None:
    """A name a DNS query can carry: ASCII labels of 1-63 characters, 253 in all."""
    if not isinstance(name, str):
        raise UsageError("--query needs a DNS name")
    labels = name.rstrip(".").split(".")
    if (
        not name.isascii()
        or not name.isprintable()
        or len(name.rstrip(".")) > 253
        or any(not 0 < len(label) <= 63 or " " in label for label in labels)
    ):
        raise UsageError(f"--query {name!r} is not a DNS name (ASCII labels of 1-63 characters)")


def _check_target(target: Address) -> None:
    """One host to trace to: a unicast address with no interface scope."""
    if isinstance(target, IPv6Address) and (target.scope_id is not None or target.is_link_local):
        raise UsageError(
            f"{target}: a link-local or scoped address names no single path; "
            "give a global or unique-local IPv6 address"
        )
    if target.is_unspecified:
        raise UsageError(f"{target} is the unspecified address: give a host to trace to")
    if target.is_multicast or target == IPv4Address("255.255.255.255"):
        raise UsageError(
            f"{target} is a multicast or broadcast address: pathtrace follows probes to one host"
        )
