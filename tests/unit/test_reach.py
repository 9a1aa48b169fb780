"""What a filter can never accept (kernel/reach.py) is never accepted.

For each expression, every (IP version, protocol) the analysis rules out is
tried on random packets of that version and protocol, run through a classic BPF
interpreter written from the instruction set's definition (linux/filter.h): none
may be accepted. And the analysis is not vacuous: it rules out what the
expressions plainly exclude.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from pathtrace.capture.filter import compile_watch_filter
from pathtrace.kernel.reach import IPV6_EXTENSIONS, Tnum, may_accept, reach
from pathtrace.sampling import CALM_S, Sampler

EXPRESSIONS = [
    "udp port 53",
    "tcp",
    "icmp or icmp6",
    "host 10.0.0.1",
    "ip6 and udp",
    "tcp[tcpflags] & tcp-syn != 0",
    "udp[8:4] = 0x41424344",
    "ip[8] < 10 and not tcp",
    "proto 47 or ip6 proto 4",
    "len > 200 and udp",
    "ip6[6] = 17 or ip[9] = 17",
    "not tcp and not udp",
]


def alu(op: int, a: int, src: int) -> int:
    ops = {
        0x00: lambda: a + src, 0x10: lambda: a - src, 0x20: lambda: a * src,
        0x30: lambda: a // src, 0x90: lambda: a % src, 0x40: lambda: a | src,
        0x50: lambda: a & src, 0x60: lambda: a << src if src < 32 else 0,
        0x70: lambda: a >> src if src < 32 else 0, 0x80: lambda: -a, 0xA0: lambda: a ^ src,
    }  # fmt: skip
    return ops[op]() & 0xFFFFFFFF


def run(program: list[tuple[int, int, int, int]], pkt: bytes) -> int:
    """Classic BPF on raw IP bytes; a load past the end returns 0 (no match)."""
    a = x = pc = 0
    mem = [0] * 16

    def load(off: int, size: int) -> int | None:
        if off < 0 or off + size > len(pkt):
            return None
        return int.from_bytes(pkt[off : off + size], "big")

    while pc < len(program):
        code, jt, jf, k = program[pc]
        pc += 1
        cls, size = code & 7, {0x10: 1, 0x08: 2, 0x00: 4}[code & 0x18]
        if cls in (0, 1):
            mode = code & 0xE0
            if mode == 0x00:
                v: int | None = k
            elif mode == 0x80:
                v = len(pkt)
            elif mode == 0x60:
                v = mem[k & 15]
            elif mode == 0x20:
                v = load(k, size)
            elif mode == 0x40:
                v = load(x + k, size)
            else:
                b = load(k, 1)
                v = None if b is None else (b & 0xF) << 2
            if v is None:
                return 0
            if cls == 0:
                a = v
            else:
                x = v
        elif cls == 2:
            mem[k & 15] = a
        elif cls == 3:
            mem[k & 15] = x
        elif cls == 4:
            src, op = (x if code & 8 else k), code & 0xF0
            if op in (0x30, 0x90) and src == 0:
                return 0
            a = alu(op, a, src)
        elif cls == 5:
            src, op = (x if code & 8 else k), code & 0xF0
            if op == 0:
                pc += k
                continue
            ok = {0x10: a == src, 0x20: a > src, 0x30: a >= src, 0x40: bool(a & src)}[op]
            pc += jt if ok else jf
        elif cls == 6:
            return {0x10: a, 0x08: x}.get(code & 0x18, k)
        else:
            if code & 0xF8 == 0x80:
                a = x
            else:
                x = a
    return 0


def packet(rng: random.Random, family: int, protocol: int) -> bytes:
    size = rng.choice([20, 28, 40, 48, 60, 64, 100, 300]) + (20 if family == 6 else 0)
    pkt = bytearray(rng.getrandbits(8) for _ in range(size))
    if family == 6:
        pkt[0] = 0x60 | (pkt[0] & 0x0F)
        pkt[6] = protocol
    else:
        pkt[0] = 0x40 | rng.choice([5, 5, 5, 6, 15, pkt[0] & 0x0F])
        pkt[9] = protocol
        if rng.random() < 0.7:
            pkt[6] &= 0x40  # most packets are first fragments: ports are read
            pkt[7] = 0
    return bytes(pkt)


@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_what_is_ruled_out_is_never_accepted(expression: str) -> None:
    program = compile_watch_filter(expression)
    scope = reach(program, udp_tunnels=False)
    rng = random.Random(expression)
    tried = 0
    for f, family in ((0, 4), (1, 6)):
        for protocol in range(256):
            if scope.pick[f][protocol] or (family == 6 and protocol in IPV6_EXTENSIONS):
                continue
            for _ in range(12):
                pkt = packet(rng, family, protocol)
                assert not run(program, pkt), (expression, family, protocol, pkt.hex())
                tried += 1
    assert tried


def test_what_the_expressions_exclude_is_ruled_out() -> None:
    def picks(expression: str, family: int) -> list[int]:
        scope = reach(compile_watch_filter(expression), udp_tunnels=False)
        return [p for p in range(256) if scope.pick[family == 6][p]]

    assert picks("udp port 53", 4) == [17] and picks("udp port 53", 6) == [17]
    assert picks("icmp", 4) == [1] and picks("icmp", 6) == []
    assert picks("ip6 and udp", 4) == []
    assert len(picks("host 10.0.0.1", 4)) == 256 and picks("host 10.0.0.1", 6) == []
    assert len(picks("not tcp and not udp", 4)) == 254


def test_a_flow_that_may_be_tunnelled_is_keyed_in_every_protocol() -> None:
    udp = compile_watch_filter("udp port 4789")
    assert sum(reach(udp, udp_tunnels=False).keyed[0]) == 1
    assert sum(reach(udp, udp_tunnels=True).keyed[0]) == 256
    assert sum(reach(compile_watch_filter("proto 47"), udp_tunnels=False).keyed[1]) == 256


def test_unknown_bits_are_never_decided() -> None:
    ihl = {0: Tnum(0x40, 0x0F)}
    # ldb [0]; and #0xf; jeq #5 -> accept: the header length is not known.
    program = [
        (0x30, 0, 0, 0),
        (0x54, 0, 0, 0xF),
        (0x15, 0, 1, 5),
        (0x06, 0, 0, 1),
        (0x06, 0, 0, 0),
    ]
    assert may_accept(program, ihl)
    # ldb [0]; and #0xf0; jeq #0x60 -> accept: an IPv4 packet never is.
    program[1], program[2] = (0x54, 0, 0, 0xF0), (0x15, 0, 1, 0x60)
    assert not may_accept(program, ihl)


def test_sampling_doubles_while_events_are_lost_and_halves_after_calm() -> None:
    s = Sampler()
    asked = []

    def lost(n: int) -> Callable[[], int]:
        return lambda: asked.append(n) or n

    assert s.consider(0.6, lost(0)) is None
    assert s.consider(1.2, lost(500)) == 2
    assert s.consider(1.3, lost(900)) is None  # reconsidered every half second
    assert asked == [0, 500]  # the kernel's counters read only when due
    assert s.consider(1.8, lost(900)) == 4
    assert s.consider(2.4, lost(900)) is None
    assert s.consider(1.8 + CALM_S + 0.1, lost(900)) == 2
    assert [step.every for step in s.steps] == [2, 4, 2]
    assert "400 events lost" in s.steps[1].describe() and "1 in 4" in s.steps[1].describe()
    fixed = Sampler(8)
    assert fixed.consider(5.0, lost(10_000)) is None and fixed.every == 8
    assert fixed.steps[0].why == "--sample"
    assert Sampler(1).steps == []
