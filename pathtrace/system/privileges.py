"""Which capabilities this process holds, and one clear error when one is missing."""

from __future__ import annotations

from pathtrace.errors import EnvironmentProblem

CAPABILITIES = {
    "CAP_NET_ADMIN": 12,
    "CAP_SYS_ADMIN": 21,
    "CAP_NET_RAW": 13,
    "CAP_BPF": 39,
    "CAP_PERFMON": 38,
}


def effective() -> set[str]:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                bits = int(line.split()[1], 16)
                return {name for name, bit in CAPABILITIES.items() if bits >> bit & 1}
    return set()


def require(*names: str, doing: str) -> None:
    missing = [n for n in names if n not in effective()]
    if missing:
        raise EnvironmentProblem(
            f"{doing} needs {' and '.join(missing)}, which this process lacks: "
            "run it as root (e.g. with sudo)"
        )
