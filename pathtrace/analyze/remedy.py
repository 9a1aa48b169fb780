"""Fixes read off the objects a predicted stop names, each one a command for the
node that holds the object: delete the rule or route that refuses, turn the
switch back, bring the link up. None is printed unproven: the caller applies
each to the saved state (``proof``) and keeps the first the prediction says heals.
Narrowest first: an interface's sysctl before a global one, never rp_filter for
every interface.
"""

from __future__ import annotations

from pathtrace.analyze.network import Network
from pathtrace.model.cause import parse_ref
from pathtrace.model.prediction import Prediction
from pathtrace.model.state import TABLE_NAMES

# What a switch that stopped a packet is set back to.
_HEALTHY = {
    "forwarding": "1",
    "ip_forward": "1",
    "arp_ignore": "0",
    "route_localnet": "1",
    "echo_ignore_all": "0",
    "icmp_echo_ignore_all": "0",
    "rp_filter": "2",  # loose: the source need only be routable back
}


def candidates(net: Network, stop: Prediction) -> list[tuple[str, str]]:
    """(node, command) for each object of the stop, narrowest first."""
    found: list[tuple[str, str]] = []
    for text in stop.objects:
        kind, node, name = parse_ref(text)
        state = net.state(node)
        if state is None:
            continue
        if kind == "nf" and name.split()[-2:-1] in (["handle"], ["rule"]):
            family, table, chain = name.split()[:3]
            rule = next(
                (
                    r
                    for r in state.rules().rules
                    if (r.family, r.table, r.chain, str(r.handle))
                    == (family, table, chain, name.split()[-1])
                ),
                None,
            )
            if rule is not None and stop.code in ("nf.drop", "nf.reject", "nf.ttl", "nf.notrack"):
                found.append((node, rule.delete_command))
        elif kind == "sysctl":
            setting = name.rsplit(".", 1)[-1]
            value = _HEALTHY.get(setting)
            if value is None or (setting == "rp_filter" and ".all." in name):
                continue
            found.append((node, f"sysctl -w {name}={value}"))
        elif kind == "link":
            link = state.link(name)
            if link is None:
                continue
            if not link.up:
                found.append((node, f"ip link set {name} up"))
            elif link.noarp:
                found.append((node, f"ip link set dev {name} arp on"))
        elif kind == "rule" and name.startswith("pref "):
            for policy in state.route_rules:
                if f"pref {policy.priority}" == name:
                    six = "-6 " if policy.family == 6 else ""
                    found.append((node, f"ip {six}rule del {name}"))
        elif kind == "route" and stop.code in (
            "route.blackhole",
            "route.unreachable",
            "route.prohibit",
        ):
            kind_of = stop.code.split(".")[1]
            for route in state.routes:
                if route.type == kind_of and (route.dst == name or name.startswith(route.dst)):
                    six = "-6 " if route.family == 6 else ""
                    table = (
                        f" table {TABLE_NAMES.get(route.table, route.table)}"
                        if route.table != 254
                        else ""
                    )
                    found.append((node, f"ip {six}route del {route.type} {route.dst}{table}"))
        elif kind == "neigh" and stop.code == "neigh.wrong_mac":
            for entry in state.neighbour_entries():
                if entry.dst == name:
                    found.append((node, f"ip neigh del {name} dev {entry.dev}"))
        elif kind == "port":
            switch = {
                "bridge.port_state": "state 3",
                "bridge.isolated": "isolated off",
                "bridge.flood": "learning on flood on",
            }.get(stop.code or "")
            if switch:
                found.append((node, f"bridge link set dev {name} {switch}"))
        elif kind == "fdb":
            for fdb in state.fdb:
                if fdb.is_for(name) and fdb.master:
                    found.append((node, f"bridge fdb del {fdb.mac} dev {fdb.dev} master"))
    # The interface's switch before the global one.
    return sorted(found, key=lambda c: ".all." in c[1] or "ip_forward" in c[1])
