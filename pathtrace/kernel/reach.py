"""Which packets a classic BPF filter can never accept, read off the filter itself.

`watch` runs the user's filter where a packet enters the traced set. Most traffic
the filter does not match is told apart by its IP version and protocol alone
(`udp port 53` rejects every TCP segment at its second test), so the probes ask
first, at the price of an array read, whether the filter can accept any packet of
that version and protocol. The answer is worked out here once per filter by
running it on a packet whose bytes are unknown except those two (abstract
interpretation over tristate numbers, as the kernel's verifier tracks registers):
a path to a non-zero return that the known bytes do not rule out is "may accept".
The answer is sound by construction (an unknown is never decided), and the
probes' own test compares it with libpcap's matches on real packets.
"""

from __future__ import annotations

from dataclasses import dataclass

MASK = 0xFFFFFFFF
# IPv6 extension headers the probes skip (so the protocol they read is not the
# first next-header byte): hop-by-hop, routing, fragment, destination options.
IPV6_EXTENSIONS = (0, 43, 44, 60)
# Protocols that carry another IP packet (IPIP, IPv6-in-IP, GRE): a flow picked by
# its outer header may be followed by its inner one, of any protocol.
CARRIERS = (4, 41, 47)
UDP = 17


@dataclass(frozen=True)
class Tnum:
    """A 32-bit number whose bits under ``mask`` are unknown (value is 0 there)."""

    value: int
    mask: int

    @staticmethod
    def const(k: int) -> Tnum:
        return Tnum(k & MASK, 0)

    @property
    def known(self) -> bool:
        return self.mask == 0

    @property
    def low(self) -> int:
        return self.value

    @property
    def high(self) -> int:
        return self.value | self.mask

    def and_(self, o: Tnum) -> Tnum:
        alpha, beta = self.value | self.mask, o.value | o.mask
        v = self.value & o.value
        return Tnum(v, alpha & beta & ~v & MASK)

    def or_(self, o: Tnum) -> Tnum:
        v = self.value | o.value
        return Tnum(v, (self.mask | o.mask) & ~v & MASK)

    def xor(self, o: Tnum) -> Tnum:
        mu = self.mask | o.mask
        return Tnum((self.value ^ o.value) & ~mu & MASK, mu)

    def add(self, o: Tnum) -> Tnum:
        sm, sv = (self.mask + o.mask) & MASK, (self.value + o.value) & MASK
        chi = ((sm + sv) & MASK) ^ sv
        mu = chi | self.mask | o.mask
        return Tnum(sv & ~mu & MASK, mu & MASK)

    def sub(self, o: Tnum) -> Tnum:
        dv = (self.value - o.value) & MASK
        chi = ((dv + self.mask) & MASK) ^ ((dv - o.mask) & MASK)
        mu = chi | self.mask | o.mask
        return Tnum(dv & ~mu & MASK, mu & MASK)

    def shift(self, o: Tnum, left: bool) -> Tnum:
        if not o.known:
            return UNKNOWN
        if o.value >= 32:
            return Tnum.const(0)
        if left:
            return Tnum((self.value << o.value) & MASK, (self.mask << o.value) & MASK)
        return Tnum(self.value >> o.value, self.mask >> o.value)


UNKNOWN = Tnum(0, MASK)


