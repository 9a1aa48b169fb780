"""BPF netfilter links (kernel >= 6.4), made with the bpf() syscall.

libbpf 1.1 predates them, so the link is created by hand: a netfilter link
attaches to the namespace of the calling thread, so the thread enters the
namespace, creates the link, and leaves. The link lives as long as its fd.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct

from pathtrace.system import netns

BPF_PROG_TYPE_NETFILTER = 32
BPF_NETFILTER = 45
_BPF_LINK_CREATE = 28
_SYS_BPF = {"x86_64": 321, "aarch64": 280}[os.uname().machine]
NFPROTO_IPV4, NFPROTO_IPV6 = 2, 10

NF_INET_PRE_ROUTING, NF_INET_LOCAL_IN, NF_INET_FORWARD = 0, 1, 2
NF_INET_LOCAL_OUT, NF_INET_POST_ROUTING = 3, 4
HOOK_NAMES = {0: "PREROUTING", 1: "INPUT", 2: "FORWARD", 3: "OUTPUT", 4: "POSTROUTING"}

# Where the translation (or the filter) happens in each hook, as iptables and
# nftables place it: our "before" program goes one below, "after" one above.
PIVOTS = {
    NF_INET_PRE_ROUTING: -100,  # DNAT
    NF_INET_LOCAL_OUT: -100,  # DNAT of local traffic
    NF_INET_FORWARD: 0,  # the filter table
    NF_INET_POST_ROUTING: 100,  # SNAT / MASQUERADE
    NF_INET_LOCAL_IN: 100,  # SNAT of traffic to the host
}

# The kernel takes one BPF netfilter program per (hook, priority) and answers
# EBUSY to a second one. Runs side by side each take the nearest free priority
# on their side of the pivot; 49 of them stay between the pivot and the next
# table (mangle -150, filter 0, security 50, conntrack confirm last).
SLOTS = 49

_libc = ctypes.CDLL(None, use_errno=True)


def create(
    namespace: str, prog_fd: int, hook: int, priority: int, proto: int = NFPROTO_IPV4
) -> int:
    """Links program ``prog_fd`` into ``namespace`` at (family, hook, priority); returns
    the fd."""
    attr = struct.pack("<IIIIIIiI", prog_fd, 0, BPF_NETFILTER, 0, proto, hook, priority, 0)
    buf = ctypes.create_string_buffer(attr, 64)
    with netns.entered(namespace):
        fd = _libc.syscall(_SYS_BPF, _BPF_LINK_CREATE, buf, ctypes.c_uint(64))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(
            err,
            f"netfilter link in {namespace} ({HOOK_NAMES[hook]} {priority}): {os.strerror(err)}",
        )
    return int(fd)


def create_beside(
    namespace: str, prog_fd: int, hook: int, side: int, proto: int = NFPROTO_IPV4
) -> tuple[int, int]:
    """Links ``prog_fd`` just before (``side`` -1) or after (+1) the hook's pivot, at the
    nearest priority no other BPF program holds (another pathtrace run's).

    Returns the link's fd and how many priorities away from the pivot it went."""
    pivot = PIVOTS[hook]
    for step in range(1, SLOTS + 1):
        try:
            return create(namespace, prog_fd, hook, pivot + side * step, proto), step
        except OSError as error:
            if error.errno != errno.EBUSY:
                raise
    raise OSError(
        errno.EBUSY,
        f"netfilter link in {namespace} ({HOOK_NAMES[hook]}): all {SLOTS} priorities "
        f"{'before' if side < 0 else 'after'} {pivot} are taken by other BPF programs",
    )
