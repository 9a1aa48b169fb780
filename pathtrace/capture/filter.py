"""The kernel-side capture filter: a run's packets only, as classic BPF.

Written as a pcap expression (what tcpdump users read) and compiled by
`tcpdump -ddd`. It keeps what the probes' tag matcher keeps: tagged ICMP echo
and UDP (request or answer), the handshake segments of a tagged TCP probe, and
ICMP errors quoting a tagged packet (quoted IP header without options).
"""

from __future__ import annotations

import subprocess

from pathtrace.errors import EnvironmentProblem
from pathtrace.inject.tag import MAGIC, MAGIC_REPLY


def expression(run: int) -> str:
    run &= 0xFFFFFFFF
    run16 = run & 0xFFFF
    magic = f"(icmp[8:4] = {MAGIC:#x} or icmp[8:4] = {MAGIC_REPLY:#x})"
    icmp = f"(icmp and (icmp[0] = 8 or icmp[0] = 0) and {magic} and icmp[12:4] = {run:#x})"
    udp = (
        f"(udp and (udp[8:4] = {MAGIC:#x} or udp[8:4] = {MAGIC_REPLY:#x}) and udp[12:4] = {run:#x})"
    )
    tcp = (
        "(tcp and ("
        f"(tcp[13] & 0x12 = 0x02 and tcp[4:2] = {run16:#x}) or "
        f"(tcp[13] & 0x12 = 0x12 and (tcp[8:4] - 1) >> 16 = {run16:#x}) or "
        f"(tcp[13] & 0x14 = 0x14 and (tcp[8:4] - 1) >> 16 = {run16:#x}) or "
        f"(tcp[13] & 0x14 = 0x04 and (tcp[4:4] - 1) >> 16 = {run16:#x})))"
    )
    error = (
        "(icmp and (icmp[0] = 3 or icmp[0] = 11 or icmp[0] = 12) and ("
        f"((icmp[36:4] = {MAGIC:#x} or icmp[36:4] = {MAGIC_REPLY:#x}) "
        f"and icmp[40:4] = {run:#x}) or "
        f"(icmp[17] = 6 and icmp[32:2] = {run16:#x})))"
    )
    return f"ip and ({icmp} or {udp} or {tcp} or {error})"


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
