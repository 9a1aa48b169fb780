"""The per-boot memory of what the kernel refused to load."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

from pathtrace.kernel.refusals import Refusals, boot_id


def _object(tmp_path: Path) -> Path:
    obj = tmp_path / "veth.bpf.o"
    obj.write_bytes(b"\x7fELF")
    return obj


def test_a_lasting_refusal_is_remembered_for_this_boot(tmp_path: Path) -> None:
    obj, store = _object(tmp_path), tmp_path / "refusals.json"
    first = Refusals(store)
    first.remember(obj, "fentry", "load veth.bpf.o: Operation not permitted", errno.EPERM)
    first.save()
    again = Refusals(store)
    assert again.get(obj, "fentry") == "load veth.bpf.o: Operation not permitted"
    assert again.get(obj, "kprobe") is None
    assert json.loads(store.read_text())["boot"] == boot_id() != ""


def test_transient_failures_are_not_remembered(tmp_path: Path) -> None:
    obj, store = _object(tmp_path), tmp_path / "refusals.json"
    refusals = Refusals(store)
    for err in (errno.ENOMEM, errno.EBUSY, errno.EAGAIN, errno.EMFILE):
        refusals.remember(obj, "fentry", "no", err)
    refusals.save()
    assert not store.exists()
    assert Refusals(store).get(obj, "fentry") is None


def test_another_boot_or_a_rebuilt_object_asks_again(tmp_path: Path) -> None:
    obj, store = _object(tmp_path), tmp_path / "refusals.json"
    refusals = Refusals(store)
    refusals.remember(obj, "fentry", "refused", errno.EPERM)
    refusals.save()
    os.utime(obj, ns=(1, 1))  # as a rebuild would
    assert Refusals(store).get(obj, "fentry") is None

    refusals = Refusals(store)
    refusals.remember(obj, "fentry", "refused", errno.EPERM)
    refusals.save()
    data = json.loads(store.read_text())
    store.write_text(json.dumps({**data, "boot": "an-earlier-boot"}))
    assert Refusals(store).get(obj, "fentry") is None


def test_a_damaged_file_is_ignored(tmp_path: Path) -> None:
    obj, store = _object(tmp_path), tmp_path / "refusals.json"
    for text in ("{not json", "[1, 2]", '{"boot": 3, "refused": 4}'):
        store.write_text(text)
        assert Refusals(store).get(obj, "fentry") is None
