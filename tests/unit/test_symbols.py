"""Drop locations are named from /proc/kallsyms by a search, not a parse of
the whole file: it must name every address as the whole table would."""

from __future__ import annotations

import bisect
import os
import random
import re

import pytest

from pathtrace.kernel.decode import KernelSymbols

TEXT = re.compile(rb"^([0-9a-f]+) [tT] (\S+)", re.M)


def _by_table(pairs: list[tuple[bytes, bytes]], addresses: list[int], address: int) -> set[str]:
    """Every name the table gives ``address``: aliases share a start (a function
    and its ``_enable`` twin), and either names it rightly."""
    i = bisect.bisect_right(addresses, address) - 1
    if i < 0 or not addresses[i]:
        return {f"{address:#x}"}
    first = bisect.bisect_left(addresses, addresses[i])
    offset = address - addresses[i]
    return {f"{name.decode()}+{offset:#x}" for _, name in pairs[first : i + 1]}


@pytest.mark.skipif(os.geteuid() != 0, reason="kallsyms shows addresses to root only")
def test_names_as_the_whole_table_does() -> None:
    with open("/proc/kallsyms", "rb") as f:
        data = f.read()
    starts = sorted({int(a, 16) for a, _ in TEXT.findall(data)})
    rng = random.Random(7)
    # Symbol starts, addresses inside functions, just before a start, the ends of
    # 4 KiB blocks, past the last symbol, module text (at the end of the file).
    picks = rng.sample(starts, 100) + starts[-20:]
    addresses = [a + rng.randrange(0, 64) for a in picks] + [a - 1 for a in picks[:60]]
    addresses += [(a | 0xFFF) for a in picks[:30]] + [(a & ~0xFFF) for a in picks[:30]]
    addresses += [starts[-1] + 0x100000, starts[0] - 1]
    pairs = sorted(TEXT.findall(data))
    table = [int(a, 16) for a, _ in pairs]
    symbols = KernelSymbols()
    symbols._text = b"\n" + data  # the same text (a module loaded meanwhile would differ)
    for address in addresses:
        assert symbols.name(address) in _by_table(pairs, table, address), hex(address)


def test_without_readable_addresses_the_address_is_said() -> None:
    symbols = KernelSymbols()
    symbols._text = b"\n0000000000000000 T _stext\n0000000000000000 t foo [mod]\n"
    assert symbols.name(0xFFFFFFFF81000010) == "0xffffffff81000010"
