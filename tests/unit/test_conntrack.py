"""Conntrack entries read from netlink as records, in a scratch host, checked
against `conntrack -L` on the same table; older bundles' lines read back."""

from __future__ import annotations

import os
from typing import Any

import pytest

from pathtrace.model.conntrack import ConntrackEntry
from tests import scratch

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="namespaces need root")

# A namespace with conntrack in use (a rule that reads it), an ICMP exchange and a
# TCP connection to a listener over loopback, and an IPv6 ping.
_READ = """
import json, socket, subprocess
from pathtrace.system import conntrack
def sh(c):
    return subprocess.run(c, shell=True, check=True, capture_output=True, text=True).stdout
sh("ip netns add t1")
def ns(c):
    return sh("ip netns exec t1 " + c)
ns("ip link set lo up")
ns("nft add table inet t")
ns("nft 'add chain inet t c { type filter hook output priority 0; }'")
ns("nft add rule inet t c ct state new accept")
ns("ping -c1 -W1 127.0.0.1")
ns("ping -c1 -W1 ::1")
ns("python3 -c 'import socket; s=socket.socket(); s.bind((\\"127.0.0.1\\", 9)); s.listen();"
   " c=socket.create_connection((\\"127.0.0.1\\", 9)); s.accept()'")
found = [e.to_json() for e in conntrack.entries("t1")]
listed = ns("conntrack -L -f ipv4 2>/dev/null") + ns("conntrack -L -f ipv6 2>/dev/null")
print(json.dumps([found, listed]))
"""


@pytest.fixture(scope="module")
def read() -> tuple[list[ConntrackEntry], str]:
    found, listed = scratch.result(_READ)
    return [ConntrackEntry.from_json(e) for e in found], listed


def test_entries_are_the_table_conntrack_lists(read: tuple[list[ConntrackEntry], Any]) -> None:
    found, listed = read
    lines = [line for line in listed.splitlines() if line.strip()]
    assert len(found) == len(lines) == 3, (found, listed)
    by_protocol = {e.protocol: e for e in found}
    tcp = by_protocol["tcp"]
    assert (tcp.original.src, tcp.original.dport, tcp.reply.sport) == ("127.0.0.1", 9, 9)
    assert tcp.tcp_state and tcp.tcp_state in listed
    icmp, icmp6 = by_protocol["icmp"], by_protocol["icmpv6"]
    assert (icmp.original.icmp_type, icmp.reply.icmp_type) == (8, 0)
    assert (icmp6.original.src, icmp6.original.icmp_type) == ("::1", 128)
    # Said as conntrack says it: every key=value of the tuples is in its line.
    for entry in found:
        line = next(x for x in lines if x.startswith(entry.protocol + " "))
        for word in entry.original.describe().split() + entry.reply.describe().split():
            assert word in line.split(), (word, line)
        assert ("[UNREPLIED]" in line) == ("[UNREPLIED]" in entry.describe())


def test_older_bundles_lines_read_back(read: tuple[list[ConntrackEntry], Any]) -> None:
    _, listed = read
    for line in listed.splitlines():
        if not line.strip():
            continue
        entry = ConntrackEntry.from_json(line)
        assert entry.describe() == line
        assert entry.original.src and entry.reply.dst
        assert entry.involves(entry.original.src)
