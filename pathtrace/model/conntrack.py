"""Conntrack entries as records: what a namespace's connection table held at the
end of a run, read from netlink (system/conntrack.py) and kept in bundles.

``describe()`` says an entry in `conntrack -L`'s words, which is how people know
them; bundles from before 2026-11-30 kept those words, and ``parse`` reads them.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

# enum ip_conntrack_status (uapi/linux/netfilter/nf_conntrack_common.h), the bits
# conntrack -L shows and the ones a translation sets.
STATUS_BITS = {
    1 << 1: "SEEN_REPLY",
    1 << 2: "ASSURED",
    1 << 4: "SRC_NAT",
    1 << 5: "DST_NAT",
    1 << 12: "UNTRACKED",
    1 << 9: "DYING",
}
SEEN_REPLY, ASSURED = 1 << 1, 1 << 2


@dataclass(frozen=True)
class CtTuple:
    """One direction of an entry: addresses, and ports or ICMP's id, type, code."""

    src: str
    dst: str
    sport: int | None = None
    dport: int | None = None
    icmp_id: int | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None

    def describe(self) -> str:
        words = [f"src={self.src}", f"dst={self.dst}"]
        if self.icmp_type is not None:
            words += [f"type={self.icmp_type}", f"code={self.icmp_code or 0}"]
            words.append(f"id={self.icmp_id or 0}")
        if self.sport is not None:
            words += [f"sport={self.sport}", f"dport={self.dport}"]
        return " ".join(words)

    def involves(self, address: str) -> bool:
        return address in (self.src, self.dst)


@dataclass(frozen=True)
class ConntrackEntry:
    protocol: str  # tcp, udp, icmp, icmpv6, or the protocol number
    number: int  # the protocol number
    original: CtTuple
    reply: CtTuple
    status: int = 0  # ip_conntrack_status bits
    tcp_state: str = ""  # SYN_SENT, ESTABLISHED... (tcp only)
    timeout: int = 0  # seconds left
    mark: int = 0
    zone: int = 0
    text: str = ""  # an older bundle's line, kept as it was

    @property
    def flags(self) -> tuple[str, ...]:
        return tuple(name for bit, name in STATUS_BITS.items() if self.status & bit)

    def involves(self, address: str) -> bool:
        return self.original.involves(address) or self.reply.involves(address)

    def describe(self) -> str:
        """As `conntrack -L` says it."""
        if self.text:
            return self.text
        words = [self.protocol, str(self.number), str(self.timeout)]
        if self.tcp_state:
            words.append(self.tcp_state)
        words.append(self.original.describe())
        if not self.status & SEEN_REPLY:
            words.append("[UNREPLIED]")
        words.append(self.reply.describe())
        if self.status & ASSURED:
            words.append("[ASSURED]")
        words.append(f"mark={self.mark}")
        if self.zone:
            words.append(f"zone={self.zone}")
        return " ".join(words)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> ConntrackEntry:
        if isinstance(data, str):
            return cls.parse(data)
        return cls(
            **{
                **data,
                "original": CtTuple(**data["original"]),
                "reply": CtTuple(**data["reply"]),
            }
        )

    @classmethod
    def parse(cls, line: str) -> ConntrackEntry:
        """A `conntrack -L` line (what bundles before the records kept): its two
        tuples and flags read back, the line kept to be said as it was."""
        words = line.split()
        pairs = [w.split("=", 1) for w in words if "=" in w]
        halves: list[dict[str, str]] = [{}, {}]
        side = 0
        for key, value in pairs:
            if key in halves[side] and side == 0:
                side = 1
            halves[side].setdefault(key, value)
        status = (0 if "[UNREPLIED]" in words else SEEN_REPLY) | (
            ASSURED if "[ASSURED]" in words else 0
        )
        number = int(words[1]) if len(words) > 1 and words[1].isdigit() else 0
        state = words[3] if len(words) > 3 and re.fullmatch(r"[A-Z_]+", words[3]) else ""
        return cls(
            words[0] if words else "",
            number,
            _tuple(halves[0]),
            _tuple(halves[1]),
            status,
            state,
            text=line,
        )


def _tuple(values: dict[str, str]) -> CtTuple:
    def number(key: str) -> int | None:
        return int(values[key]) if values.get(key, "").isdigit() else None

    return CtTuple(
        values.get("src", ""),
        values.get("dst", ""),
        number("sport"),
        number("dport"),
        number("id"),
        number("type"),
        number("code"),
    )
