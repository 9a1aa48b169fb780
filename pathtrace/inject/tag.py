"""The tag an injected packet carries (layout: probes/include/pathtrace.h).

ICMP echo and UDP carry it in the first 12 payload bytes, which NAT never
rewrites and which echo replies and ICMP errors bring back; a TCP SYN carries
it in its initial sequence number, which the SYN-ACK or RST acknowledges.
"""

from __future__ import annotations

import secrets
import struct

MAGIC = 0x50545243  # "PTRC"
MAGIC_REPLY = 0x50545252  # "PTRR": what the lab's echo services answer with
TAG_SIZE = 12


def new_run() -> int:
    """A run id: random, so two runs (or two users) never claim each other's packets."""
    return secrets.randbits(32) or 1


def payload(run: int, index: int, size: int = 0) -> bytes:
    """The tag, padded to ``size`` bytes."""
    tag = struct.pack(">III", MAGIC, run & 0xFFFFFFFF, index)
    return tag + bytes(max(0, size - TAG_SIZE))


def tcp_isn(run: int, index: int) -> int:
    if not 0 <= index <= 0xFFFF:
        raise ValueError("a TCP probe index fits in 16 bits")
    return (run & 0xFFFF) << 16 | index
