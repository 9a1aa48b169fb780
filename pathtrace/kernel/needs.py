"""Tests every packet a classic BPF filter accepts passes, read off the filter.

`watch` runs the user's filter on each packet entering the traced set. A filter
on addresses (`host 10.22.0.3`) accepts packets of every protocol, so the
protocol gate (reach.py) lets all traffic through to the interpreter, ~100 ns a
packet. Yet every path of such a filter to an accepting return compares some
bytes with a constant: the source or the destination address. Those
comparisons, one per accepting path, make a test the probes run first with a
few loads: a packet that fails all of them cannot be accepted, and is not run
through the filter.

An ``Atom`` is one comparison: (the ``size`` bytes at ``offset``, big-endian)
& ``mask`` == ``value``, where ``offset`` counts from the IP header, plus
classic BPF's MSH of byte ``base - 1`` (4 * its low nibble: IPv4's header
length, how libpcap finds ports) when ``base`` is set. ``needs`` walks every
path of the program, keeps on each the equalities its jumps assert of a loaded
value (masked or not), and picks one per accepting path. The result is sound
by construction: a path that asserts no usable equality (`not host X`, `len >
200`, `tcp`) makes the answer None (no test: every packet is run through). A
path the walk cannot tell infeasible only costs an atom. The unit test runs
filters on random packets with their constants planted: every accepted packet
passes an atom.
"""

from __future__ import annotations

from dataclasses import dataclass

MASK = 0xFFFFFFFF
# Bytes the protocol gate decides already: the version nibble, IPv6's next
# header, IPv4's protocol. A comparison of only these rules out nothing more.
GATED = {(0, 1), (6, 1), (9, 1)}
# A comparison of fewer bits rules out too little to pay for its load.
FEWEST_BITS = 8
# Path steps walked before giving up (no test): libpcap's programs for a few
# hosts and ports take hundreds.
BUDGET = 50_000


@dataclass(frozen=True)
class Load:
    """A value loaded from the packet, masked: what A may hold."""

    offset: int
    size: int
    mask: int
    base: int = 0  # 0: from the IP header; n: plus MSH of byte n - 1


@dataclass(frozen=True)
class Const:
    value: int


@dataclass(frozen=True)
class Msh:
    """X as classic BPF's MSH sets it: 4 * (the low nibble of the byte at offset)."""

    offset: int


@dataclass(frozen=True)
class Atom:
    offset: int
    size: int
    mask: int
    value: int
    base: int = 0

    @property
    def bits(self) -> int:
        return bin(self.mask).count("1")

    def holds(self, pkt: bytes) -> bool:
        """As the probes test it (pt_watch_atoms_pass): bytes missing fail."""
        offset = self.offset
        if self.base:
            if self.base - 1 >= len(pkt):
                return False
            offset += (pkt[self.base - 1] & 0xF) * 4
        if offset + self.size > len(pkt):
            return False
        return int.from_bytes(pkt[offset : offset + self.size], "big") & self.mask == self.value


Value = Load | Const | Msh | None
# What a path asserted of a loaded value: (the load, the constant, equal or not).
Fact = tuple[Load, int, bool]


def _size(code: int) -> int:
    return {0x10: 1, 0x08: 2, 0x00: 4}.get(code & 0x18, 4)


def _load(code: int, k: int, x: Value) -> Value:
    """A's or X's value after a load instruction (mode ABS or IND; else unknown)."""
    size, mode = _size(code), code & 0xE0
    full = (1 << (8 * size)) - 1
    if mode == 0x20:
        return Load(k, size, full)
    if mode == 0x40 and isinstance(x, Const):
        return Load((x.value + k) & MASK, size, full)
    if mode == 0x40 and isinstance(x, Msh):
        return Load(k, size, full, x.offset + 1)
    return None


def _decided(facts: tuple[Fact, ...], a: Load, k: int) -> bool | None:
    """Whether the path's facts decide ``a == k`` (None: they do not)."""
    if k & ~a.mask:
        return False
    for load, value, equal in facts:
        if load == a:
            if equal:
                return value == k
            if value == k:
                return False
    return None


