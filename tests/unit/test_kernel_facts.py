"""KernelFacts kept for this boot and this set of modules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pathtrace.kernel import hooks


def test_facts_are_read_once_per_boot_and_module_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "kernel-facts.json"
    fresh = hooks.KernelFacts.read()
    assert hooks.KernelFacts.remembered(store) == fresh
    assert json.loads(store.read_text())["key"] == hooks._facts_key() != ""

    def unread() -> hooks.KernelFacts:
        raise AssertionError("read again")

    monkeypatch.setattr(hooks.KernelFacts, "read", staticmethod(unread))
    kept = hooks.KernelFacts.remembered(store)
    assert kept == fresh and kept.drop_reasons == fresh.drop_reasons
    assert all(isinstance(k, int) for k in kept.drop_reasons)


@pytest.mark.parametrize("content", ["{", '{"key": "another boot", "facts": {}}', "[]", ""])
def test_stale_or_unreadable_facts_are_read_afresh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str
) -> None:
    store = tmp_path / "kernel-facts.json"
    store.write_text(content)
    fresh = hooks.KernelFacts.read()
    calls: list[int] = []

    def read() -> hooks.KernelFacts:
        calls.append(1)
        return fresh

    monkeypatch.setattr(hooks.KernelFacts, "read", staticmethod(read))
    assert hooks.KernelFacts.remembered(store) == fresh and calls == [1]
    assert json.loads(store.read_text())["key"] == hooks._facts_key()


def test_a_module_loaded_later_changes_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    before = hooks._facts_key()
    real_open = open

    def with_module(path: str, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        if path == "/proc/modules":
            import io

            return io.StringIO("nf_nat 61440 1 - Live 0x0\n")
        return real_open(path, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr("builtins.open", with_module)
    assert hooks._facts_key() not in ("", before)
