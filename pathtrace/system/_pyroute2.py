"""Import only the parts of pyroute2 that a command uses.

pyroute2's package ``__init__`` imports every module it has (~90 ms, a third of
`lab up`). Before anything imports it, we register the package with an empty
``__init__``, so ``pyroute2.iproute.linux`` and ``pyroute2.netns`` load alone. Any
other name asked of the package (``from pyroute2 import NDB``) runs the real
``__init__`` then, so code elsewhere sees the package it expects.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import types
from typing import Any

_LOCK = threading.Lock()  # threads open their first netlink socket at once


def install() -> None:
    with _LOCK:
        _install()


def _install() -> None:
    if "pyroute2" in sys.modules:
        return
    spec = importlib.util.find_spec("pyroute2")
    if spec is None or spec.origin is None or spec.loader is None:
        return  # not installed: the import that follows says so
    package = types.ModuleType("pyroute2")
    package.__spec__ = spec
    package.__path__ = list(spec.submodule_search_locations or [])
    package.__file__ = spec.origin
    origin = spec.origin

    def full(name: str) -> Any:
        try:
            return importlib.import_module(f"pyroute2.{name}")
        except ImportError:
            pass
        with open(origin) as f:
            exec(compile(f.read(), origin, "exec"), package.__dict__)
        del package.__dict__["__getattr__"]
        return getattr(package, name)

    package.__dict__["__getattr__"] = full
    sys.modules["pyroute2"] = package
