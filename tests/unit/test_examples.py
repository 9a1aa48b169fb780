"""The example bundles (captures/examples, made by the tool): read back without root."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pathtrace.output import bundle
from pathtrace.output.diff import diff
from pathtrace.output.text import render
from tests.matchers import tshark_rows

EXAMPLES = Path(__file__).resolve().parents[2] / "captures" / "examples"


def show(name: str) -> str:
    import io

    result, _ = bundle.load(EXAMPLES / name)
    out = io.StringIO()
    render(result, out, width=100)
    return out.getvalue()


@pytest.mark.parametrize("name", ["ping-answered", "tcp-dnat", "forward-drop"])
def test_show_prints_what_the_live_run_printed(name: str) -> None:
    assert show(name) == (EXAMPLES / name / "report.txt").read_text()


def test_the_examples_say_what_happened() -> None:
    ping, _ = bundle.load(EXAMPLES / "ping-answered")
    assert ping.delivered and all(p.verdict.outcome == "answered" for p in ping.probes)
    tcp, _ = bundle.load(EXAMPLES / "tcp-dnat")
    dnat = next(h for h in tcp.probes[0].request.hops if h.translation)
    assert dnat.translation is not None and "dnat-8080" in (dnat.translation.rule or "")
    drop, _ = bundle.load(EXAMPLES / "forward-drop")
    verdict = drop.probes[0].verdict
    assert verdict.outcome == "dropped" and "FORWARD" in (verdict.cause or "")
    lines = diff(drop, ping)
    assert any(line.startswith("the same for 3 hops") for line in lines)


def test_cli_show_without_privileges() -> None:
    argv = [sys.executable, "-m", "pathtrace", "bundle", "show", str(EXAMPLES / "tcp-dnat")]
    if shutil.which("setpriv") and __import__("os").geteuid() == 0:
        argv = ["setpriv", "--bounding-set", "-all", "--inh-caps", "-all", "--", *argv]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "answered by container1" in result.stdout


@pytest.mark.skipif(shutil.which("tshark") is None, reason="no tshark")
def test_tshark_reads_the_example() -> None:
    rows = tshark_rows(EXAMPLES / "tcp-dnat" / "trace.pcapng")
    assert ("wan/eth0", "probe 1 request: wan sends on eth0") in rows
    assert ("wan/eth0", "probe 1 the source's RST: wan sends on eth0") in rows
    out = "\n".join(comment for _, comment in rows)
    assert "after DNAT by rule dnat-8080" in out


def test_a_folder_that_is_no_bundle(tmp_path: Path) -> None:
    with pytest.raises(bundle.BundleError, match="missing"):
        bundle.load(tmp_path)


def test_packet_view_dissects_ip_in_a_fresh_process() -> None:
    """Layers bound by scapy's inet module must not depend on what ran before."""
    code = (
        "from pathlib import Path\n"
        "from pathtrace.output import bundle\n"
        "from pathtrace.output.packet import view\n"
        f"r, _ = bundle.load(Path({str(EXAMPLES / 'ping-answered')!r}))\n"
        "hop = r.probes[0].request.hops[0]\n"
        "print('\\n'.join(view(r, hop, None).lines))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "###[ IP ]###" in out and "###[ ICMP ]###" in out and "###[ Raw ]###" in out
