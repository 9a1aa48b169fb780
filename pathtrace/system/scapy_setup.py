"""scapy, set up for what pathtrace uses it for: building and dissecting packets.

Importing scapy reads the routing tables and every interface of the namespace
it is imported in; on a node with hundreds of pods that is seconds (2.9 s with
400 veths here, 0.9 s of it interfaces). pathtrace never routes or sends with
scapy, so its routes are not loaded; and a run imports it from inside the
source namespace, which has few interfaces.
"""

from __future__ import annotations


def prepare() -> None:
    """Call before any other scapy import (cheap, and harmless to repeat)."""
    from scapy.config import conf

    conf.route_autoload = False
    conf.route6_autoload = False
