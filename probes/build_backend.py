"""The build backend: setuptools', with the probes compiled first, so that a wheel
(or an editable install) built from a clean checkout carries them, as pwru and
libbpf-tools ship their objects. A wheel without probes cannot trace: building one
fails instead, with one line saying what is missing.

pyproject.toml names this module (``backend-path = ["probes"]``). The objects are
CO-RE: built once against this kernel's BTF, they load on other BTF kernels.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F403 (the hooks this module does not change)

HERE = Path(__file__).resolve().parent
OBJECTS = HERE.parent / "pathtrace" / "kernel" / "bpf"
TOOLS = ("make", "clang", "llvm-strip", "bpftool")


class ProbesNotBuilt(RuntimeError):
    pass


def _build_probes() -> None:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        raise ProbesNotBuilt(
            f"building pathtrace needs {', '.join(missing)} to compile its BPF probes "
            "(Debian: apt-get install make clang llvm bpftool libbpf-dev)"
        )
    if not Path("/sys/kernel/btf/vmlinux").exists():
        raise ProbesNotBuilt(
            "building pathtrace's probes needs this kernel's BTF (/sys/kernel/btf/vmlinux)"
        )
    done = subprocess.run(["make", "-s", "-C", str(HERE)], capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise ProbesNotBuilt("compiling pathtrace's probes failed: " + " | ".join(tail))
    if not list(OBJECTS.glob("*.bpf.o")):
        raise ProbesNotBuilt(f"compiling pathtrace's probes left no objects in {OBJECTS}")


def build_wheel(
    wheel_directory: str,
    config_settings: dict[str, Any] | None = None,
    metadata_directory: str | None = None,
) -> str:
    _build_probes()
    return _setuptools.build_wheel(wheel_directory, config_settings, metadata_directory)


def build_editable(
    wheel_directory: str,
    config_settings: dict[str, Any] | None = None,
    metadata_directory: str | None = None,
) -> str:
    _build_probes()
    return _setuptools.build_editable(wheel_directory, config_settings, metadata_directory)
