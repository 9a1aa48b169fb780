"""A watch saved to a folder: its report, events and state, and what the
per-interface captures kept, to study later without root.

    bundle.json      format ("pathtrace.watch"), version, the expression, what is inside
    trace.pcapng     what the expression matched on each interface of the traced
                     namespaces, an interface block per node/interface, each packet's
                     comment naming the flow it belongs to (by its addresses and
                     ports before or after any translation the flow's hops show)
    events.jsonl     the events (first line: format and version)
    captures.jsonl   each captured packet's namespace, interface, direction, time
    report.txt, report.json, report.md   as `pathtrace watch` printed them
    state.json       each namespace at the start of the watch

`pathtrace bundle show` prints the saved report; `bundle list` lists it.
"""

from __future__ import annotations

import io
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from pathtrace import __version__
from pathtrace.model.flow import Flow, WatchResult
from pathtrace.output import watch_report
from pathtrace.output.bundle import DEFAULT_DIR, WATCH_FORMAT, commit, new_folder, write_events
from pathtrace.system import scapy_setup
from pathtrace.system.safe_files import BundleFolder

VERSION = 1
Key = tuple[str, str, str, int, int]


def destination(
    expression: str, directory: Path | None = None, root: Path = DEFAULT_DIR
) -> BundleFolder:
    """Where a watch's bundle will go, made ready before anything is armed: a
    folder under ``root`` named by the time and the expression, unless given."""
    slug = re.sub(r"[^A-Za-z0-9.]+", "_", expression).strip("_")[:40] or "watch"
    return new_folder(f"{datetime.now(UTC):%Y%m%dT%H%M%S}Z-watch-{slug}", directory, root)


def save(result: WatchResult, folder: BundleFolder) -> Path:
    """Writes the bundle; it is complete under its name, or absent (SaveError)."""
    return commit(folder, lambda f: _write(f, result))


def _write(folder: BundleFolder, result: WatchResult) -> None:
    with folder.create("trace.pcapng") as f:
        _pcapng(f, result)
    write_events(folder, result.events, result.captures)
    folder.write("report.txt", (watch_report.text(result) + "\n").encode())
    capture = {
        "interfaces": [f"{result.namespaces.get(ns, ns)}/{name}" for ns, name in result.capture_on],
        "packets": len(result.captures),
        "dropped": result.capture_drops,
    }
    with folder.create("report.json") as f, io.TextIOWrapper(f, encoding="utf-8") as text:
        watch_report.write_json(result, text, capture=capture)
    folder.write("report.md", (watch_report.markdown(result) + "\n").encode())
    state = {ns: s.to_json() for ns, s in result.states.items()}
    folder.write("state.json", json.dumps({"namespaces": state}, indent=1).encode())
    manifest = {
        "format": WATCH_FORMAT,
        "version": VERSION,
        "expression": result.expression,
        "created": datetime.now(UTC).isoformat(),
        "pathtrace": __version__,
        "files": folder.files,
    }
    folder.write("bundle.json", json.dumps(manifest, indent=1).encode())


def _pcapng(out: IO[bytes], result: WatchResult) -> None:
    scapy_setup.prepare()
    # The IP layers first: a frame dissected before they are imported stays Raw.
    import scapy.layers.inet
    import scapy.layers.inet6  # noqa: F401
    from scapy.layers.l2 import Ether
    from scapy.utils import PcapNgWriter

    flows = _flow_keys(result.flows)
    # scapy's pcapng writer opens a path itself: the file's own /proc link is
    # that very file, already created without following any symlink.
    out.flush()
    writer = PcapNgWriter(f"/proc/self/fd/{out.fileno()}")
    try:
        for captured in result.captures:
            packet = Ether(captured.data)
            node = result.namespaces.get(captured.namespace, captured.namespace)
            packet.sniffed_on = f"{node}/{captured.ifname}"
            packet.direction = 2 if captured.direction == "out" else 1
            packet.time = captured.time_ns / 1e9
            key = _packet_key(packet)
            flow = flows.get(key) if key is not None else None
            comment = (
                f"flow {flow.number}: {flow.protocol} {flow.client} > {flow.server}"
                if flow is not None
                else "matched the expression; in no flow followed"
            )
            packet.comments = [comment.encode()]
            writer.write(packet)
    finally:
        writer.close()


def _flow_keys(flows: list[Flow]) -> dict[Key, Flow]:
    """Each (protocol, src, dst, sport, dport) a flow's packets had at any hop, both
    ways: before and after every translation its hops show. ICMP echoes are keyed
    by their id alone (the sequence differs per packet)."""
    found: dict[Key, Flow] = {}
    for flow in flows:
        for series in flow.packets:
            for hop in series.hops:
                p = hop.packet
                icmp = p.protocol in ("icmp", "icmpv6")
                for key in (
                    (p.protocol, p.src, p.dst, p.sport, 0 if icmp else p.dport),
                    (
                        p.protocol,
                        p.dst,
                        p.src,
                        p.sport if icmp else p.dport,
                        0 if icmp else p.sport,
                    ),
                ):
                    found.setdefault(key, flow)
    return found


def _packet_key(packet: Any) -> Key | None:
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    from scapy.layers.inet6 import ICMPv6EchoReply, ICMPv6EchoRequest, IPv6

    ip = packet.getlayer(IP) or packet.getlayer(IPv6)
    if ip is None:
        return None
    for layer, name in ((TCP, "tcp"), (UDP, "udp")):
        if packet.haslayer(layer):
            segment = packet[layer]
            return (name, str(ip.src), str(ip.dst), int(segment.sport), int(segment.dport))
    if packet.haslayer(ICMP) and packet[ICMP].type in (0, 8):
        return ("icmp", str(ip.src), str(ip.dst), int(packet[ICMP].id), 0)
    for echo in (ICMPv6EchoRequest, ICMPv6EchoReply):
        if packet.haslayer(echo):
            return ("icmpv6", str(ip.src), str(ip.dst), int(packet[echo].id), 0)
    return None
