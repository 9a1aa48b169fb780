"""Every packet a filter accepts passes one of the atoms kernel/needs.py reads off it.

Packets are random (IPv4 with and without options, IPv6, every protocol the
filter names and others), with the filter's own constants planted where its
loads read (absolute, and past IPv4's header as libpcap reads ports), so that
many are accepted; each is run through the classic BPF interpreter of
test_reach (written from linux/filter.h). An accepted packet that fails every
atom would be a match the probes pass over.
"""

from __future__ import annotations

import random

import pytest

from pathtrace.capture.filter import compile_watch_filter
from pathtrace.kernel.needs import Atom, needs
from tests.unit.test_reach import packet, run

MOST = 8

EXPRESSIONS = [
    "host 10.0.0.1",
    "src host 10.0.0.1 and udp port 53",
    "net 10.1.0.0/16 and tcp",
    "net 10.0.0.0/8 or host fd00::1",
    "ip6 host fd00::1:2",
    "udp port 53",
    "tcp port 80 or udp port 53",
    "dst port 8080 and host 192.168.1.1",
    "icmp[icmptype] = icmp-echo",
    "udp[8:4] = 0x41424344",
    "host 10.0.0.1 and not udp port 53",
    "(host 10.0.0.1 or host 10.0.0.2) and (port 80 or port 443)",
    "ip[1] = 0x10 and host 1.2.3.4",
    "icmp6 and dst host fd00::5",
    "ether proto \\ip and host 10.0.0.9",
]


def _sites(program: list[tuple[int, int, int, int]]) -> dict[tuple[int, int, bool], list[int]]:
    """Where the program loads (offset, size, past IPv4's header), and the constants
    its next comparisons hold the loaded value to."""
    sites: dict[tuple[int, int, bool], list[int]] = {}
    last = None
    for code, _, _, k in program:
        cls, mode, size = code & 7, code & 0xE0, {0x10: 1, 0x08: 2, 0x00: 4}[code & 0x18]
        if cls == 0 and mode in (0x20, 0x40):
            last = (k, size, mode == 0x40)
            sites.setdefault(last, [])
        elif cls == 5 and code & 0xF0 in (0x10, 0x20, 0x30) and not code & 8 and last:
            sites[last].append(k)
    return sites


def _planted(rng: random.Random, program: list[tuple[int, int, int, int]]) -> bytes:
    family = rng.choice([4, 4, 6])
    pkt = bytearray(packet(rng, family, rng.choice([1, 6, 17, 58, rng.randrange(256)])))
    for (offset, size, past), constants in _sites(program).items():
        if not constants or rng.random() < 0.1:
            continue
        if past:
            offset += (pkt[0] & 0xF) * 4
        if offset + size <= len(pkt):
            value = rng.choice(constants) + (rng.random() < 0.2)  # and just past it
            value &= (1 << (8 * size)) - 1
            pkt[offset : offset + size] = value.to_bytes(size, "big")
    return bytes(pkt)


@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_every_accepted_packet_passes_an_atom(expression: str) -> None:
    program = compile_watch_filter(expression)
    atoms = needs(program, MOST)
    assert atoms, expression  # each of these compares an address or a port on every path
    rng = random.Random(expression)
    accepted = 0
    for _ in range(6000):
        pkt = _planted(rng, program)
        if run(program, pkt):
            accepted += 1
            assert any(a.holds(pkt) for a in atoms), (expression, pkt.hex(), atoms)
    assert accepted >= 20, (expression, accepted)  # the planting makes matches


def test_a_path_without_an_equality_gives_no_test() -> None:
    for expression in (
        "not host 10.0.0.1",
        "tcp",
        "len > 200",
        "ip[8] < 10",
        "udp or host 1.1.1.1",
    ):
        assert needs(compile_watch_filter(expression), MOST) is None, expression


def test_an_address_filter_needs_its_address_at_either_end() -> None:
    atoms = needs(compile_watch_filter("host 10.0.0.1"), MOST)
    assert atoms is not None
    assert {(a.offset, a.size, a.mask, a.value) for a in atoms} == {
        (12, 4, 0xFFFFFFFF, 0x0A000001),
        (16, 4, 0xFFFFFFFF, 0x0A000001),
    }
    # A network: the masked word.
    (src,) = needs(compile_watch_filter("src net 10.1.0.0/16"), MOST) or ()
    assert (src.offset, src.mask, src.value) == (12, 0xFFFF0000, 0x0A010000)
    # Ports past IPv4's header are read from its length (MSH of byte 0), IPv6's at 40.
    ports = needs(compile_watch_filter("udp dst port 53"), MOST) or ()
    assert Atom(2, 2, 0xFFFF, 53, base=1) in ports and Atom(42, 2, 0xFFFF, 53) in ports


def test_more_atoms_than_the_probes_hold_give_no_test() -> None:
    hosts = " or ".join(f"host 10.0.0.{i}" for i in range(1, 6))  # 10 atoms
    assert needs(compile_watch_filter(hosts), MOST) is None
    assert needs(compile_watch_filter(hosts), 10) is not None
