"""Sockets: a DNAT to a port nothing listens on, while the service listens on another."""

from __future__ import annotations

from pathtrace.model.cause import ref
from pathtrace.model.state import Listener
from pathtrace.model.trace import Packet, Series


def dnat_to_a_closed_port(
    request: Series, sockets: list[Listener], arrived: Packet
) -> tuple[str, str, tuple[str, ...]] | None:
    """A DNAT rule sent the probe to a port nothing listens on, while the service
    listens on another port of that address: the rule's port is as likely the
    fault as the service. (cause, fix) naming both; None without such a rule."""
    at = next(
        (
            h
            for h in reversed(request.hops)
            if h.translation and h.translation.kind == "DNAT" and h.translation.rule
        ),
        None,
    )
    dnat = at.translation if at else None
    if at is None or dnat is None:
        return None
    here = [s.endpoint for s in sockets if s.takes(arrived.dst) and s.port != arrived.dport]
    if not here:
        return None
    return (
        f"{dnat.rule} sends it to port {arrived.dport}, while the service there listens on "
        f"{', '.join(here)}",
        f"make the DNAT ({dnat.rule}) translate to a port that listens ({', '.join(here)}), "
        f"or start a listener on {arrived.dst}:{arrived.dport}",
        (ref("nf", at.node, dnat.rule_id),) if dnat.rule_id else (),
    )
