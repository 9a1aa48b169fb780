"""Errors a user can cause, each with one line of advice and its own exit code.

    PathtraceError                   (never raised itself)
    ├── UsageError            2      bad arguments: unknown node, bad address, ...
    ├── EnvironmentProblem    3      not root (names the capability), a missing tool
    │   ├── KernelUnsupported 6      the kernel lacks what tracing needs (BTF, every hook)
    │   └── ProbesMissing     7      the probe objects are not built
    ├── TopologyError         4      a topology file that is malformed or contradictory
    ├── ConflictError         5      the machine holds something in the way (a namespace
    │                                pathtrace did not create)
    ├── BundleError           8      a bundle that is missing, corrupt, truncated, foreign
    │                                or of a newer format (pathtrace/output/bundle.py)
    └── SaveError             9      a bundle that could not be written (disk full, ...);
                                     nothing of it is left behind

Exit code 1 is kept for "the packet was not delivered" (a diagnosis, not an error);
130 for a run stopped by Ctrl-C (its report of the probes so far is printed first);
141 when the reader of pathtrace's output went away (``| head``).
The CLI prints ``str(error)`` on one line and exits with ``error.exit_code``.
"""

from __future__ import annotations


class PathtraceError(Exception):
    exit_code = 1


class UsageError(PathtraceError):
    exit_code = 2


class EnvironmentProblem(PathtraceError):
    exit_code = 3


class KernelUnsupported(EnvironmentProblem):
    exit_code = 6


class ProbesMissing(EnvironmentProblem):
    exit_code = 7


class TopologyError(PathtraceError):
    exit_code = 4

    def __init__(self, field: str, problem: str, source: str = "") -> None:
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{field}: {problem}")
        self.field = field


class ConflictError(PathtraceError):
    exit_code = 5


class BundleError(PathtraceError):
    exit_code = 8


class SaveError(PathtraceError):
    exit_code = 9