def _paths(program: list[tuple[int, int, int, int]]) -> list[tuple[Fact, ...]] | None:
    """The facts of every path to an accepting return; None past the budget or on
    an instruction the walk does not model (which could accept anything)."""
    accepting: list[tuple[Fact, ...]] = []
    start: tuple[int, Value, Value, tuple[Value, ...], tuple[Fact, ...]] = (
        0, Const(0), Const(0), (None,) * 16, (),
    )  # fmt: skip
    todo, steps = [start], 0
    while todo:
        steps += 1
        if steps > BUDGET:
            return None
        pc, a, x, mem, facts = todo.pop()
        if pc >= len(program):
            continue  # the probes end such a run without a match
        code, jt, jf, k = program[pc]
        cls = code & 0x07
        if cls in (0x00, 0x01):
            mode = code & 0xE0
            v: Value = (
                Const(k) if mode == 0x00
                else mem[k & 15] if mode == 0x60
                else Msh(k) if mode == 0xA0
                else _load(code, k, x)
            )  # fmt: skip
            if cls == 0x00:
                a = v
            else:
                x = v
            todo.append((pc + 1, a, x, mem, facts))
        elif cls in (0x02, 0x03):
            stored = list(mem)
            stored[k & 15] = a if cls == 0x02 else x
            todo.append((pc + 1, a, x, tuple(stored), facts))
        elif cls == 0x04:
            op = code & 0xF0
            if op == 0x50 and not code & 0x08 and isinstance(a, Load):
                a = Load(a.offset, a.size, a.mask & k, a.base)
            else:
                a = None
            todo.append((pc + 1, a, x, mem, facts))
        elif cls == 0x05:
            op = code & 0xF0
            if op == 0x00:
                todo.append((pc + 1 + k, a, x, mem, facts))
                continue
            if op == 0x10 and not code & 0x08 and isinstance(a, Load):
                known = _decided(facts, a, k)
                if known is not False:
                    todo.append((pc + 1 + jt, a, x, mem, facts + ((a, k, True),)))
                if known is not True:
                    todo.append((pc + 1 + jf, a, x, mem, facts + ((a, k, False),)))
                continue
            todo.append((pc + 1 + jt, a, x, mem, facts))
            todo.append((pc + 1 + jf, a, x, mem, facts))
        elif cls == 0x06:
            ret = {0x10: a, 0x08: x}.get(code & 0x18, Const(k))
            if not (isinstance(ret, Const) and ret.value == 0):
                accepting.append(facts)
        elif cls == 0x07:
            if code & 0xF8 == 0x80:
                a = x
            else:
                x = a
            todo.append((pc + 1, a, x, mem, facts))
    return accepting


def _usable(load: Load) -> bool:
    gated = load.base == 0 and (load.offset, load.size) in GATED
    return not gated and bin(load.mask).count("1") >= FEWEST_BITS


def needs(program: list[tuple[int, int, int, int]], most: int) -> tuple[Atom, ...] | None:
    """Atoms one of which every packet ``program`` accepts passes; None when some
    accepting path asserts no usable equality, or more than ``most`` are needed.
    An empty tuple: the program accepts nothing."""
    paths = _paths(program)
    if paths is None:
        return None
    chosen: list[Atom] = []
    for facts in paths:
        candidates = [
            Atom(load.offset, load.size, load.mask, value, load.base)
            for load, value, equal in facts
            if equal and _usable(load)
        ]
        if not candidates:
            return None
        if any(c in chosen for c in candidates):
            continue
        # The most bits; then the latest bytes: an address's low-order words tell
        # one network's hosts apart, its high-order ones are the whole network's.
        chosen.append(max(candidates, key=lambda c: (c.bits, c.base, c.offset)))
        if len(chosen) > most:
            return None
    return tuple(chosen)
