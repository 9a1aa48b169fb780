"""The import graph points one way, down: each layer imports only the layers below it.

Read from the syntax tree (function-local imports included), so a violation
fails here whatever path the code takes at run time.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "pathtrace"

# Leaves every layer may use: the error tree and the version (they import nothing).
LEAVES = {"errors", "__init__"}
BASE = {"model", "system"}
ALLOWED: dict[str, set[str]] = {
    "model": set(),
    "system": {"model"},
    "kernel": BASE,
    "inject": BASE,
    "capture": BASE,
    "lab": BASE,
    "analyze": {"model"},
    "session": BASE | {"kernel", "inject", "capture", "lab", "analyze"},
    "sampling": {"model"},  # watch's rate policy
    "watch": BASE | {"kernel", "capture", "lab", "analyze", "session", "sampling"},
    "output": BASE | {"analyze"},
    "doctor": BASE | {"kernel"},
    "config": {"lab"},  # the user's defaults (DEFAULT_SOURCE is the lab's)
    "cli": BASE | {"kernel", "inject", "capture", "lab", "analyze", "session", "output"}
    | {"doctor", "tui", "config", "watch"},
    "tui": BASE | {"lab", "analyze", "session", "watch", "output"},
    "__main__": {"cli"},
}  # fmt: skip


def layer_of(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0]


def _is_module(name: str) -> bool:
    return (PACKAGE / f"{name}.py").exists() or (PACKAGE / name).is_dir()


def imports(path: Path) -> list[tuple[int, str, bool]]:
    """(line, imported layer, inside a function) of each pathtrace import in ``path``."""
    found = []
    tree = ast.parse(path.read_text())
    local = {
        id(node)
        for func in ast.walk(tree)
        if isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef)
        for node in ast.walk(func)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            parts = node.module.split(".")
            if parts[0] != "pathtrace":
                continue
            if len(parts) > 1:
                targets = [parts[1]]
            else:  # from pathtrace import X: a module of the package, or a name of its __init__
                targets = [a.name if _is_module(a.name) else "__init__" for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [
                a.name.split(".")[1]
                for a in node.names
                if a.name.startswith("pathtrace.") and a.name.count(".") >= 1
            ]
        else:
            continue
        for target in targets:
            found.append((node.lineno, target, id(node) in local))
    return found


def test_each_layer_imports_only_the_layers_below_it() -> None:
    violations = []
    for path in sorted(PACKAGE.rglob("*.py")):
        layer = layer_of(path)
        if layer in LEAVES:
            continue
        assert layer in ALLOWED, f"{path}: a layer the rules do not know ({layer})"
        for line, target, _ in imports(path):
            if target == layer or target in LEAVES or target in ALLOWED[layer]:
                continue
            violations.append(f"{path.relative_to(PACKAGE)}:{line}: {layer} imports {target}")
    assert not violations, "\n".join(violations)


def test_the_model_does_no_io_and_imports_no_library_that_does() -> None:
    heavy = {"subprocess", "socket", "pyroute2", "scapy", "ctypes", "textual", "threading"}
    found = []
    for path in sorted((PACKAGE / "model").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module.split(".")[0]]
            found += [f"{path.name}:{node.lineno}: {n}" for n in names if n in heavy]
    assert not found, found


def test_function_local_imports_of_pathtrace_say_why() -> None:
    """Inside a function only to keep a heavy library out of start-up, with a reason."""
    unexplained = []
    for path in sorted(PACKAGE.rglob("*.py")):
        lines = path.read_text().splitlines()
        for line, _, local in imports(path):
            if not local:
                continue
            text = lines[line - 1]
            above = line - 2  # the comment may head a block of imports
            while above >= 0 and lines[above].strip().startswith(("from ", "import ")):
                above -= 1
            before = lines[above].strip() if above >= 0 else ""
            if "# lazy:" not in text and not before.startswith("# lazy:"):
                unexplained.append(f"{path.relative_to(PACKAGE)}:{line}: {text.strip()}")
    assert not unexplained, "\n".join(unexplained)
