"""`run --save` as root, where another user can plant things: nothing of theirs is written.

The other user is real: a process of uid 65534 (setpriv) makes the folder and
its symlinks, in a sticky world-writable folder like /tmp.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pathtrace.lab import topology
from pathtrace.output import bundle
from tests.conftest import pathtrace

pytestmark = pytest.mark.root
NOBODY = 65534


def as_nobody(script: str, cwd: Path) -> None:
    subprocess.run(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "sh", "-c", script],
        cwd=cwd,
        check=True,
        timeout=30,
    )


@pytest.fixture
def public() -> Iterator[Path]:
    """A folder like /tmp: anyone may create in it, the sticky bit guards each entry."""
    path = Path(tempfile.mkdtemp(prefix="pathtrace-public-", dir="/tmp"))
    path.chmod(0o1777)
    yield path
    shutil.rmtree(path)


@pytest.fixture
def decoys(tmp_path: Path) -> dict[str, Path]:
    """A root-owned file the attacker wants overwritten, and a path they want created."""
    tmp_path.chmod(0o755)
    secret = tmp_path / "root-owned"
    secret.write_text("precious\n")
    return {"secret": secret, "created": tmp_path / "made-by-root"}


def test_planted_symlinks_in_another_users_folder_are_not_followed(
    lab: topology.Topology, topology_file: Path, public: Path, decoys: dict[str, Path]
) -> None:
    as_nobody(
        f"mkdir trap && ln -s {decoys['secret']} trap/report.txt && "
        f"ln -s {decoys['created']} trap/topology.toml && "
        f"ln -s {decoys['secret']} trap/bundle.json",
        public,
    )
    done = pathtrace(
        "run", "ping", "8.8.8.8", "-c", "1", "--topology", str(topology_file),
        "--save", str(public / "trap"),
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().count("\n") == 0 and "uid 65534" in done.stderr, done.stderr
    assert decoys["secret"].read_text() == "precious\n"
    assert not decoys["created"].exists()
    assert sorted(p.name for p in (public / "trap").iterdir()) == [
        "bundle.json",
        "report.txt",
        "topology.toml",
    ]
    assert not [p for p in public.iterdir() if ".partial-" in p.name]


def test_a_symlinked_captures_folder_of_another_user_is_refused(
    lab: topology.Topology, topology_file: Path, public: Path, decoys: dict[str, Path]
) -> None:
    target = decoys["secret"].parent
    as_nobody(f"mkdir work && ln -s {target} work/captures", public)
    done = pathtrace(
        "run", "ping", "8.8.8.8", "-c", "1", "--topology", str(topology_file), "--save",
        cwd=public / "work",
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "symlink owned by uid 65534" in done.stderr, done.stderr
    assert sorted(p.name for p in target.iterdir()) == ["lab.toml", "root-owned"]


def test_a_new_folder_in_a_sticky_public_folder_is_written_whole(
    lab: topology.Topology, topology_file: Path, public: Path
) -> None:
    done = pathtrace(
        "run", "ping", "8.8.8.8", "-c", "1", "--topology", str(topology_file),
        "--save", str(public / "mine"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    saved = public / "mine"
    assert all(not p.is_symlink() and p.stat().st_uid == 0 for p in saved.iterdir())
    result, _ = bundle.load(saved)
    assert result.answered == 1
    # Saved again to the same place: refused (never merged into, never overwritten).
    again = pathtrace(
        "run", "ping", "8.8.8.8", "-c", "1", "--topology", str(topology_file),
        "--save", str(saved),
    )  # fmt: skip
    assert again.returncode == 2 and "not empty" in again.stderr, again.stderr


def test_a_full_disk_leaves_no_partial_bundle(
    lab: topology.Topology, topology_file: Path, tmp_path: Path
) -> None:
    """A 64 KiB tmpfs, mounted in a mount namespace of the test's own: the report fits,
    the bundle does not."""
    small = tmp_path / "small"
    small.mkdir()
    script = (
        f"mount -t tmpfs -o size=64k pt-full {small} && "
        f"{sys.executable} -m pathtrace run ping 8.8.8.8 -c 3 "
        f"--topology {topology_file} --save {small}/bundle; echo exit=$?; ls -A {small}"
    )
    done = subprocess.run(
        ["unshare", "--mount", "--", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert "exit=9" in done.stdout, done.stdout + done.stderr
    assert "No space left on device" in done.stderr and "nothing was kept" in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("pathtrace: could not save")
    assert "Traceback" not in done.stderr
    # What the folder held after the failure: nothing (no bundle, no hidden part).
    assert done.stdout.strip().splitlines()[-1] == "exit=9", done.stdout
    assert "3/3 answered" in done.stdout  # the report came first
