"""What a run is asked to do: the probe, its source and target, how to capture.

Validated once, when made: the CLI, the TUI and the library share one check.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any, Literal

from pathtrace.errors import UsageError
from pathtrace.model.tag import TAG_SIZE

Kind = Literal["ping", "udp", "tcp"]
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

    def __post_init__(self) -> None:
        """Checked here once, for the CLI, the TUI and the library alike."""
        if self.kind not in ("ping", "udp", "tcp"):
            raise UsageError(f"unknown probe kind {self.kind!r}: ping, udp or tcp")
        if self.kind != "ping" and not 0 < self.port < 65536:
            raise UsageError(f"{self.kind} needs a port from 1 to 65535")
        if not 1 <= self.count <= 1000:
            raise UsageError("--count must be from 1 to 1000")
        if self.size < TAG_SIZE and self.kind != "tcp":
            raise UsageError(f"--size must be at least {TAG_SIZE} (the tag)")
        if not 1 <= self.ttl <= 255:
            raise UsageError("--ttl must be from 1 to 255")
        if self.capture not in ("run", "all", "off"):
            raise UsageError(f"--capture is run, all or off, not {self.capture!r}")

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
    """ping: ADDRESS; udp, tcp: ADDRESS:PORT, an IPv6 address in brackets."""
    host, port = text, 0
    if kind in ("udp", "tcp"):
        if ":" not in text or (text.count(":") > 1 and not text.startswith("[")):
            raise UsageError(f"{kind} needs ADDRESS:PORT ([ADDRESS]:PORT for IPv6), got {text!r}")
        host, _, port_text = text.rpartition(":")
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise UsageError(f"{port_text!r} is not a port (1-65535)")
        port = int(port_text)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        return ip_address(host), port
    except ValueError:
        raise UsageError(f"{host!r} is not an IP address (pathtrace resolves no names)") from None
