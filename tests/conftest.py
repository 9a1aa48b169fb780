"""Shared fixtures: the root-namespace guard, and labs with names of their own.

Every test that needs the kernel is marked ``root`` and skipped without root.
Each lab a test makes gets a unique prefix, so tests never touch a lab a
developer has up (``pt-``), nor one another's.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pathtrace.kernel.engine import Tracer
from pathtrace.lab import build, topology
from pathtrace.model import tag
from pathtrace.system import netns
from tests.rootns import snapshot
from tests.tracing import Session

IS_ROOT = os.geteuid() == 0
TEST_PREFIX_HEAD = "ptt"
_PREFIXES: list[str] = []  # every lab prefix this session handed out


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    skip = pytest.mark.skip(reason="needs root and the real kernel")
    for item in items:
        if "root" in item.keywords and not IS_ROOT:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def root_namespace_untouched() -> Iterator[None]:
    """The root namespace's links, addresses, routes, sysctls and rules are as before."""
    if not IS_ROOT:
        yield
        return
    before = snapshot()
    yield
    after = snapshot()
    changed = {k for k in before if before[k] != after[k]}
    assert not changed, f"the test suite changed the root namespace: {sorted(changed)}"
    # Only this session's: another suite (a CI clone) may be running beside it.
    leftover = [n for n in netns.names() if any(n.startswith(p) for p in _PREFIXES)]
    assert not leftover, f"tests left namespaces behind: {leftover}"
    locks = Path("/run/pathtrace/locks")
    stale = [p.name for p in locks.glob("*.lock") if p.name[: -len(".lock")] in _PREFIXES]
    assert not stale, f"tests left lab lock files behind: {stale}"


def reference_with_prefix(prefix: str) -> str:
    return topology.reference_text().replace('prefix = "pt-"', f'prefix = "{prefix}"', 1)


@pytest.fixture
def prefix() -> str:
    made = f"{TEST_PREFIX_HEAD}{uuid.uuid4().hex[:6]}-"
    _PREFIXES.append(made)
    return made


@pytest.fixture
def topology_file(tmp_path: Path, prefix: str) -> Iterator[Path]:
    """The reference topology under a unique prefix; whatever a test makes of it is removed."""
    path = tmp_path / "lab.toml"
    path.write_text(reference_with_prefix(prefix))
    yield path
    if IS_ROOT:
        build.down(None, prefix=prefix)


@pytest.fixture
def lab(topology_file: Path) -> topology.Topology:
    """The reference lab, up."""
    topo = topology.load(topology_file)
    build.up(topo, topology_file.read_text())
    return topo


@pytest.fixture
def traced(lab: topology.Topology) -> Iterator[Session]:
    """A tracer armed on the lab, for this test's run."""
    tracer = Tracer(tag.new_run(), [lab.namespace(n) for n in lab.nodes])
    with tracer:
        yield Session(lab, tracer)


def pathtrace(
    *args: str, check: bool = False, **kwargs: object
) -> subprocess.CompletedProcess[str]:
    """The real command line, in a process of its own."""
    return subprocess.run(
        [sys.executable, "-m", "pathtrace", *args],
        capture_output=True,
        text=True,
        check=check,
        **{"timeout": 60, **kwargs},
    )  # type: ignore[call-overload]
