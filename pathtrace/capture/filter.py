"""pcap-filter expressions compiled to classic BPF by libpcap (`tcpdump -ddd`).

The capture sockets' filter (a run's packets only: the tag's expression,
``model.tag.capture_filter``) is compiled for Ethernet; `watch`'s filter, the
user's expression, for raw IP: the probes run it on the bytes from the IP
header on, at every hook, whatever link the packet is on.
"""

from __future__ import annotations

import subprocess

from pathtrace.errors import EnvironmentProblem, UsageError


def compile_filter(expr: str, link: str = "EN10MB") -> list[tuple[int, int, int, int]]:
    """(code, jt, jf, k) instructions for a ``link`` (a tcpdump -y name: EN10MB, RAW)."""
    try:
        out = subprocess.run(
            ["tcpdump", "-ddd", "-y", link, expr], capture_output=True, text=True, check=True
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


# PT_FILTER_INSNS (probes/include/pathtrace.h): what the probes' interpreter holds.
WATCH_INSNS = 128


def compile_watch_filter(expr: str) -> list[tuple[int, int, int, int]]:
    """The user's expression for raw IP packets; one clear line when it is not one."""
    if not expr.strip():
        raise UsageError("watch needs a filter, as tcpdump takes it: e.g. 'udp port 53'")
    try:
        program = compile_filter(expr, "RAW")
    except EnvironmentProblem as error:
        if "not installed" in str(error):
            raise
        why = str(error).split(": ", 1)[-1].removeprefix("tcpdump: ")
        raise UsageError(
            f"the filter {expr!r} is not a pcap-filter expression for IP packets ({why}); "
            "see `man pcap-filter`"
        ) from None
    if len(program) > WATCH_INSNS:
        raise UsageError(
            f"the filter {expr!r} compiles to {len(program)} instructions; the probes run at "
            f"most {WATCH_INSNS}: split it, or watch less at once"
        )
    return program