def _alu(op: int, a: Tnum, src: Tnum) -> Tnum | None:
    """A's new value; None where the instruction ends the run (division by 0)."""
    if op == 0x00:
        return a.add(src)
    if op == 0x10:
        return a.sub(src)
    if op == 0x40:
        return a.or_(src)
    if op == 0x50:
        return a.and_(src)
    if op == 0xA0:
        return a.xor(src)
    if op in (0x60, 0x70):
        return a.shift(src, op == 0x60)
    if op == 0x80:
        return Tnum.const(-a.value) if a.known else UNKNOWN
    if op in (0x30, 0x90) and src.known and src.value == 0:
        return None
    if a.known and src.known and op in (0x20, 0x30, 0x90):
        x, y = a.value, src.value
        return Tnum.const(x * y if op == 0x20 else x // y if op == 0x30 else x % y)
    return UNKNOWN


def _compare(op: int, a: Tnum, b: Tnum) -> tuple[bool, bool]:
    """(may be true, may be false) of a conditional jump's test."""
    if op == 0x10:  # JEQ
        if a.known and b.known:
            return a.value == b.value, a.value != b.value
        differ = (a.value ^ b.value) & ~(a.mask | b.mask) & MASK
        return not differ, True
    if op in (0x20, 0x30):  # JGT, JGE
        strict = op == 0x20
        surely = a.low > b.high if strict else a.low >= b.high
        never = a.high <= b.low if strict else a.high < b.low
        return not never, not surely
    if op == 0x40:  # JSET
        both = a.and_(b)
        return both.high != 0, both.value == 0
    return True, True


def _byte(known: dict[int, Tnum], offset: int) -> Tnum:
    return known.get(offset, Tnum(0, 0xFF))


def _load(known: dict[int, Tnum], offset: Tnum, size: int) -> Tnum:
    if not offset.known:
        return UNKNOWN if size == 4 else Tnum(0, (1 << (8 * size)) - 1)
    out = Tnum.const(0)
    for i in range(size):
        b = _byte(known, offset.value + i)
        out = out.shift(Tnum.const(8), True).or_(b)
    return out


State = tuple[int, Tnum, Tnum, tuple[Tnum, ...]]


def may_accept(
    program: list[tuple[int, int, int, int]], known: dict[int, Tnum], budget: int = 20000
) -> bool:
    """Whether ``program`` can return non-zero on a packet whose byte at each offset
    of ``known`` is as given and whose other bytes (and length) are anything. A
    program longer to explore than ``budget`` states is said to accept."""
    start: State = (0, Tnum.const(0), Tnum.const(0), (UNKNOWN,) * 16)
    todo, seen = [start], {start}
    while todo:
        if len(seen) > budget:
            return True
        pc, a, x, mem = todo.pop()
        nexts: list[State] = []
        if pc >= len(program):
            continue
        code, jt, jf, k = program[pc]
        cls = code & 0x07
        if cls in (0x00, 0x01):  # LD, LDX
            size = {0x10: 1, 0x08: 2, 0x00: 4}.get(code & 0x18, 4)
            mode = code & 0xE0
            if mode == 0x00:
                v = Tnum.const(k)
            elif mode == 0x80:  # the packet's length
                v = UNKNOWN
            elif mode == 0x60:
                v = mem[k & 15]
            elif mode == 0x20:
                v = _load(known, Tnum.const(k), size)
            elif mode == 0x40:
                v = _load(known, x.add(Tnum.const(k)), size)
            elif mode == 0xA0:  # 4 * (byte & 0xf)
                v = _byte(known, k).and_(Tnum.const(0xF)).shift(Tnum.const(2), True)
            else:
                continue  # the probes end the run: no match
            if cls == 0x00:
                a = v
            else:
                x = v
            nexts.append((pc + 1, a, x, mem))
        elif cls in (0x02, 0x03):  # ST, STX
            stored = list(mem)
            stored[k & 15] = a if cls == 0x02 else x
            nexts.append((pc + 1, a, x, tuple(stored)))
        elif cls == 0x04:  # ALU
            result = _alu(code & 0xF0, a, x if code & 0x08 else Tnum.const(k))
            if result is not None:
                nexts.append((pc + 1, result, x, mem))
        elif cls == 0x05:  # JMP
            op = code & 0xF0
            if op == 0x00:
                nexts.append((pc + 1 + k, a, x, mem))
            else:
                true, false = _compare(op, a, x if code & 0x08 else Tnum.const(k))
                if true:
                    nexts.append((pc + 1 + jt, a, x, mem))
                if false:
                    nexts.append((pc + 1 + jf, a, x, mem))
        elif cls == 0x06:  # RET
            ret = {0x10: a, 0x08: x}.get(code & 0x18, Tnum.const(k))
            if ret.high != 0:
                return True
        else:  # MISC: TAX, TXA
            if code & 0xF8 == 0x80:
                a = x
            else:
                x = a
            nexts.append((pc + 1, a, x, mem))
        for state in nexts:
            if state not in seen:
                seen.add(state)
                todo.append(state)
    return False


def header(family: int, protocol: int) -> dict[int, Tnum]:
    """What is known of a packet of an IP version and (first) protocol: the version
    nibble (not IPv4's header length) and the protocol byte."""
    if family == 6:
        return {0: Tnum(0x60, 0x0F), 6: Tnum.const(protocol)}
    return {0: Tnum(0x40, 0x0F), 9: Tnum.const(protocol)}


@dataclass(frozen=True)
class Reach:
    """Per IP version (index 0: IPv4, 1: IPv6) and protocol: ``pick``, the filter
    may accept a packet whose first protocol byte is this; ``keyed``, a followed
    flow may have packets of this protocol (as the probes read it, past IPv6's
    extension headers and inside tunnels), so they are looked up by their key."""

    pick: tuple[bytes, bytes]
    keyed: tuple[bytes, bytes]
    # IPv6 packets with extension headers: the filter may accept one.
    pick6_extended: bool


def reach(program: list[tuple[int, int, int, int]], udp_tunnels: bool) -> Reach:
    """``udp_tunnels``: the probes look inside UDP datagrams to some port (VXLAN,
    Geneve), so a picked UDP datagram may carry a flow of any protocol."""
    pick = [bytes(may_accept(program, header(family, p)) for p in range(256)) for family in (4, 6)]
    keyed = [bytearray(pick[0]), bytearray(pick[1])]
    extended = any(pick[1][e] for e in IPV6_EXTENSIONS)
    carriers = CARRIERS + ((UDP,) if udp_tunnels else ())
    # A picked IPv6 packet with extension headers may end in any protocol, a carrier too.
    if extended or any(pick[f][c] for f in (0, 1) for c in carriers):
        keyed = [bytearray(b"\x01" * 256), bytearray(b"\x01" * 256)]
    return Reach((pick[0], pick[1]), (bytes(keyed[0]), bytes(keyed[1])), extended)


def protocols(r: Reach, family: int) -> list[int]:
    """The protocols the filter may accept in ``family`` (for the report)."""
    return [p for p in range(256) if r.pick[family == 6][p]]
