from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """`vm` tests run only inside the second kernel (tests/vm/guest.sh)."""
    if os.environ.get("PATHTRACE_KERNEL_VM") == "1":
        return
    skip = pytest.mark.skip(reason="runs in the second kernel: make test-vm")
    for item in items:
        if "vm" in item.keywords:
            item.add_marker(skip)
