"""A snapshot of the root namespace: what pathtrace must never change."""

from __future__ import annotations

import os
import shutil
import subprocess

# Counters and per-boot values that the kernel changes by itself.
_VOLATILE = (
    "nf_conntrack_count",
    "stable_secret",
    "nf_conntrack_buckets",
    "base_reachable_time",
    "hash_ip",
    "fib_sync_mem",
    "nf_log",
)


def _command(*argv: str) -> str:
    if shutil.which(argv[0]) is None:
        return f"{argv[0]} not installed"
    result = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    return result.stdout + result.stderr


def _sysctls() -> dict[str, str]:
    values = {}
    for top, _, files in os.walk("/proc/sys/net"):
        for name in files:
            path = os.path.join(top, name)
            if any(v in path for v in _VOLATILE):
                continue
            try:
                with open(path) as f:
                    values[path] = f.read()
            except OSError:
                continue
    return values


def snapshot() -> dict[str, object]:
    return {
        "links": _command("ip", "-d", "-o", "link", "show").replace("state UNKNOWN", ""),
        "addresses": _command("ip", "-o", "address", "show"),
        "routes": _command("ip", "route", "show", "table", "all"),
        "rules": _command("ip", "rule", "show"),
        "sysctls": _sysctls(),
        "nft": _command("nft", "list", "ruleset"),
        "iptables": "\n".join(
            line for line in _command("iptables-save").splitlines() if not line.startswith("#")
        ),
    }
