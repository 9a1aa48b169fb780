"""Nothing more was seen: a link without carrier, a neighbour that never answered, a bridge
that would not pass the frame.
"""

from __future__ import annotations

from ipaddress import ip_address

from pathtrace.analyze import links, routing
from pathtrace.analyze.causes.bridge import bridge_port_towards
from pathtrace.analyze.causes.common import arrival
from pathtrace.analyze.causes.neighbours import bare_station, no_arp_answer
from pathtrace.analyze.network import Network
from pathtrace.model.cause import Finding, ref
from pathtrace.model.state import Link, NamespaceState
from pathtrace.model.trace import Hop, Series


def stalled(net: Network, series: Series | None, last: Hop) -> tuple[str, Finding] | None:
    """(place, finding) for a packet last seen at ``last``."""
    if series is None:
        return None
    node = last.node
    state = net.state(node)
    if state is None or not last.interface:
        return None
    link = state.link(last.interface)
    if link is not None and (not link.up or not link.carrier):
        if link.up and link.kind == "bridge":
            return f"{node}/{link.name}", _bridge_without_carrier(net, state, link)
        if link.up:
            other = links.peer(net.all, state, link)
            peer_words = f"{other[1].name} in {other[0].node}" if other else "its peer"
            fix = (
                net.command(other[0].node, f"ip link set {other[1].name} up")
                if other
                else "bring its peer up"
            )
            objects = [ref("link", node, link.name)]
            if other:
                objects.append(ref("link", other[0].node, other[1].name))
            return f"{node}/{link.name}", Finding(
                "link.carrier",
                tuple(objects),
                f"{link.name} has no carrier: {peer_words} is down",
                fix,
                [f"{node}: {link.name} up, no carrier", f"{peer_words}: down"],
            )
        return f"{node}/{link.name}", Finding(
            links.down_code(link),
            (ref("link", node, link.name),),
            f"{link.name} is down",
            net.command(node, f"ip link set {link.name} up"),
            [f"{node}: {link.name} down"],
        )
    # An encapsulated datagram freed on the underlay device: its own way out.
    if last.action not in ("route", "send") and not (last.outer is not None and last.interface):
        # Held for ARP, then freed: the packet's last way out of the same node.
        sent = [h for h in series.hops if h.node == node and h.action in ("route", "send")]
        if sent:
            last = sent[-1]
            link = state.link(last.interface)  # the way out, not where it was held
        elif last.action not in ("end", "drop"):  # with a device: freed on its way out
            return None
    # Inside a tunnel's datagram: the underlay delivers the outer packet (encapsulated
    # by this node: routed as the node's own, not as forwarded).
    wire = last.wire
    # The lookup as the node made it: for the packet as it came in, from where it came,
    # to where it was going once PREROUTING was done (a DNAT changes that).
    first = next((h for h in series.hops if h.node == node), last)
    forwarded = node != series.hops[0].node and last.outer is None
    first_wire = first.wire
    lookup = routing.route_get(
        state,
        wire.dst,
        first_wire.src if forwarded else None,
        arrival(net, series, node) if forwarded else None,
    )
    if lookup.route is None:
        return None
    hop_ip = lookup.route.gateway or wire.dst
    if link is not None and link.kind == "bridge":
        # Sent by the bridge device itself: its port towards the next hop must pass it.
        blocked = bridge_port_towards(net, state, link, hop_ip)
        if blocked is not None:
            return f"{node}/{link.name}", blocked
    entry = links.neighbour(state, hop_ip, last.interface, after=True)
    if not links.unresolved(entry):
        return None
    assert entry is not None
    asked = "neighbour solicitation" if ":" in hop_ip else "ARP"
    cause = (
        f"{node} asked for {hop_ip}'s MAC on {last.interface} ({asked}) and got no answer: "
        f"the neighbour entry is {entry.state}"
    )
    evidence = [f"{node}: neighbour {entry.describe()}", f"{node}: {lookup.describe()}"]
    fix = f"make sure {hop_ip} is up and reachable on {last.interface}'s link"
    code, objects = "neigh.failed", [ref("neigh", node, hop_ip)]
    if lookup.rule is not None and lookup.rule.table not in (254, 255):
        objects.append(ref("rule", node, f"pref {lookup.rule.priority}"))
        cause += f"; the route came from {lookup.describe()}"
        six = "-6 " if lookup.rule.family == 6 else ""
        fix = net.command(node, f"ip {six}rule del pref {lookup.rule.priority}") + (
            f", or fix table {routing.table_name(lookup.rule.table)}'s route"
        )
    why = no_arp_answer(net, state, link, hop_ip) if link is not None else None
    if why is not None:
        cause += f": {why.cause}"
        fix = why.fix if why.fix else fix
        evidence += why.evidence
        # The owner's fault is the cause; the unanswered entry is how it showed.
        code, objects = why.code, [*why.objects, *objects]
    elif links.owner(net.all, hop_ip) is None:
        cause += f"; no traced namespace holds {hop_ip}"
        bare = bare_station(net, state, link, hop_ip) if link is not None else None
        if bare is None and lookup.route.gateway == hop_ip:
            route = lookup.route
            # The namespace on a shared link whose own lookup reaches the destination;
            # else the one that forwards there.
            reaches = net.next_hop(node, wire.dst)
            gateway = reaches[0] if reaches else net.gateway_for(node, ip_address(hop_ip).version)
            cause += f", the gateway of {node}'s route {route.describe()}"
            objects.append(ref("route", node, route.dst))
            if gateway is not None and gateway != hop_ip:
                cause += (
                    f"; the traced namespace on that network that reaches {wire.dst} is at "
                    f"{gateway}"
                    if reaches
                    else f"; the traced namespace that forwards on that network is at {gateway}"
                )
                six = "-6 " if ":" in gateway else ""
                table = "" if route.table == 254 else f" table {routing.table_name(route.table)}"
                again = f"ip {six}route replace {route.dst} via {gateway}{table}"
                rule = lookup.rule
                fix = (
                    net.command(node, f"ip {six}rule del pref {rule.priority}")
                    + f", or fix table {routing.table_name(rule.table)}'s route: "
                    f"{net.run_in(node)}{again}"
                    if rule is not None and rule.table not in (254, 255)
                    else net.command(node, again)
                )
                evidence.append(f"{node}: route {route.describe()}")
        if bare is not None:
            b_state, b_link, network = bare
            cause += (
                f", and the one station on {last.interface}'s link without an address in "
                f"{network} is {b_state.node}/{b_link.name} (the fix below assumes "
                f"{hop_ip} was its address)"
            )
            evidence.append(
                f"{b_state.node}: {b_link.name} addresses: {', '.join(b_link.addresses) or 'none'}"
            )
            objects.append(ref("link", b_state.node, b_link.name))
            add = f"ip addr add {hop_ip}/{network.prefixlen} dev {b_link.name}"
            if b_link.up:
                fix = net.command(b_state.node, add)
            else:
                cause += f"; {b_link.name} is down, which takes IPv6 addresses away with it"
                run_in = net.run_in(b_state.node)
                fix = net.advice(f"{run_in}ip link set {b_link.name} up && {run_in}{add}")
    return f"{node}/{last.interface}", Finding(code, tuple(objects), cause, fix, evidence)


