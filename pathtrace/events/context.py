"""What decoding needs from the machine: the clock, namespace names, kernel names."""

from __future__ import annotations

import bisect
import os
import time
from functools import cached_property

CLOCK_TAI, CLOCK_BOOTTIME = 1, 2


class KernelClock:
    """Converts the probes' kernel time to wall-clock (UTC) nanoseconds.

    The probes read CLOCK_TAI, which is the wall clock plus the kernel's TAI
    offset: NTP steps and slews move both alike, and suspend does not stop
    it, so one subtraction converts exactly, whenever the event happened.
    Kernels before 6.1 lack the TAI helper; there the probes read BOOTTIME and
    we pin it to the wall clock when tracing starts (a later clock step would
    shift events by the step: said in the run's facts).
    """

    def __init__(self) -> None:
        self.tai_offset_ns = self._offset(time.CLOCK_TAI)
        self.boot_offset_ns = self._offset(time.CLOCK_BOOTTIME)

    @staticmethod
    def _offset(clock: int) -> int:
        # The smallest gap between two reads bounds the error of the offset.
        best = None
        for _ in range(5):
            before = time.clock_gettime_ns(time.CLOCK_REALTIME)
            other = time.clock_gettime_ns(clock)
            after = time.clock_gettime_ns(time.CLOCK_REALTIME)
            if best is None or after - before < best[0]:
                best = (after - before, other - (before + after) // 2)
        assert best is not None
        return best[1]

    def to_wall_ns(self, kernel_ns: int, clock: int) -> int:
        if clock == CLOCK_TAI:
            return kernel_ns - self.tai_offset_ns
        return kernel_ns - self.boot_offset_ns


class DecodeContext:
    def __init__(
        self, clock: KernelClock | None = None, namespaces: dict[int, str] | None = None
    ) -> None:
        self.clock = clock or KernelClock()
        self.namespaces = namespaces if namespaces is not None else namespace_names()

    def namespace_name(self, inode: int) -> str:
        if inode not in self.namespaces:
            self.namespaces.update(namespace_names())  # one made since we started
        return self.namespaces.get(inode, f"netns:{inode}" if inode else "")

    @cached_property
    def _drop_reasons(self) -> dict[int, str]:
        from pathtrace.kernel.libbpf import KernelBtf

        btf = KernelBtf()
        try:
            return {
                value: name.removeprefix("SKB_DROP_REASON_")
                for value, name in btf.enum("skb_drop_reason").items()
            }
        finally:
            btf.close()

    def drop_reason(self, value: int) -> str:
        return self._drop_reasons.get(value, str(value))

    @cached_property
    def _symbols(self) -> tuple[list[int], list[str]]:
        pairs = []
        try:
            with open("/proc/kallsyms") as f:
                for line in f:
                    address, kind, name = line.split()[:3]
                    if kind in "tT":
                        pairs.append((int(address, 16), name))
        except OSError:
            pass
        pairs.sort()
        return [a for a, _ in pairs], [n for _, n in pairs]

    def symbol(self, address: int) -> str | None:
        if not address:
            return None
        addresses, names = self._symbols
        i = bisect.bisect_right(addresses, address) - 1
        if i < 0 or not addresses[i]:
            return f"{address:#x}"  # kallsyms hides addresses from the unprivileged
        return f"{names[i]}+{address - addresses[i]:#x}"


def namespace_names() -> dict[int, str]:
    """Inode -> name of every named namespace, and of the root namespace."""
    from pathtrace.lab import netns

    names = {netns.root_inode(): "root"}
    for name in netns.names():
        try:
            names[os.stat(netns.path(name)).st_ino] = name
        except OSError:
            continue
    return names
