"""A run's captures as pcapng: written with each packet's hop in its comment, read back."""

from __future__ import annotations

import struct
from typing import IO

from pathtrace.errors import BundleError
from pathtrace.model.event import Event
from pathtrace.model.result import RunResult
from pathtrace.model.trace import Hop
from pathtrace.system import scapy_setup


def _comment(hop: Hop | None, event: Event | None, number: int | None, title: str) -> str:
    if hop is None or event is None:
        return "no event matched this packet"
    text = f"probe {number} {title}: {hop.text}"
    if hop.translation:
        text += f" | {hop.translation.describe()}"
    if hop.drop_reason:
        text += f" | dropped: {hop.drop_reason}"
    return text


def write(out: IO[bytes], result: RunResult) -> None:
    """Every captured packet, an interface block per node/interface, a comment naming its hop."""
    scapy_setup.prepare()
    from scapy.layers.l2 import Ether
    from scapy.utils import PcapNgWriter

    hop_of_event: dict[int, tuple[Hop, int, str, str | None]] = {}
    for probe in result.probes:
        for series in probe.series:
            translated = None  # what this packet has been through so far
            for hop in series.hops:
                if hop.translation:
                    translated = hop.translation.describe()
                for position in hop.events:
                    hop_of_event[position] = (hop, probe.number, series.title, translated)
    event_of_capture = (
        {c: e for e, c in result.correlation.matched.items()} if result.correlation else {}
    )
    # scapy's pcapng writer opens a path itself: the file's own /proc link is
    # that very file, already created without following any symlink.
    out.flush()
    writer = PcapNgWriter(f"/proc/self/fd/{out.fileno()}")
    try:
        for n, captured in enumerate(result.captures):
            at: int | None
            packet = Ether(captured.data)
            node = result.namespaces.get(captured.namespace, captured.namespace)
            packet.sniffed_on = f"{node}/{captured.ifname}"
            packet.direction = 2 if captured.direction == "out" else 1
            packet.time = captured.time_ns / 1e9
            at = event_of_capture.get(n)
            found = hop_of_event.get(at) if at is not None else None
            if found is not None and at is not None:
                hop, index, direction, translated = found
                comment = _comment(hop, result.events[at], index, direction)
                if translated and not hop.translation:
                    comment += f" | after {translated}"
            else:
                comment = _comment(None, None, None, "")
            packet.comments = [comment.encode()]
            writer.write(packet)
    finally:
        writer.close()


def read_frames(data: bytes, where: str) -> list[bytes]:
    """The frames of a bundle's trace.pcapng (its bytes), in order."""
    import io
    import logging

    scapy_setup.prepare()
    from scapy.error import Scapy_Exception
    from scapy.utils import RawPcapNgReader

    # scapy logs its own warning about a damaged file; ours is the one line.
    scapy_log = logging.getLogger("scapy")
    level = scapy_log.level
    scapy_log.setLevel(logging.ERROR)
    frames = []
    try:
        reader = RawPcapNgReader(io.BytesIO(data))  # type: ignore[arg-type]
        for frame, _meta in reader:
            frames.append(bytes(frame))
    except (Scapy_Exception, EOFError, ValueError, struct.error, MemoryError) as error:
        raise BundleError(f"{where}: truncated or corrupt pcapng ({error})") from None
    finally:
        scapy_log.setLevel(level)
    return frames
