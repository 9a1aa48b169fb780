"""Defaults where people look for them: the XDG config file, the environment over
it, the command line over both; a bad file is one line and exit 2. Shell
completion comes from the same parser."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pathtrace import config
from pathtrace.errors import UsageError


def _env(tmp_path: Path, **more: str) -> dict[str, str]:
    return {"XDG_CONFIG_HOME": str(tmp_path / "xdg"), "HOME": str(tmp_path), **more}


def _write(tmp_path: Path, text: str) -> Path:
    file = tmp_path / "xdg" / "pathtrace" / "config.toml"
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(text)
    return file


def test_built_in_defaults_without_a_file(tmp_path: Path) -> None:
    found = config.load(_env(tmp_path))
    assert (found.bundles, found.source, found.topology, found.file) == (
        Path("captures"),
        "container1",
        None,
        None,
    )
    assert config.path({"HOME": "/home/u"}) == Path("/home/u/.config/pathtrace/config.toml")


def test_the_file_then_the_environment(tmp_path: Path) -> None:
    file = _write(tmp_path, 'bundles = "~/runs"\nfrom = "wan"\ntopology = "/etc/lab.toml"\n')
    found = config.load(_env(tmp_path))
    assert found.file == file
    assert (found.bundles, found.source, found.topology) == (
        tmp_path / "runs",
        "wan",
        "/etc/lab.toml",
    )
    over = config.load(_env(tmp_path, PATHTRACE_FROM="container2", PATHTRACE_BUNDLES="/srv/b"))
    assert (over.source, over.bundles, over.topology) == (
        "container2",
        Path("/srv/b"),
        "/etc/lab.toml",
    )


@pytest.mark.parametrize(
    "text, said",
    [
        ("bundles = ", "config file"),
        ('colour = "red"\n', "unknown key 'colour'; known: bundles, from, topology"),
        ("from = 3\n", "from must be a non-empty string"),
    ],
)
def test_a_bad_file_is_one_clear_error(tmp_path: Path, text: str, said: str) -> None:
    _write(tmp_path, text)
    with pytest.raises(UsageError, match=said):
        config.load(_env(tmp_path))


def _cli(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pathtrace", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **_env(tmp_path), **env},
    )


def test_the_command_line_uses_the_defaults(tmp_path: Path) -> None:
    (tmp_path / "runs").mkdir()
    _write(tmp_path, f'bundles = "{tmp_path / "runs"}"\nfrom = "wan"\n')
    helped = " ".join(_cli(tmp_path, "run", "--help", COLUMNS="300").stdout.split())
    assert "(default: wan)" in helped and f"{tmp_path / 'runs'}/<UTC time>" in helped
    listed = _cli(tmp_path, "bundle", "list", "-v")
    assert listed.returncode == 0, listed.stderr
    _write(tmp_path, "from = \n")
    bad = _cli(tmp_path, "bundle", "list")
    assert bad.returncode == 2 and bad.stderr.startswith("pathtrace: config file ")
    assert "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_every_option_has_help(tmp_path: Path) -> None:
    from pathtrace.cli import _build_parser

    def walk(parser: object) -> list[str]:
        missing = []
        for action in parser._actions:  # type: ignore[attr-defined]
            if hasattr(action, "choices") and isinstance(action.choices, dict):
                for sub in action.choices.values():
                    missing += walk(sub)
            elif not action.help and action.dest not in ("help",):
                missing.append(f"{parser.prog}: {action.dest}")  # type: ignore[attr-defined]
        return missing

    assert walk(_build_parser()) == []


def test_bash_completion_completes_commands_and_choices(tmp_path: Path) -> None:
    script = _cli(tmp_path, "completion", "bash")
    assert script.returncode == 0, script.stderr
    (tmp_path / "c.bash").write_text(script.stdout)

    def complete(*words: str) -> set[str]:
        line = " ".join(f"'{w}'" for w in words)
        done = subprocess.run(
            ["bash", "-c", f"source {tmp_path / 'c.bash'}; COMP_WORDS=({line}); "
             f"COMP_CWORD={len(words) - 1}; COMP_LINE=\"{' '.join(words)}\"; "
             f"COMP_POINT=${{#COMP_LINE}}; _shtab_pathtrace; printf '%s\\n' \"${{COMPREPLY[@]}}\""],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        return set(done.stdout.split())

    assert "run" in complete("pathtrace", "ru")
    assert {"ping", "udp", "tcp", "dns"} <= complete("pathtrace", "run", "")
    assert "--capture" in complete("pathtrace", "run", "--ca")


def test_bare_pathtrace_without_a_terminal_prints_help(tmp_path: Path) -> None:
    done = _cli(tmp_path)
    assert done.returncode == 2
    assert done.stdout.startswith("usage: pathtrace") and "completion" in done.stdout


def test_a_config_file_this_user_cannot_reach_is_no_config(tmp_path: Path) -> None:
    import os as os_

    if os_.geteuid() != 0:
        pytest.skip("needs root to make a folder another user cannot enter")
    (tmp_path / "xdg" / "pathtrace").mkdir(parents=True)
    (tmp_path / "xdg").chmod(0o700)
    done = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--",
         sys.executable, "-m", "pathtrace", "completion", "bash"],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, **_env(tmp_path)}, cwd="/",
    )  # fmt: skip
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
