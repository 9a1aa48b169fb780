"""pip-installable for real: a wheel built from a clean checkout (no probe objects,
no vmlinux.h) compiles and carries the probes; installed into a fresh venv, it
traces a lab; a build without the compiler fails with one line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pathtrace.lab import topology

pytestmark = pytest.mark.root
ROOT = Path(__file__).resolve().parents[2]


def _clean_checkout(to: Path) -> Path:
    """The tracked files only, as a clone has them (no built probes, no venv)."""
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (to / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, to / name)
    assert not list((to / "pathtrace").rglob("*.bpf.o"))
    return to


def _wheel(
    source: Path, out: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(out), str(source)],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip


def test_a_wheel_from_a_clean_checkout_traces(tmp_path: Path, topology_file: Path) -> None:
    source = _clean_checkout(tmp_path / "src")
    built = _wheel(source, tmp_path / "dist")
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("pathtrace-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    # The dependencies from the registry, or this environment's copies when offline.
    installed = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", str(wheel)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    pathtrace = str(venv / "bin" / "pathtrace")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PATHTRACE_PROBES")}
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import pathtrace; print(pathtrace.__file__)"],
        capture_output=True, text=True, cwd=tmp_path, env=env, check=True,
    ).stdout  # fmt: skip
    assert where.startswith(str(venv)), where  # the wheel's copy, not the checkout's
    lab = topology.load(topology_file)
    up = subprocess.run(
        [pathtrace, "lab", "up", "--topology", str(topology_file)],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120,
    )  # fmt: skip
    assert up.returncode == 0, up.stderr
    run = subprocess.run(
        [pathtrace, "run", "ping", "8.8.8.8", "-c", "1", "--json",
         "--topology", str(topology_file)],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["probes"][0]["verdict"]["outcome"] == "answered"
    assert set(report["namespaces"]) >= {lab.namespace("container1"), lab.namespace("wan")}
    # Its probes gone, doctor says how to get them for a wheel (not `make`), exit 7.
    for found in Path(where).parent.joinpath("kernel", "bpf").glob("*.bpf.o"):
        found.unlink()
    doctor = subprocess.run(
        [pathtrace, "doctor"], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60
    )
    assert doctor.returncode == 7, doctor.stdout + doctor.stderr
    assert "this installation carries no probes: reinstall pathtrace from a wheel" in " ".join(
        doctor.stdout.split()
    )


def test_a_wheel_cannot_be_built_without_the_compiler(tmp_path: Path) -> None:
    source = _clean_checkout(tmp_path / "src")
    # A PATH with Python and make but no clang: the build must stop, not ship no probes.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("make", "sh", "git"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{bin_dir}"}
    built = _wheel(source, tmp_path / "dist", env)
    assert built.returncode != 0
    assert "needs clang, llvm-strip, bpftool" in built.stderr, built.stderr
    assert not list((tmp_path / "dist").glob("*.whl"))
