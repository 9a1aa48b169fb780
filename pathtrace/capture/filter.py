"""The kernel-side capture filter: a run's packets only, as classic BPF.

The pcap expression is the tag's (``model.tag.capture_filter``); it is compiled
here by `tcpdump -ddd` into instructions for the capture sockets.
"""

from __future__ import annotations

import subprocess

from pathtrace.errors import EnvironmentProblem


def compile_filter(expr: str) -> list[tuple[int, int, int, int]]:
    """(code, jt, jf, k) instructions for an Ethernet link."""
    try:
        out = subprocess.run(
            ["tcpdump", "-ddd", "-y", "EN10MB", expr], capture_output=True, text=True, check=True
        ).stdout.split("\n")
    except FileNotFoundError:
        raise EnvironmentProblem("tcpdump is not installed; run `make setup`") from None
    except subprocess.CalledProcessError as error:
        raise EnvironmentProblem(
            f"tcpdump cannot compile the capture filter: {error.stderr.strip()}"
        ) from None
    count = int(out[0])
    program = [tuple(int(x) for x in line.split()) for line in out[1 : 1 + count]]
    return [(c, jt, jf, k) for c, jt, jf, k in program]