def _bridge_without_carrier(net: Network, state: NamespaceState, bridge: Link) -> Finding:
    """A bridge has carrier while one of its ports forwards: none does."""
    node = state.node
    ports = [p for p in state.links if p.master == bridge.name]
    evidence = [f"{node}: {bridge.name} up, no carrier"] + [
        f"{node}: port {p.name} {'up' if p.up else 'down'}"
        f"{'' if p.carrier else ', no carrier'}"
        + (f", {p.port.describe()}" if p.port is not None else "")
        for p in ports
    ]
    if not ports:
        return Finding(
            "link.carrier",
            (ref("link", node, bridge.name),),
            f"{bridge.name} has no carrier: it has no ports (a bridge has carrier while one "
            "of its ports forwards)",
            None,
            evidence,
        )
    down = [p for p in ports if not p.up]
    if len(down) == len(ports):
        return Finding(
            "link.down",
            tuple(ref("link", node, p.name) for p in down),
            f"{bridge.name} has no carrier: a bridge has it while one of its ports forwards, "
            f"and {', '.join(p.name for p in down)} {'are' if len(down) > 1 else 'is'} down",
            net.advice(" && ".join(f"{net.run_in(node)}ip link set {p.name} up" for p in down)),
            evidence,
        )
    # Ports without carrier: the other end of each (a veth's peer) is down.
    peers = [links.peer(net.all, state, p) for p in ports if p.up and not p.carrier]
    if len(peers) == len(ports) and all(o is not None and not o[1].up for o in peers):
        ends = [o for o in peers if o is not None]
        return Finding(
            "link.carrier",
            tuple(ref("link", o[0].node, o[1].name) for o in ends)
            + tuple(ref("link", node, p.name) for p in ports),
            f"{bridge.name} has no carrier: a bridge has it while one of its ports forwards, "
            f"and no port has carrier: "
            + ", ".join(f"{o[1].name} in {o[0].node}" for o in ends)
            + (" are" if len(ends) > 1 else " is")
            + " down",
            net.advice(
                " && ".join(f"{net.run_in(o[0].node)}ip link set {o[1].name} up" for o in ends)
            ),
            evidence + [f"{o[0].node}: {o[1].name} down" for o in ends],
        )
    disabled = [p for p in ports if p.up and p.carrier and p.port and p.port.state != "forwarding"]
    if len(disabled) == len(ports):
        names = ", ".join(p.name for p in disabled)
        plural = len(disabled) > 1
        return Finding(
            "bridge.port_state",
            tuple(ref("port", node, p.name) for p in disabled),
            f"{bridge.name} has no carrier: a bridge has it while one of its ports forwards, "
            f"and its port{'s' if plural else ''} {names} {'are' if plural else 'is'} in "
            f"state {disabled[0].port.state if disabled[0].port else '?'}",
            net.advice(
                " && ".join(
                    f"{net.run_in(node)}bridge link set dev {p.name} state 3" for p in disabled
                )
            ),
            evidence,
        )
    return Finding(
        "link.carrier",
        (ref("link", node, bridge.name), *(ref("link", node, p.name) for p in ports)),
        f"{bridge.name} has no carrier: none of its ports ({', '.join(p.name for p in ports)}) "
        "forwards (a bridge has carrier while one of its ports does)",
        None,
        evidence,
    )
