"""What an answer said, where its bytes are at hand: a DNS answer's code and
records, read by scapy from the answer the capture saw arrive at the source.

Only an answer to the query the probe asked (the DNS id pathtrace gave it) is
read; anything else says nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from pathtrace.model.capture import Captured, Correlation
from pathtrace.model.trace import ProbeTrace

RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}


def with_dns_answers(
    probes: list[ProbeTrace],
    captures: Sequence[Captured],
    correlation: Correlation,
    source: str,
    run: int,
) -> list[ProbeTrace]:
    """Answered DNS probes, their verdict saying what the server answered."""
    arrived: dict[int, bytes] = {}
    for c, tag in zip(captures, correlation.capture_tags, strict=False):
        if tag and tag[1] == "reply" and c.namespace == source and c.direction == "in":
            arrived.setdefault(tag[0], c.data)
    out = []
    for probe in probes:
        said = _dns(arrived.get(probe.index), (run + probe.index) & 0xFFFF)
        if said and probe.verdict.outcome == "answered":
            probe = replace(
                probe, verdict=replace(probe.verdict, summary=f"{probe.verdict.summary}: {said}")
            )
        out.append(probe)
    return out


def _dns(frame: bytes | None, query_id: int) -> str | None:
    udp = frame is not None and (
        (frame[12:14] == b"\x08\x00" and len(frame) > 23 and frame[23] == 17)
        or (frame[12:14] == b"\x86\xdd" and len(frame) > 20 and frame[20] == 17)
    )
    if frame is None or not udp:
        return None  # only a UDP answer can be a DNS one: the rest costs no dissection
    # scapy is set up (system.scapy_setup) by whoever got the frames: the session's
    # importer, the bundle reader.
    from scapy.layers.dns import DNS
    from scapy.layers.l2 import Ether

    try:
        packet = Ether(frame)
    except Exception:  # scapy raises what it likes on bytes it cannot dissect
        return None
    dns = packet.getlayer(DNS)
    if dns is None or not dns.qr or dns.id != query_id:
        return None
    records = []
    for i in range(dns.ancount or 0):
        try:
            rr = dns.an[i]
        except (IndexError, TypeError):
            break
        name = rr.rrname.decode(errors="replace") if isinstance(rr.rrname, bytes) else rr.rrname
        data = rr.rdata.decode(errors="replace") if isinstance(rr.rdata, bytes) else rr.rdata
        kind = rr.sprintf("%type%")
        records.append(f"{name} {kind} {data}")
    code = RCODES.get(dns.rcode, f"rcode {dns.rcode}")
    return f"DNS {code}" + (f", {'; '.join(records)}" if records else ", no records")
