"""Defaults a user sets once, where people look for them: the XDG config file
(``$XDG_CONFIG_HOME/pathtrace/config.toml``, else ``~/.config/pathtrace/config.toml``),
then environment variables over it; a command line option over both.

    bundles = "/var/tmp/pathtrace"   # PATHTRACE_BUNDLES: where --save and the TUI save,
                                     #   and where `bundle list` looks
    from = "container1"              # PATHTRACE_FROM: run's default --from
    topology = "/etc/pathtrace/lab.toml"  # PATHTRACE_TOPOLOGY: the default --topology
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pathtrace.errors import UsageError
from pathtrace.lab import DEFAULT_SOURCE

KEYS = {"bundles": "PATHTRACE_BUNDLES", "from": "PATHTRACE_FROM", "topology": "PATHTRACE_TOPOLOGY"}


@dataclass(frozen=True)
class Config:
    bundles: Path = Path("captures")
    source: str = DEFAULT_SOURCE
    topology: str | None = None
    file: Path | None = None  # the config file read, if there was one


def _home(text: str, environ: Mapping[str, str]) -> Path:
    """``~/x`` as the HOME of ``environ`` has it."""
    if text == "~" or text.startswith("~/"):
        return Path(environ.get("HOME") or Path.home()) / text[2:]
    return Path(text)


def path(environ: Mapping[str, str] = os.environ) -> Path:
    base = environ.get("XDG_CONFIG_HOME") or "~/.config"
    return _home(base, environ) / "pathtrace" / "config.toml"


def load(environ: Mapping[str, str] = os.environ) -> Config:
    """The defaults: built in, then the file's, then the environment's."""
    file = path(environ)
    values: dict[str, str] = {}
    read: Path | None = None
    try:
        present = file.is_file()
    except PermissionError:
        # Not ours to read (HOME is another user's, as under setpriv): no defaults there.
        present = False
    if present:
        read = file
        try:
            data = tomllib.loads(file.read_text())
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
            raise UsageError(f"config file {file}: {error}; fix it or remove it") from None
        unknown = sorted(set(data) - set(KEYS))
        if unknown:
            raise UsageError(
                f"config file {file}: unknown key {unknown[0]!r}; known: {', '.join(KEYS)}"
            )
        for key, value in data.items():
            if not isinstance(value, str) or not value:
                raise UsageError(f"config file {file}: {key} must be a non-empty string")
            values[key] = value
    for key, variable in KEYS.items():
        if environ.get(variable):
            values[key] = environ[variable]
    return Config(
        bundles=_home(values["bundles"], environ) if "bundles" in values else Path("captures"),
        source=values.get("from", DEFAULT_SOURCE),
        topology=str(_home(values["topology"], environ)) if "topology" in values else None,
        file=read,
    )
