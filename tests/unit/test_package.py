"""The package carries what it needs to trace: probes, schema, styles, the reference lab."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from pathtrace.kernel.engine import probes_dir

ROOT = Path(__file__).resolve().parents[2]


def test_a_wheel_of_the_project_holds_the_probes_and_data(tmp_path: Path) -> None:
    if not (probes_dir() / "device.bpf.o").exists():
        pytest.skip("probes not built (make probes)")
    source = tmp_path / "src"  # a copy: building writes build/ and egg-info beside the sources
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(".venv", ".git", "captures", "tests", "build", "*.egg-info"),
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(tmp_path / "dist"), str(source)],
        check=True, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("pathtrace-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    built = {f"pathtrace/kernel/bpf/{p.name}" for p in probes_dir().glob("*.bpf.o")}
    assert built and built <= names
    assert {
        "pathtrace/output/schema.json",
        "pathtrace/lab/reference.toml",
        "pathtrace/tui/app.tcss",
    } <= names


def test_version_says_the_package_the_probes_and_the_kernel() -> None:
    import os
    import subprocess
    import sys

    from pathtrace import __version__

    done = subprocess.run(
        [sys.executable, "-m", "pathtrace", "--version"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"pathtrace {__version__} (probes ")
    import re

    # The probe objects' own version: a digest of their bytes, and how many.
    assert re.search(r"\(probes [0-9a-f]{12}, \d+ objects\)", done.stdout), done.stdout
    assert done.stdout.strip().endswith(f"kernel {os.uname().release}")
    bad = subprocess.run(
        [sys.executable, "-m", "pathtrace", "--bogus"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and bad.stderr.startswith("pathtrace: unrecognized arguments")
