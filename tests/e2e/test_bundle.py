"""Captures and bundles: checked against tcpdump and tshark, read back without root."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest

from pathtrace.lab import scenarios, topology
from pathtrace.model.conntrack import SEEN_REPLY, ConntrackEntry
from pathtrace.model.options import RunOptions
from pathtrace.model.tag import capture_filter
from pathtrace.output import bundle
from pathtrace.session import Run
from pathtrace.system import netns
from tests.conftest import pathtrace
from tests.matchers import tshark_rows

pytestmark = pytest.mark.root


def _tcpdumps(
    lab: topology.Topology, expr: str | None, folder: Path
) -> list[tuple[str, str, subprocess.Popen[str], Path]]:
    """A plain tcpdump on every interface of every lab namespace, each armed."""
    started = []
    for node in lab.nodes:
        ns = lab.namespace(node)
        ipr = netns.iproute(ns)
        names = [link.get("ifname") for link in ipr.get_links() if link["flags"] & 1]
        ipr.close()
        for ifname in names:
            out = folder / f"{node}-{ifname}.pcap"
            argv = [
                "tcpdump",
                "-Z",
                "root",
                "--immediate-mode",
                "-i",
                ifname,
                "-n",
                "-U",
                "-w",
                str(out),
            ] + ([expr] if expr else [])
            proc = netns.popen(
                ns, argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
            )
            started.append((node, ifname, proc, out))
    for node, ifname, proc, _ in started:
        assert proc.stderr is not None
        said = []
        for line in proc.stderr:
            said.append(line)
            if "listening on" in line:
                break
        else:
            raise AssertionError(f"tcpdump on {node}/{ifname} did not start: {said}")
    return started


def _stop(started: list[tuple[str, str, subprocess.Popen[str], Path]]) -> None:
    time.sleep(0.2)  # let tcpdump write what it has
    for *_, proc, _ in started:
        proc.terminate()
        proc.communicate(timeout=10)


def _pcap_packets(path: Path) -> list[tuple[float, int]]:
    from scapy.utils import RawPcapReader

    with open(path, "rb") as f:
        return [(meta.sec + meta.usec / 1e6, meta.wirelen) for _, meta in RawPcapReader(f)]


def _bundle_packets(path: Path) -> dict[str, list[tuple[float, int]]]:
    from scapy.utils import RawPcapNgReader

    names = [json.loads(line) for line in (path / "captures.jsonl").read_text().splitlines()]
    per: dict[str, list[tuple[float, int]]] = {}
    with open(path / "trace.pcapng", "rb") as f:
        for (data, _meta), c in zip(RawPcapNgReader(f), names, strict=True):
            assert len(data) == c["wirelen"]  # whole packets
            per.setdefault(f"{c['namespace']}:{c['ifname']}", []).append(
                (c["time_ns"] / 1e9, c["wirelen"])
            )
    return per


@pytest.mark.parametrize("mode", ["run", "all"])
def test_capture_matches_tcpdump_on_every_interface(
    lab: topology.Topology, tmp_path: Path, mode: str
) -> None:
    run_id = 0x5A5A0000 | (hash(mode) & 0xFFFF)
    started = _tcpdumps(lab, capture_filter(run_id) if mode == "run" else None, tmp_path)
    try:
        result = Run(
            RunOptions("ping", IPv4Address("8.8.8.8"), count=3, capture=mode), lab, run_id=run_id
        ).execute()
    finally:
        _stop(started)
    assert result.delivered
    saved = bundle.save(result, tmp_path / "bundle")
    ours = _bundle_packets(saved)
    # tcpdump ran longer than the run, and our sockets open and close one
    # interface at a time: in "all" mode compare the span of the run's own
    # packets, which lies inside every capture of both (a background packet
    # crossing two interfaces as our sockets close is in one of ours, not both).
    first = min(e.time_ns for e in result.events) / 1e9 - 0.001
    last = max(e.time_ns for e in result.events) / 1e9 + 0.001
    checked = 0
    for node, ifname, _, out in started:
        theirs = _pcap_packets(out)
        mine = ours.get(f"{lab.namespace(node)}:{ifname}", [])
        if mode == "all":
            theirs = [p for p in theirs if first <= p[0] <= last]
            mine = [p for p in mine if first <= p[0] <= last]
        assert (len(mine), sum(b for _, b in mine)) == (len(theirs), sum(b for _, b in theirs)), (
            f"{node}/{ifname}"
        )
        checked += bool(theirs)
    assert checked >= 5  # c1/veth-cont1, host/veth-host1, br0, eth0, wan/eth0
    assert result.capture_drops == 0
    if mode == "run":
        assert result.correlation is not None
        assert result.correlation.events_without_capture == []
        assert result.correlation.captures_without_event == []


def _ping_and_save(
    topology_file: Path, folder: Path, count: int = 1
) -> subprocess.CompletedProcess[str]:
    """`pathtrace run ping 8.8.8.8` on the test lab, saved as a bundle in ``folder``."""
    return pathtrace(
        "run",
        "ping",
        "8.8.8.8",
        "-c",
        str(count),
        "--topology",
        str(topology_file),
        "--save",
        str(folder),
    )


@pytest.fixture
def saved(lab: topology.Topology, topology_file: Path, tmp_path: Path) -> tuple[Path, str]:
    folder = tmp_path / "b"
    live = _ping_and_save(topology_file, folder, count=2)
    assert live.returncode == 0, live.stderr
    return folder, live.stdout


def test_bundle_opens_in_tshark_with_interface_names_and_comments(saved: tuple[Path, str]) -> None:
    folder, _ = saved
    rows = tshark_rows(folder / "trace.pcapng")
    names = {r[0] for r in rows}
    assert {
        "container1/veth-cont1",
        "host/veth-host1",
        "host/br0",
        "host/eth0",
        "wan/eth0",
    } <= names
    comments = [r[1] for r in rows]
    assert all(c.startswith("probe ") for c in comments), comments
    assert any(
        "host routes it out of eth0" in c and "after SNAT by rule masquerade" in c for c in comments
    )
    files = {p.name for p in folder.iterdir()}
    assert {
        "bundle.json",
        "trace.pcapng",
        "events.jsonl",
        "captures.jsonl",
        "report.txt",
        "report.json",
        "report.md",
        "facts.json",
        "state.json",
        "topology.toml",
    } <= files
    state = json.loads((folder / "state.json").read_text())
    host = next(v for k, v in state["namespaces"].items() if k.endswith("host"))
    assert "masquerade" in host["ruleset"] and host["sysctls"]["net.ipv4.ip_forward"] == "1"
    # The ruleset as nft's JSON too, and the masquerade's entry as a record.
    assert any("masquerade" in rule["rule"]["expr"][-1] for rule in _rules(host["ruleset_json"]))
    entries = [ConntrackEntry.from_json(e) for found in state["conntrack"].values() for e in found]
    assert any(e.reply.dst == "198.51.100.2" and e.status & SEEN_REPLY for e in entries)


def _rules(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objects if "rule" in o]


def test_bundle_show_as_a_user_without_privileges(saved: tuple[Path, str]) -> None:
    folder, live = saved
    public = Path(tempfile.mkdtemp(prefix="pathtrace-bundle-"))
    try:
        shutil.copytree(folder, public / "b")
        public.chmod(0o755)
        _show_as_nobody(public / "b", live)
    finally:
        shutil.rmtree(public)


def _show_as_nobody(folder: Path, live: str) -> None:
    shown = subprocess.run(
        [
            "setpriv",
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            sys.executable,
            "-m",
            "pathtrace",
            "bundle",
            "show",
            str(folder),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == live  # the same verdict and the same hops, to the character


def test_bundle_diff_before_and_after_fix(
    lab: topology.Topology, topology_file: Path, tmp_path: Path
) -> None:
    scenarios.apply(lab, "forward-drop")
    broken = _ping_and_save(topology_file, tmp_path / "broken")
    assert broken.returncode == 1
    assert pathtrace("lab", "fix", "--topology", str(topology_file)).returncode == 0
    fixed = _ping_and_save(topology_file, tmp_path / "fixed")
    assert fixed.returncode == 0
    diff = pathtrace("bundle", "diff", str(tmp_path / "broken"), str(tmp_path / "fixed"))
    assert diff.returncode == 0
    text = diff.stdout
    assert "the same for 3 hops, up to: br0 delivers it up to host" in text, text
    assert "host drops it: NETFILTER_DROP" in text and "SNAT by rule masquerade" in text
    listing = pathtrace("bundle", "list", str(tmp_path))
    assert "broken" in listing.stdout and "fixed" in listing.stdout


def test_damaged_bundles_are_one_clear_line(saved: tuple[Path, str], tmp_path: Path) -> None:
    folder, _ = saved
    cases = {}
    for name in ("truncated", "corrupt", "newer", "foreign", "no-events"):
        copy = tmp_path / name
        shutil.copytree(folder, copy)
        cases[name] = copy
    pcap = cases["truncated"] / "trace.pcapng"
    pcap.write_bytes(pcap.read_bytes()[: pcap.stat().st_size // 2])
    (cases["corrupt"] / "facts.json").write_text("{not json")
    manifest = json.loads((cases["newer"] / "bundle.json").read_text())
    (cases["newer"] / "bundle.json").write_text(json.dumps({**manifest, "version": 99}))
    (cases["foreign"] / "bundle.json").write_text(json.dumps({"format": "something-else"}))
    (cases["no-events"] / "events.jsonl").unlink()
    expected = {
        "truncated": "truncated",
        "corrupt": "corrupt",
        "newer": "upgrade pathtrace",
        "foreign": "not a pathtrace bundle",
        "no-events": "events.jsonl is missing",
    }
    for name, path in cases.items():
        result = pathtrace("bundle", "show", str(path))
        assert result.returncode == 8, (name, result.stderr)
        assert expected[name] in result.stderr, (name, result.stderr)
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    missing = pathtrace("bundle", "show", str(tmp_path / "nothing-here"))
    assert missing.returncode == 8


def test_unsent_probes_read_back_as_they_were_judged(
    lab: topology.Topology, topology_file: Path, tmp_path: Path
) -> None:
    """No packet left the source, so no event exists: the verdict must come from the
    saved state, not from the live run alone."""
    scenarios.apply(lab, "no-default-route")
    live = _ping_and_save(topology_file, tmp_path / "unsent")
    assert live.returncode == 1 and "container1 has no route to 8.8.8.8" in live.stdout
    shown = pathtrace("bundle", "show", str(tmp_path / "unsent"))
    assert shown.returncode == 1
    assert shown.stdout == live.stdout


def test_the_capture_overturns_a_verdict_it_contradicts(
    saved: tuple[Path, str], tmp_path: Path
) -> None:
    """A trace that lost the answer's events (as a full ring buffer or a hook that
    failed to arm would) against captures that hold the answer: the capture wins.
    The events are the run's own, less the answer's; the captures are untouched."""
    folder, _ = saved
    copy = tmp_path / "lost-answer"
    shutil.copytree(folder, copy)
    events = (copy / "events.jsonl").read_text().splitlines()
    kept = [line for line in events if json.loads(line).get("tag") != "reply"]
    assert len(kept) < len(events)
    (copy / "events.jsonl").write_text("".join(line + "\n" for line in kept))
    shown = pathtrace("bundle", "show", str(copy), "--json")
    assert shown.returncode == 0, shown.stderr  # what the capture proves: answered
    report = json.loads(shown.stdout)
    for probe in report["probes"]:
        verdict = probe["verdict"]
        assert verdict["outcome"] == "answered", verdict
        assert verdict["where"] == "container1/veth-cont1", verdict
        assert verdict["confidence"].startswith("disputed: the trace said"), verdict
    # The untouched bundle stands as the trace judged it.
    plain = json.loads(pathtrace("bundle", "show", str(folder), "--json").stdout)
    assert all(p["verdict"]["confidence"] == "certain" for p in plain["probes"])


def test_an_interface_whose_capture_is_empty_is_the_tools_fault(
    saved: tuple[Path, str], tmp_path: Path
) -> None:
    """The capture of one interface the trace crossed holds nothing: a warning about
    the capture, and no verdict changes."""
    folder, _ = saved
    copy = tmp_path / "no-capture"
    shutil.copytree(folder, copy)
    _drop_captures(copy, "br0")
    shown = pathtrace("bundle", "show", str(copy), "--json")
    assert shown.returncode == 0, shown.stderr
    report = json.loads(shown.stdout)
    warnings = [w for w in report["warnings"] if w.startswith("capture: 0 packets on host/br0")]
    assert warnings and "fault of pathtrace's capture" in warnings[0], report["warnings"]
    assert all(p["verdict"]["outcome"] == "answered" for p in report["probes"])


def _drop_captures(folder: Path, ifname: str) -> None:
    """The bundle's captures less those of ``ifname`` (the pcapng and its index)."""
    from pathtrace.output import pcapng

    result, _ = bundle.load(folder)
    rows = (folder / "captures.jsonl").read_text().splitlines()
    kept = [i for i, c in enumerate(result.captures) if c.ifname != ifname]
    assert len(kept) < len(rows)
    result.captures = [result.captures[i] for i in kept]
    with open(folder / "trace.pcapng", "wb") as f:
        pcapng.write(f, result)
    (folder / "captures.jsonl").write_text("".join(rows[i] + "\n" for i in kept))
