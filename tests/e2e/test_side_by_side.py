"""Runs side by side, lab commands that wait for each other, and Ctrl-C mid-run."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pathtrace.lab import topology
from pathtrace.output import bundle
from pathtrace.system import netns
from tests.conftest import pathtrace

pytestmark = pytest.mark.root
ROOT = Path(__file__).resolve().parents[2]


def start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "pathtrace", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes a test starts; any still running at its end is ended (by its pid)."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
        p.communicate()  # reaps it and closes its pipes


def translations(report: dict[str, object]) -> list[str]:
    found = []
    for probe in report["probes"]:  # type: ignore[attr-defined]
        for direction in ("request", "reply"):
            series = probe[direction] or {}
            found += [h["translation"]["kind"] for h in series["hops"] if h["translation"]]
    return found


def paths(report: dict[str, object]) -> str:
    """Each probe's hops, a line each: what a failure needs to be read."""
    lines = []
    for probe in report["probes"]:  # type: ignore[attr-defined]
        for direction in ("request", "reply"):
            for h in (probe[direction] or {}).get("hops", []):
                lines.append(f"{probe['index']} {direction} {json.dumps(h)[:400]}")
    return "\n".join(lines)


def test_eight_runs_at_once_each_get_every_nat_hop(
    lab: topology.Topology, topology_file: Path, processes: list[subprocess.Popen[str]]
) -> None:
    common = ("-c", "2", "--capture", "off", "--json", "--topology", str(topology_file))
    runs = [start("run", "ping", "8.8.8.8", *common) for _ in range(4)]
    runs += [start("run", "tcp", "198.51.100.2:8080", "--from", "wan", *common) for _ in range(4)]
    processes.extend(runs)
    for n, p in enumerate(runs):
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert "warning" not in err, err
        report = json.loads(out)
        assert report["summary"]["answered"] == 2 and report["warnings"] == []
        netfilter = next(h for h in report["hooks"] if h["family"] == "netfilter")
        assert netfilter["state"] == "used", netfilter
        # Each probe: its translation on the way and its reverse on the way back.
        kinds = sorted(translations(report))
        expected = ["SNAT", "SNAT", "un-SNAT", "un-SNAT"] if n < 4 else None
        if expected:
            assert kinds == expected, f"{kinds}\n{paths(report)}"
        else:
            assert kinds.count("DNAT") == 2 and kinds.count("un-DNAT") == 2, (
                f"{kinds}\n{paths(report)}"
            )


def test_two_lab_ups_at_once_take_turns(
    topology_file: Path, processes: list[subprocess.Popen[str]]
) -> None:
    ups = [start("lab", "up", "--topology", str(topology_file)) for _ in range(2)]
    processes.extend(ups)
    outputs = [p.communicate(timeout=120) for p in ups]
    for p, (_, err) in zip(ups, outputs, strict=True):
        assert p.returncode == 0 and "Traceback" not in err, err
    said = sorted(out.split(":", 2)[-1].strip() for out, _ in outputs)
    # One made the lab; the other found it made (after waiting, or after it was done).
    assert said[1] == "4 nodes, nothing to change", said  # sorted: digits first
    assert said[0].startswith("4 nodes, ") and said[0].endswith(" changes"), said
    status = pathtrace("lab", "status", "--topology", str(topology_file))
    assert status.returncode == 0, status.stdout


def test_lab_down_waits_for_a_run_to_end(
    lab: topology.Topology, topology_file: Path, processes: list[subprocess.Popen[str]]
) -> None:
    run = start(
        "run", "ping", "8.8.8.8", "-c", "30", "-i", "0.1", "--capture", "off", "--json",
        "--topology", str(topology_file),
    )  # fmt: skip
    processes.append(run)
    _wait_for_lock_holder(lab.prefix, run.pid)
    down = start("lab", "down", "--topology", str(topology_file))
    processes.append(down)
    out, err = run.communicate(timeout=120)
    assert run.returncode == 0, err
    assert json.loads(out)["summary"]["answered"] == 30
    down_out, down_err = down.communicate(timeout=60)
    assert down.returncode == 0, down_err
    assert f"lab down waits for pid {run.pid} (pathtrace run ping 8.8.8.8)" in down_err
    assert "removed 4 namespaces" in down_out
    assert not any(netns.exists(lab.namespace(n)) for n in lab.nodes)
    assert not Path(f"/run/pathtrace/locks/{lab.prefix}.lock").exists()  # nothing left


def _wait_for_lock_holder(prefix: str, pid: int) -> None:
    """Until ``pid`` holds lab ``prefix``'s lock (it is then tracing)."""
    lock = Path(f"/run/pathtrace/locks/{prefix}.lock")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if lock.exists():
            inode = lock.stat().st_ino
            held = Path("/proc/locks").read_text().splitlines()
            if any(f" {pid} " in line and line.split()[5].endswith(f":{inode}") for line in held):
                return
        time.sleep(0.05)
    raise AssertionError(f"pid {pid} never held {lock}")


def test_ctrl_c_prints_the_probes_so_far_and_saves_them(
    lab: topology.Topology,
    topology_file: Path,
    tmp_path: Path,
    processes: list[subprocess.Popen[str]],
) -> None:
    run = start(
        "run", "ping", "8.8.8.8", "-c", "400", "-i", "0.02", "--capture", "off", "--json",
        "--topology", str(topology_file), "--save", str(tmp_path / "partial"),
    )  # fmt: skip
    processes.append(run)
    _wait_for_lock_holder(lab.prefix, run.pid)
    # Arming comes after the lock; on a loaded machine it took ~1.8 s (9 probes sent
    # 2 s after the lock). 4 s: some probes answered, most of the 8 s not yet sent.
    time.sleep(4)
    run.send_signal(signal.SIGINT)
    out, err = run.communicate(timeout=60)
    assert run.returncode == 130, err
    assert "Traceback" not in err
    report = json.loads(out)
    sent = report["summary"]["count"]
    assert report["interrupted"] is True and 10 < sent < 400, sent
    assert report["run"]["probe"]["count"] == sent
    # Every probe sent before the interrupt had time for its answer but the last.
    assert report["summary"]["answered"] >= sent - 1
    saved, facts = bundle.load(tmp_path / "partial")
    assert saved.interrupted and facts["interrupted"] is True and len(saved.probes) == sent


def test_a_thousand_probes_at_once_are_all_read(
    lab: topology.Topology, topology_file: Path
) -> None:
    """Answers are awaited while events still come, not a fixed second after the last send."""
    done = pathtrace(
        "run", "ping", "8.8.8.8", "-c", "1000", "-i", "0", "--capture", "off", "--json",
        "--topology", str(topology_file), timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["summary"]["answered"] == 1000, report["summary"]
    assert report["lost_events"] == {}


def test_two_runs_of_one_path_diff_as_the_same_path(
    lab: topology.Topology, topology_file: Path, tmp_path: Path
) -> None:
    for name in ("a", "b"):
        done = pathtrace(
            "run", "ping", "8.8.8.8", "-c", "1", "--capture", "off", "--topology",
            str(topology_file), "--save", str(tmp_path / name),
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    diff = pathtrace("bundle", "diff", str(tmp_path / "a"), str(tmp_path / "b"))
    assert diff.returncode == 0 and "the same path" in diff.stdout, diff.stdout
