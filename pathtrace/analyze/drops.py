"""Why a packet stopped: from the kernel's reason, where it happened, and saved state.

Three questions, each answered with a place, a cause, a fix and the evidence:
``explain`` (a drop the kernel reported), ``refusal`` (an ICMP error a node
sent back), ``stalled`` (nothing more was seen: a link without carrier, a
neighbour that never answered ARP, a bridge that would not pass the frame).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import replace
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_interface

from pathtrace.analyze import links, routing
from pathtrace.analyze.network import Network
from pathtrace.model.cause import Finding, ref
from pathtrace.model.event import Event, Hook
from pathtrace.model.ruleset import LiveRule
from pathtrace.model.state import Link, NamespaceState
from pathtrace.model.trace import Hop, Packet, Series, Verdict

Placed = tuple[str | None, Finding]  # (a better place than the drop's, the finding)
ROUTING_REASONS = (
    "NOT_SPECIFIED",
    "IP_INADDRERRORS",
    "IP_INNOROUTES",
    "IP_OUTNOROUTES",
    "NO_ROUTE",
    "IP_BLACKHOLE",
    "UNREACHABLE",
)


def explain(
    net: Network, series: Series, drop: Hop, events: Sequence[Event], source: str
) -> Verdict:
    if not drop.node:  # freed before any device: the netfilter state's namespace says where
        drop = replace(drop, node=_node_of_skb(net, drop, events) or source)
    node, reason = drop.node, drop.drop_reason or "NOT_SPECIFIED"
    where = f"{node}/{drop.interface}" if drop.interface else node
    location = _location(drop, events)
    arrived_on = _arrived_on(net, series, drop)
    packet = drop.packet
    found: Placed | None = None
    if reason == "NETFILTER_DROP":
        chain = _open_chain(net, node, events)
        finding, hook = _netfilter(net, series, drop, chain)
        if not drop.interface:
            where = f"{node} ({hook or 'netfilter'}, before any device)"
        found = (None, finding)
    elif reason == "OTHERHOST":
        found = _wrong_mac(net, series, drop) or _flooded_past(net, series, drop)
    elif (
        drop.outer is not None
        # Freed in fragmentation (or where the symbol is not known): then the size is
        # the fact that explains it.
        and ("fragment" in location or not location)
        and (found := _tunnel_mtu(net, drop)) is not None
    ):
        pass  # the datagram was larger than its underlay device carries
    elif location.startswith(("vxlan_", "geneve_")) or _kind(net, drop) in ("vxlan", "geneve"):
        found = _tunnel_no_target(net, drop, events)
    elif reason == "NO_TX_TARGET" or location.startswith("br_"):
        # The bridge's switches; else the frame's address: a MAC that is not the next
        # hop's goes nowhere (or back towards the port it came in by, which a bridge
        # never does).
        found = _bridge_stop(net, series, drop) or _wrong_mac(net, series, drop)
    elif reason == "IP_RPFILTER":
        state = net.state(node)
        values = ", ".join(
            f"{k.removeprefix('net.ipv4.conf.')}={v}"
            for k, v in (state.sysctls.items() if state else [])
            if k.endswith("rp_filter") and v != "0"
        )
        lookup = net.lookup(node, packet.src)
        back = lookup.describe() if lookup else "?"
        keys = [
            k
            for k, v in (state.sysctls.items() if state else [])
            if k.endswith("rp_filter") and v != "0"
        ]
        objects = (*(ref("sysctl", node, k) for k in keys), ref("route", node, packet.src))
        evidence = [f"{node}: {values}", f"{node}: route to {packet.src}: {back}"]
        iface = drop.interface
        if lookup is None or lookup.refused or lookup.route is None:
            # No way back at all: loose mode (2) drops it too; only a route helps.
            hop = net.next_hop(node, packet.src)
            route = f"{hop[1]} via {hop[0]}" if hop else packet.src
            found = (
                None,
                Finding(
                    "sysctl.rp_filter",
                    objects,
                    f"reverse-path filtering in {node} ({values}): {node} has no route back to "
                    f"the source {packet.src} ({back}), so strict and loose modes alike "
                    "drop it",
                    net.command(node, f"ip route add {route} dev {iface}")
                    + f": a route back to {packet.src} through {iface}",
                    evidence,
                ),
            )
        elif lookup.route.dev == iface:
            # The lookup read says the way back is the way in: the kernel's own (with
            # the packet's mark and interface) found otherwise; which, is not known.
            found = (
                None,
                Finding(
                    "unknown",
                    objects,
                    f"{node} dropped it as reverse-path filtering ({values}), yet the route "
                    f"read back to {packet.src} goes through {iface}, the way it came: the "
                    "kernel's lookup (with the packet's mark and incoming interface) differed",
                    None,
                    evidence,
                ),
            )
        else:
            found = (
                None,
                Finding(
                    "sysctl.rp_filter",
                    objects,
                    f"reverse-path filtering in {node} ({values}): the source {packet.src} "
                    f"is routed back through {lookup.route.dev or '?'}, not {iface}",
                    # The effective value is the larger of `all` and the interface's: 2
                    # on the interface alone loosens it there and nowhere else.
                    net.command(node, f"sysctl -w net.ipv4.conf.{iface or 'all'}.rp_filter=2")
                    + f": loose rp_filter on {iface or 'every interface'}, or route "
                    f"{packet.src} back through {iface}",
                    evidence,
                ),
            )
    elif "xdp" in location and (link := net.link(node, drop.interface)) and link.xdp:
        mode = link.xdp.split()[0]
        off = {"generic": "xdpgeneric", "native": "xdpdrv"}.get(mode, "xdp")
        found = (
            None,
            Finding(
                "xdp.drop",
                (ref("xdp", node, link.name),),
                f"the XDP program on {node}/{link.name} ({link.xdp}) dropped it: the kernel "
                f"freed it in {location}, where a program's XDP_DROP (or XDP_ABORTED) ends",
                net.command(node, f"ip link set dev {link.name} {off} off")
                + ", or make the program pass it",
                [f"{node}: {link.name} xdp {link.xdp}"],
            ),
        )
    elif reason == "IP_LOCALNET":
        found = _localnet(net, drop)
    elif reason == "IP_LOCAL_SOURCE" and (state := net.state(node)) is not None:
        dup = duplicate(
            net,
            state,
            packet.src,
            f"{node} drops a packet that arrives from an address of its own (IP_LOCAL_SOURCE)",
        )
        found = (None, dup) if dup is not None else None
    elif reason in ("NEIGH_FAILED", "QUEUE_PURGE"):
        # Freed when address resolution gave up, or its queue was purged (the entry
        # destroyed): why it was never answered.
        found = stalled(net, series, drop)
    elif reason.startswith("TC_") or "tcf_" in location or "mirred" in location:
        found = _tc(net, drop, reason)
    elif "dev_forward_skb" in location or "veth" in location:
        found = _veth_mtu(net, drop)
    if found is None and reason in ("IP_INADDRERRORS", "IP_INNOROUTES", "NO_ROUTE"):
        found = _sent_here_by_default(net, series, drop)
    if found is None and reason in ROUTING_REASONS + ("IP_INHDR",):
        found = _routing(net, series, drop, arrived_on, reason, source)
    if found is None:
        return Verdict(
            "dropped",
            f"dropped in {where}",
            where=where,
            cause=f"unknown: the kernel dropped it with reason {reason}"
            + (f" in {location}" if location else "")
            + "; the saved state does not show why",
            fix=None,
            code="unknown",
        )
    better, finding = found
    return Verdict.of("dropped", f"dropped in {better or where}", better or where, finding)


def _node_of_skb(net: Network, drop: Hop, events: Sequence[Event]) -> str | None:
    """The node of the last event, before the drop, that saw the same skb in a namespace."""
    skbs = {events[i].skb_id for i in drop.events if 0 <= i < len(events)}
    first = min(drop.events, default=len(events))
    for e in reversed(events[:first]):
        state = net.states.get(e.namespace)
        if e.skb_id in skbs and state is not None:
            return state.node
    return None


def _only(rules: Iterable[LiveRule]) -> tuple[LiveRule | None, list[LiveRule]]:
    """The one rule that can have done it; else None and every candidate (no guessing)."""
    found = list(rules)
    return (found[0], []) if len(found) == 1 else (None, found)


def _location(drop: Hop, events: Sequence[Event]) -> str:
    for i in drop.events:
        if 0 <= i < len(events) and events[i].location:
            return (events[i].location or "").split("+")[0]
    return ""


def _arrived_on(net: Network, series: Series, drop: Hop) -> str | None:
    """The interface the packet came into the drop's node on, as routing sees it
    (a bridge port's bridge)."""
    return arrival(net, series, drop.node) or drop.interface or None


def arrival(net: Network, series: Series, node: str) -> str | None:
    for hop in series.hops:
        if hop.node == node and hop.action in ("receive", "bridge-up", "cross"):
            link = net.link(node, hop.interface)
            return link.master if link is not None and link.master else hop.interface
    return None


# ---- netfilter ----


def _open_chain(net: Network, node: str, events: Sequence[Event]) -> str | None:
    """The chain the packet entered (a netfilter link before it) and never left."""
    state = net.state(node)
    if state is None:
        return None
    seen: dict[str | None, int] = {}
    for e in events:
        if e.namespace == state.namespace and e.hook in (Hook.NF_BEFORE, Hook.NF_AFTER):
            seen[e.nf_hook] = seen.get(e.nf_hook, 0) + (1 if e.hook == Hook.NF_BEFORE else -1)
    open_chains = [chain for chain, n in seen.items() if n > 0]
    return open_chains[-1] if open_chains else None


def nf_ref(node: str, rule: LiveRule) -> str:
    """A rule as an object: by handle, or (iptables-legacy) by position, `rule N`."""
    at = f"rule {rule.handle}" if rule.legacy else f"handle {rule.handle}"
    return ref("nf", node, f"{rule.family} {rule.table} {rule.chain} {at}")


def _netfilter(
    net: Network, series: Series, drop: Hop, chain: str | None
) -> tuple[Finding, str | None]:
    """(the finding, the hook it happened at)."""
    node, packet = drop.node, drop.wire  # a tunnel's datagram is what the rules saw
    state = net.state(node)
    ruleset = state.rules() if state else None
    rule: LiveRule | None = None
    others: list[LiveRule] = []
    if ruleset is not None:
        # A reject rule frees the packet as a drop does (and sends an error or a RST).
        candidates = ruleset.rules_at(chain) if chain else []
        rule = next((r for r in candidates if r.verdict in ("drop", "reject")), None)
        if rule is None:  # a chain pathtrace has no link in: a bridge table, a raw chain
            rule, others = _only(r for r in ruleset.rules if r.verdict in ("drop", "reject"))
    hook = (ruleset.hook_of(rule) if ruleset and rule else None) or chain
    family = rule.family if rule else "ip"
    at = f"{family} {rule.table} {rule.chain} (hook {hook})" if rule else (chain or "a chain")
    cause = f"netfilter dropped it in {at} of {node}"
    evidence = []
    fix: str | None
    code, objects = "unknown", [ref("nf", node, f"{family} {chain or '?'}")]
    if rule is not None:
        cause += f": rule {rule.cited}"
        evidence.append(f"{node}: {rule.cited}")
        fix = net.command(node, rule.delete_command)
        code = "nf.reject" if rule.verdict == "reject" else "nf.drop"
        objects = [nf_ref(node, rule)]
    else:
        policy = ruleset.policy_at(chain) if ruleset and chain else None
        if policy == "drop":
            code = "nf.policy"
            cause += f": the chain's policy is drop and no rule accepts {packet.describe()}"
            evidence.append(f"{node}: {chain} policy drop")
            fix = net.advice(
                f"accept it in {node}'s {chain} chain: {net.run_in(node)}nft add rule ip "
                f"filter {chain} ip daddr {packet.dst} {packet.protocol} "
                + (f"dport {packet.dport} accept" if packet.protocol != "icmp" else "accept")
            )
        elif others:
            cause = (
                f"unknown: netfilter dropped it in {node}, in a chain pathtrace has no link in; "
                f"{len(others)} rules there drop and it cannot tell which"
            )
            evidence += [f"{node}: {r.cited}" for r in others]
            objects = [nf_ref(node, r) for r in others]
            fix = None
        else:
            cause = f"unknown: netfilter dropped it in {at} of {node}, and no rule there drops"
            fix = None
    if drop.outer is not None:
        cause += f" (the probe inside a {drop.outer.describe()} datagram)"
    elif packet.dst != series.hops[0].packet.dst:
        cause += f" (the packet was already translated to {packet.dst})"
    # A packet only bridged yet dropped by an ip rule: br_netfilter sent it there.
    port = net.link(node, drop.interface)
    bridged = any(h.node == node and h.action == "bridge-forward" for h in series.hops) or bool(
        port and port.master
    )
    if (
        bridged
        and family in ("ip", "inet")
        and state is not None
        and state.sysctls.get("net.bridge.bridge-nf-call-iptables") == "1"
    ):
        cause += (
            f"; the packet was only bridged, but {node} has "
            "net.bridge.bridge-nf-call-iptables=1, so bridged IPv4 traffic "
            + (f"passes the ip family's {hook} hook too" if hook else "passes the ip hooks too")
        )
        objects.append(ref("sysctl", node, "net.bridge.bridge-nf-call-iptables"))
    return Finding(code, tuple(objects), cause, fix, evidence), hook


# ---- layer 2 ----


def _sender_of(net: Network, series: Series, drop: Hop) -> Hop | None:
    """The hop that addressed the frame: the last send or route before ``drop`` out
    of a device that is not a bridge port (a port only passes the bridge's frames on)."""
    before = series.hops[: series.hops.index(drop)]
    for hop in reversed(before):
        link = net.link(hop.node, hop.interface)
        if hop.action in ("send", "route") and not (link and link.master):
            return hop
    return None


def _wrong_mac(net: Network, series: Series, drop: Hop) -> Placed | None:
    """A frame that reached a host which is not its destination (OTHERHOST): its
    sender addressed it to a MAC that is not the next hop's."""
    sent = _sender_of(net, series, drop)
    if sent is None:
        return None
    state = net.state(sent.node)
    if state is None:
        return None
    lookup = routing.route_get(state, sent.packet.dst)
    route = lookup.route
    hop_ip = (route.gateway if route and route.gateway else None) or sent.packet.dst
    entry = links.neighbour(state, hop_ip, sent.interface) or links.neighbour(
        state, hop_ip, sent.interface, after=True
    )
    owner = links.owner(net.all, hop_ip)
    if entry is None or owner is None or not entry.lladdr:
        return None
    if entry.lladdr.lower() == owner[1].mac.lower():
        return None
    out = state.link(sent.interface)
    # How the frame died, as the kernel said: a host's OTHERHOST, or a bridge's drop.
    if drop.drop_reason == "OTHERHOST":
        died = "which drops it as not its own (OTHERHOST)"
    else:
        died = f"and {drop.node}/{drop.interface} drops it ({drop.drop_reason or 'no reason'})"
    if out is not None and out.noarp:
        # No neighbour resolution on a NOARP link: the kernel fills in an address of
        # its own, and deleting the entry makes the same one again.
        return f"{sent.node}/{out.name}", Finding(
            "link.noarp",
            (ref("link", sent.node, out.name), ref("neigh", sent.node, hop_ip)),
            f"{sent.node}/{out.name} has NOARP set: the kernel resolves no neighbour on it "
            f"and sends the frame for {hop_ip} to {entry.lladdr}, not {owner[0].node}/"
            f"{owner[1].name}'s {owner[1].mac}, {died}",
            net.command(sent.node, f"ip link set dev {out.name} arp on"),
            [f"{sent.node}: {out.name} flags NOARP", f"{sent.node}: neighbour {entry.describe()}"],
        )
    bridge = sent.interface if state.is_bridge(sent.interface) else _crossed_bridge(net, series)
    place = f"{bridge[0]}/{bridge[1]}" if isinstance(bridge, tuple) else f"{sent.node}/{bridge}"
    cause = (
        f"{sent.node}'s neighbour entry for {hop_ip} says {entry.lladdr}, but {hop_ip} is "
        f"{owner[0].node}/{owner[1].name} with MAC {owner[1].mac}: the frame goes to a MAC "
        + (
            "no one has, the bridge floods it, and each receiver drops it as not its own "
            "(OTHERHOST)"
            if drop.drop_reason == "OTHERHOST"
            else f"that is not the next hop's, {died}"
        )
    )
    fix = net.command(sent.node, f"ip neigh del {hop_ip} dev {sent.interface}")
    evidence = [
        f"{sent.node}: neighbour {entry.describe()}",
        f"{owner[0].node}: {owner[1].name} has {hop_ip} and MAC {owner[1].mac}",
    ]
    return place, Finding(
        "neigh.wrong_mac", (ref("neigh", sent.node, hop_ip),), cause, fix, evidence
    )


def _flooded_past(net: Network, series: Series, drop: Hop) -> Placed | None:
    """A frame with the right MAC that a bridge on the way flooded to a host it was not
    for (OTHERHOST there): the bridge would not send it out of the port towards its
    owner (no FDB entry and that port does not take floods, or its state)."""
    crossed = _crossed_bridge(net, series)
    if not isinstance(crossed, tuple):  # or a bridge that sent it itself (routed onto it)
        sent = next(
            (
                (h.node, h.interface)
                for h in series.hops
                if h.action in ("send", "route", "end")
                and h.interface
                and (link := net.link(h.node, h.interface)) is not None
                and link.kind == "bridge"
            ),
            None,
        )
        if sent is None or sent[1] is None:
            return None
        crossed = (sent[0], sent[1])
    state = next((s for s in net.all if s.node == crossed[0]), None)
    bridge = state.link(crossed[1]) if state else None
    if state is None or bridge is None:
        return None
    found = _bridge_port_towards(net, state, bridge, drop.packet.dst)
    if found is None:
        return None
    how = (
        "sent the frame out of that port instead"
        if found.code == "bridge.fdb"
        else "flooded the frame to its other ports instead"
    )
    said = (
        f"{found.cause}; it {how}, and {drop.node}/{drop.interface} dropped it as not its "
        "own (OTHERHOST)"
    )
    return f"{state.node}/{bridge.name}", replace(found, cause=said)


def _crossed_bridge(net: Network, series: Series) -> tuple[str, str] | str:
    for hop in series.hops:
        if hop.action in ("bridge-forward", "bridge-up"):
            link = net.link(hop.node, hop.interface)
            if link is not None:
                return hop.node, link.master or hop.interface
    return "?"


def _localnet(net: Network, drop: Hop) -> Placed | None:
    """A packet for 127.0.0.0/8 that came in on an interface (a DNAT to 127.0.0.1,
    say): routed only where route_localnet is on for that interface or `all`."""
    state, iif = net.state(drop.node), drop.interface
    if state is None or iif is None:
        return None
    values = {k: state.sysctl("route_localnet", k) for k in ("all", iif)}
    if any(v is None for v in values.values()) or "1" in values.values():
        return None  # not read, or on: something else refused it
    translated = drop.packet.dst
    return None, Finding(
        "sysctl.route_localnet",
        tuple(ref("sysctl", drop.node, f"net.ipv4.conf.{k}.route_localnet") for k in values),
        f"{drop.node} will not route {translated} (a loopback address) for a packet that came in "
        f"on {iif}: net.ipv4.conf.{iif}.route_localnet and conf.all.route_localnet are 0",
        net.command(drop.node, f"sysctl -w net.ipv4.conf.{iif}.route_localnet=1")
        + " (or translate to an address of an interface, not 127.0.0.0/8)",
        [f"{drop.node}: net.ipv4.conf.{k}.route_localnet={v}" for k, v in values.items()],
    )


def _kind(net: Network, drop: Hop) -> str | None:
    link = net.link(drop.node, drop.interface)
    return link.kind if link else None


def _tunnel_no_target(net: Network, drop: Hop, events: Sequence[Event]) -> Placed | None:
    """A VXLAN device with no VTEP for the frame's destination MAC: no FDB entry for
    it, no default (all-zeros) entry, no remote or group of its own."""
    state = net.state(drop.node)
    link = net.link(drop.node, drop.interface)
    if state is None or link is None or link.kind != "vxlan" or link.detail("remote"):
        return None
    sent = [
        e
        for e in events
        if e.hook == Hook.DEV_XMIT
        and e.ifname == link.name
        and e.time_ns <= drop.time_ns
        and e.dmac
        and e.namespace == state.namespace
    ]
    if not sent:
        return None
    mac = sent[-1].dmac
    own = [line for line in state.fdb if f" dev {link.name} dst " in line]
    if any(line.startswith((f"{mac} ", "00:00:00:00:00:00 ")) for line in own):
        return None  # it had a VTEP: something else stopped it
    told = [n for n in state.neighbours if f" lladdr {mac} " in f"{n} " and link.name in n]
    # The VTEP that owns the MAC, as the other node's own device says.
    vtep = next(
        (
            (other_state.node, other.detail("local"))
            for other_state in net.all
            for other in other_state.links
            if other.kind == "vxlan" and other.mac == mac and other.detail("local")
        ),
        None,
    )
    dst = vtep[1] if vtep else "VTEP-ADDRESS"
    cause = (
        f"{link.name} ({link.describe_kind()}) has no FDB entry for {mac}"
        + (f", the MAC its neighbour entry gives ({told[0]})" if told else "")
        + ", and no default entry or remote: the kernel has no VTEP to send the frame to "
        f"({drop.drop_reason})" + (f"; {mac} is {vtep[0]}'s VTEP at {vtep[1]}" if vtep else "")
    )
    evidence = [f"{drop.node}: fdb of {link.name}: {'; '.join(own) or 'empty'}"]
    evidence += [f"{drop.node}: neighbour {n}" for n in told]
    fix = net.command(
        drop.node, f"bridge fdb append {mac} dev {link.name} dst {dst} self permanent"
    )
    objects = (ref("fdb", drop.node, mac), ref("link", drop.node, link.name))
    return None, Finding("tunnel.fdb", objects, cause, fix, evidence)


def dnat_to_a_closed_port(
    request: Series, sockets: list[str], arrived: Packet
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
    here = [
        s.split()[1]
        for s in sockets
        if s.split()[1].rsplit(":", 1)[0].strip("[]") in (arrived.dst, "0.0.0.0", "::", "*")
        and not s.endswith(f":{arrived.dport}")
    ]
    if not here:
        return None
    return (
        f"{dnat.rule} sends it to port {arrived.dport}, while the service there listens on "
        f"{', '.join(here)}",
        f"make the DNAT ({dnat.rule}) translate to a port that listens ({', '.join(here)}), "
        f"or start a listener on {arrived.dst}:{arrived.dport}",
        (ref("nf", at.node, dnat.rule_id),) if dnat.rule_id else (),
    )


def _tunnel_mtu(net: Network, drop: Hop) -> Placed | None:
    """A tunnel's datagram too big for its underlay device, which may not fragment it
    (the tunnel sets DF on the outer header): the overlay's MTU is the underlay's
    minus the encapsulation."""
    outer, state = drop.outer, net.state(drop.node)
    underlay = net.link(drop.node, drop.interface)
    if outer is None or state is None or underlay is None:
        return None
    tunnel = next(
        (
            link
            for link in state.links
            if link.kind == outer.kind and link.detail("vni") in (None, str(outer.vni))
        ),
        None,
    )
    # Outer IP header, UDP, VXLAN (or Geneve's fixed header), inner Ethernet.
    overhead = (40 if ":" in outer.src else 20) + 8 + 8 + 14
    size = drop.packet.length + overhead
    if tunnel is None or size <= underlay.mtu:
        return None
    fits = underlay.mtu - overhead
    cause = (
        f"{tunnel.name} ({tunnel.describe_kind()}) wrapped a {drop.packet.length}-byte packet "
        f"into a {size}-byte datagram ({overhead} bytes of encapsulation), more than "
        f"{drop.interface}'s MTU {underlay.mtu}, and the datagram may not be fragmented "
        f"(dropped in {drop.interface}'s fragmentation); {tunnel.name}'s MTU {tunnel.mtu} "
        f"lets through packets that cannot fit: the overlay can carry {fits} bytes"
    )
    fix = net.command(drop.node, f"ip link set {tunnel.name} mtu {fits}") + (
        f", and the same MTU ({fits}) on the interfaces of the pods that use the overlay"
    )
    evidence = [
        f"{drop.node}: {drop.interface} mtu {underlay.mtu}",
        f"{drop.node}: {tunnel.name} mtu {tunnel.mtu}",
        f"the datagram: {outer.describe()}, {size} bytes",
    ]
    objects = (ref("link", drop.node, tunnel.name), ref("link", drop.node, underlay.name))
    return None, Finding("tunnel.mtu", objects, cause, fix, evidence)


def _bridge_stop(net: Network, series: Series, drop: Hop) -> Placed | None:
    """A bridge that had nowhere to send the frame: the port switches say why."""
    state = net.state(drop.node)
    ingress = net.link(drop.node, drop.interface)
    # A frame that came in on a port, or that the bridge device itself sent.
    if state is None or ingress is None or (ingress.master is None and ingress.kind != "bridge"):
        return None
    bridge = ingress.name if ingress.kind == "bridge" else ingress.master
    if "STP_STATE" in (drop.drop_reason or ""):
        # The port that took the frame in does not forward: its state, or its
        # bridge being down (which disables every port), says why.
        blocked = links.bridge_blocks(state, ingress, ingress, None)
        if blocked is not None:
            evidence = (
                [f"{drop.node}: {ingress.name} {ingress.port.describe()}"] if (ingress.port) else []
            )
            return f"{drop.node}/{bridge}", blocked.finding(
                drop.node, net.command(drop.node, blocked.fix), evidence
            )
    owner = links.owner(net.all, drop.packet.dst)
    if owner is None:
        return None
    port = links.bridge_port_towards(net.all, owner[0], owner[1])
    if port is None or port[0] is not state:
        return None
    blocked = links.bridge_blocks(state, ingress, port[1], owner[1].mac)
    if blocked is None:
        return None
    evidence = [f"{drop.node}: {p.name} {p.port.describe()}" for p in (ingress, port[1]) if p.port]
    evidence += [f"{drop.node}: fdb {line}" for line in state.fdb if owner[1].mac in line]
    return f"{drop.node}/{bridge}", blocked.finding(
        drop.node, net.command(drop.node, blocked.fix), evidence
    )


# ---- routing ----


def _sent_here_by_default(net: Network, series: Series, drop: Hop) -> Placed | None:
    """A packet a router translated (DNAT) to an address it then had no route for but
    its default, so it went to a node that could only drop it: the fault is the
    router's missing route, not the last node's."""
    dst = drop.packet.dst
    before = [h for h in series.hops if h.node != drop.node and h.time_ns <= drop.time_ns]
    if not before or before[-1].action not in ("route", "send"):
        return None
    router = before[-1].node
    # A translation of the destination: a DNAT, or the un-SNAT of an answer.
    dnat = [
        h
        for h in series.hops
        if h.node == router and h.translation and h.translation.kind in ("DNAT", "un-SNAT")
    ]
    state = net.state(router)
    if not dnat or state is None:
        return None
    lookup = routing.route_get(state, dst)
    if lookup.route is None or lookup.route.dst != "default":
        return None
    down = [
        link
        for link in state.links
        if not link.up and any(ip_address(dst) in ip_interface(a).network for a in link.addresses)
    ]
    rule = dnat[-1].translation.rule if dnat[-1].translation else None
    kind = dnat[-1].translation.kind if dnat[-1].translation else "DNAT"
    cause = (
        f"{router} translated it to {dst} ({kind}{f' by {rule}' if rule else ''}) and has no route "
        f"to {dst} but its default ({lookup.route.describe()}), so it sent it to {drop.node}, "
        f"which has none either ({drop.drop_reason})"
    )
    objects: tuple[str, ...]
    fix: str | None
    if down:
        cause += f": {router}'s {down[0].name}, on {dst}'s network, is down"
        fix = net.command(router, f"ip link set {down[0].name} up")
        code, objects = links.down_code(down[0]), (ref("link", router, down[0].name),)
    elif (narrow := _narrow_towards(net, state, dst)) is not None:
        cause, fix = f"{cause}: {narrow.cause}", narrow.fix
        code, objects = narrow.code, narrow.objects
    elif (bare := _bare_link_towards(net, state, dst)) is not None:
        link, owner, address = bare
        cause += (
            f": {router}'s {link.name} reaches {dst} ({owner}) on its link but has no "
            f"address on {dst}'s network"
        )
        fix = (
            net.command(router, f"ip addr add {address} dev {link.name}")
            if address
            else net.advice(f"give {router}'s {link.name} an address on {dst}'s network")
        )
        code, objects = (
            "link.no_address",
            (ref("link", router, link.name), ref("route", router, dst)),
        )
        if address:
            cause += (
                f"; {owner.split('/')[0]} routes via {address.split('/')[0]}, which no traced "
                "namespace holds (the fix assumes it was this link's)"
            )
    else:
        cause += f": no link of {router} has an address on {dst}'s network"
        fix = net.advice(f"give {router} an address on {dst}'s network, or a route to {dst}")
        code, objects = "route.none", (ref("route", router, dst),)
    evidence = [f"{router}: route to {dst}: {lookup.describe()}"]
    evidence += [f"{router}: {link.name} down" for link in down]
    return f"{router}", Finding(code, objects, cause, fix, evidence)


def _narrow_towards(net: Network, state: NamespaceState, dst: str) -> Finding | None:
    """A link of ``state`` whose segment holds ``dst``'s owner and whose address there
    has a prefix too narrow to reach it."""
    owner = links.owner(net.all, dst)
    if owner is None:
        return None
    for link in state.links:
        if link.up and any(
            s is owner[0] and other is owner[1] for s, other in links.segment(net.all, state, link)
        ):
            return _prefix_finding(net, state, link, dst, f"{link.name} reaches {dst}")
    return None


def _bare_link_towards(
    net: Network, state: NamespaceState, dst: str
) -> tuple[Link, str, str | None] | None:
    """A link of ``state``, up and with no address of ``dst``'s family, whose layer-2
    segment holds ``dst``'s owner: (the link, the owner as node/link, the address the
    owner's routes go via that nobody holds, with the owner's prefix, if one does)."""
    owner = links.owner(net.all, dst)
    if owner is None:
        return None
    o_state, o_link = owner
    version = ip_address(dst).version
    for link in state.links:
        if not link.up or any(ip_interface(a).version == version for a in link.addresses):
            continue
        if not any(
            s is o_state and other is o_link for s, other in links.segment(net.all, state, link)
        ):
            continue
        held = next(a for a in o_link.addresses if a.split("/")[0] == dst)
        network = ip_interface(held).network
        gateways = {
            r.gateway
            for r in o_state.routes
            if r.gateway
            and ip_address(r.gateway) in network
            and links.owner(net.all, r.gateway) is None
        }
        address = f"{gateways.pop()}/{network.prefixlen}" if len(gateways) == 1 else None
        return link, f"{o_state.node}/{o_link.name}", address
    return None


def _routing(
    net: Network,
    series: Series,
    drop: Hop,
    iif: str | None,
    reason: str,
    source: str,
) -> Placed | None:
    node, packet = drop.node, drop.packet
    state = net.state(node)
    if state is None:
        return None
    # As the packet was where it stopped: a DNAT on the way makes a packet to this
    # node's own address one it must forward.
    forwarding = not state.owns(packet.dst) and node != source
    if forwarding and ":" in packet.dst and state.sysctl("net.ipv6.conf.all.forwarding") == "0":
        key = "net.ipv6.conf.all.forwarding"
        return None, Finding(
            "sysctl.forwarding",
            (ref("sysctl", node, key),),
            f"{node} does not forward IPv6: {key} is 0 ({reason})",
            net.command(node, f"sysctl -w {key}=1"),
            [f"{node}: {key}=0"],
        )
    if forwarding and ":" not in packet.dst and state.sysctl("net.ipv4.ip_forward") == "0":
        return None, Finding(
            "sysctl.forwarding",
            (ref("sysctl", node, "net.ipv4.ip_forward"),),
            f"{node} does not forward: net.ipv4.ip_forward is 0 ({reason})",
            net.command(node, "sysctl -w net.ipv4.ip_forward=1"),
            [f"{node}: net.ipv4.ip_forward=0"],
        )
    if forwarding and iif and state.sysctl("forwarding", iif) == "0":
        key = f"net.ipv4.conf.{iif}.forwarding"
        return None, Finding(
            "sysctl.forwarding",
            (ref("sysctl", node, key),),
            f"{node} does not forward what arrives on {iif}: {key}=0 ({reason})",
            net.command(node, f"sysctl -w {key}=1"),
            [f"{node}: {key}=0"],
        )
    lookup = routing.route_get(state, packet.dst, packet.src if iif else None, iif, drop.mark)
    if lookup.refused:
        said = lookup.describe()
        if lookup.kind == "none" and not drop.mark:
            gone = no_route(net, state, packet.dst)
            if gone.code != "route.none":  # the routes went with a link or an address
                return None, gone
            cause = f"{node} has no route to {packet.dst} ({reason})"
            return None, Finding(
                "route.none",
                (ref("route", node, packet.dst),),
                cause,
                _route_add(net, node, packet.dst),
                [f"{node}: {said}"],
            )
        way = f" from {packet.src}" + (f" (in on {iif})" if iif else "")
        found = refused_lookup(net, node, lookup, packet.dst, way)
        return None, marked(
            net, state, found, packet.dst, packet.src if iif else None, iif, drop.mark
        )
    return None


# ---- tc and MTU ----


_REDIRECT = re.compile(r"Redirect to device ([^\s)]+)")


def _tc(net: Network, drop: Hop, reason: str) -> Placed | None:
    state = net.state(drop.node)
    if state is None or not drop.interface:
        return None
    direction = "egress" if "EGRESS" in reason else "ingress"
    found = tc_filter(net, state, drop.interface, direction, every=False)
    return (None, found) if found is not None else None


def tc_filter(
    net: Network, state: NamespaceState, ifname: str, direction: str, every: bool
) -> Finding | None:
    """The tc filter on ``ifname`` that drops or redirects away what passes
    ``direction`` (the other direction's, when that one has none). ``every``: only a
    filter that takes every frame (protocol all, a u32 match of nothing or matchall)
    with a drop or a redirect, as one that stops untraced frames (ARP) must."""
    filters = [f for f in state.tc if f.startswith(f"{ifname} ")]
    mine = [f for f in filters if f.startswith(f"{ifname} {direction}:")]
    if every:
        mine = [
            f
            for f in mine
            if "protocol all" in f
            and ("match 00000000/00000000" in f or " matchall " in f)
            and (_REDIRECT.search(f) or " drop" in f)
        ]
        if not mine:
            return None
    mine = mine or filters
    if not mine:
        return None
    direction = mine[0].split()[1].rstrip(":")
    on = f"{state.node}/{ifname}" if every else ifname
    it = "every frame (protocol all, matching all, ARP too)" if every else "it"
    cause = f"a tc {direction} filter on {on} drops {it}"
    m = _REDIRECT.search(mine[0])
    if m:
        target = state.link(m.group(1))
        status = "down" if target is not None and not target.up else "not able to send"
        cause = (
            f"a tc {direction} filter on {on} redirects {it} (mirred: redirect dev "
            f"{m.group(1)}) to {m.group(1)}, which is {status}: the redirect drops it"
        )
    return Finding(
        "tc.redirect" if m else "tc.drop",
        (ref("tc", state.node, f"{ifname} {direction}"),),
        cause,
        net.command(state.node, f"tc filter del dev {ifname} {direction}"),
        [f"{state.node}: tc {f}" for f in mine],
    )


def _veth_mtu(net: Network, drop: Hop) -> Placed | None:
    state = net.state(drop.node)
    link = net.link(drop.node, drop.interface)
    if state is None or link is None:
        return None
    big = links.veth_mtu(net.all, state, link, drop.packet.length)
    if big is None:
        return None
    receiver_node, receiver = big.receiver.split("/", 1)
    onward = ", ".join(big.onward) or "none"
    if big.receiver_is_odd:
        # Everything past the receiver takes the sender's size: the receiver is the
        # odd one out (lowering the sender instead would shrink every packet it sends).
        fix = net.command(receiver_node, f"ip link set {receiver} mtu {big.mtu}")
        why = (
            f"; the links {receiver_node} passes packets on to take {big.mtu} ({onward})"
            if big.onward
            else f"; {receiver_node} has no other link to pass it on to"
        )
    else:
        fix = net.command(drop.node, f"ip link set {big.sender} mtu {big.peer_mtu}")
        why = f"; past {big.receiver}, not every link takes {big.mtu} ({onward})"
    return None, Finding(
        "link.mtu",
        (ref("link", drop.node, big.sender), ref("link", receiver_node, receiver)),
        f"{drop.node} sent a {drop.packet.length}-byte packet on {big.sender} (MTU "
        f"{big.mtu}), but its peer {big.receiver} takes at most {big.peer_mtu} bytes: the "
        f"veth drops what the peer's MTU refuses{why}",
        fix,
        [
            f"{drop.node}/{big.sender} mtu {big.mtu}",
            f"{big.receiver} mtu {big.peer_mtu}",
            f"{receiver_node} passes on through: {onward}",
        ],
    )


# ---- ICMP errors a node sent back ----


def refusal(
    net: Network,
    sender: str,
    code: tuple[int, int],
    packet: Packet,
    iif: str | None,
    request: Series,
) -> Finding | None:
    state = net.state(sender)
    if state is None:
        return None
    if code in ((3, 0), (3, 1), (3, 9), (3, 10), (3, 13)):
        lookup = routing.route_get(state, packet.dst, packet.src if iif else None, iif)
        if lookup.kind in routing.REFUSING:
            return refused_lookup(net, sender, lookup, packet.dst)
        if lookup.kind == "none" and code[1] in (0, 1):
            return no_route(net, state, packet.dst)
        if iif and state.sysctl("forwarding", iif) == "0":
            key = f"net.ipv4.conf.{iif}.forwarding"
            return Finding(
                "sysctl.forwarding",
                (ref("sysctl", sender, key),),
                f"{sender} does not forward what arrives on {iif}: {key}=0",
                net.command(sender, f"sysctl -w {key}=1"),
                [f"{sender}: {key}=0"],
            )
    if code[0] == 3 and code[1] in (3, 9, 10, 13, 0, 1):
        rule, _ = _only(r for r in state.rules().rules if "reject" in r.text.split())
        if rule is not None:
            return Finding(
                "nf.reject",
                (nf_ref(sender, rule),),
                f"a reject rule in {sender}: {rule.cited}",
                net.command(sender, rule.delete_command),
                [f"{sender}: {rule.cited}"],
            )
    if code == (3, 3) and (
        dup := duplicate(
            net, state, packet.dst, f"{sender} took the packet for {packet.dst} as its own"
        )
    ):
        return dup
    if code == (3, 3):
        sockets = [s for s in state.listeners if s.startswith(f"{packet.protocol} ")]
        cause = f"nothing listens on {packet.protocol} port {packet.dport} in {sender}"
        fix = (
            f"start a listener on {packet.protocol} port {packet.dport} in {sender}, or "
            "check the port"
        )
        said = "socket.none"
        objects: tuple[str, ...] = (ref("socket", sender, f"{packet.protocol} {packet.dport}"),)
        other = dnat_to_a_closed_port(request, sockets, packet)
        if other is not None:
            cause, fix = f"{cause}; {other[0]}", other[1]
            said, objects = "nat.port", (*other[2], *objects)
        evidence = [f"{sender} has open: {', '.join(sockets) or 'nothing'}"]
        return Finding(said, objects, cause, fix, evidence)
    if code == (3, 4):
        lookup = routing.route_get(state, packet.dst, packet.src if iif else None, iif)
        link = state.link(lookup.route.dev) if lookup.route and lookup.route.dev else None
        if link is None:
            return None
        v6 = ":" in packet.dst
        return Finding(
            "link.mtu",
            (ref("link", sender, link.name),),
            f"{sender} must send the {packet.length}-byte packet out of {link.name}, whose "
            f"MTU is {link.mtu}, and "
            + ("IPv6 routers never fragment" if v6 else "DF forbids fragmenting it"),
            net.advice(
                f"send smaller packets (at most {link.mtu} bytes)"
                + ("" if v6 else ", clear DF")
                + ", or raise the MTU: "
                f"{net.run_in(sender)}ip link set {link.name} mtu {packet.length}"
            ),
            [f"{sender}: {lookup.describe()}", f"{sender}/{link.name} mtu {link.mtu}"],
        )
    if code == (11, 0):
        for hop in request.hops:
            s = net.state(hop.node)
            rule = next((r for r in s.rules().rules if "ttl set" in r.text), None) if s else None
            if rule is not None and s is not None:
                return Finding(
                    "nf.ttl",
                    (nf_ref(s.node, rule),),
                    f"the TTL reached 0 at {sender}: a rule in {s.node} rewrites it: {rule.cited}",
                    net.command(s.node, rule.delete_command),
                    [f"{s.node}: {rule.cited}"],
                )
        return Finding(
            "path.ttl",
            (),
            f"the TTL reached 0 at {sender}",
            "raise the TTL (the path is longer than it allows)",
            [],
        )
    return None


# ---- nothing more was seen ----


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
    if last.action not in ("route", "send"):
        # Held for ARP, then freed: the packet's last way out of the same node.
        sent = [h for h in series.hops if h.node == node and h.action in ("route", "send")]
        if sent:
            last = sent[-1]
        elif last.action != "end":  # an "end" with a device: freed on its way out
            return None
    # The lookup as the node made it: for the packet as it came in, from where it came,
    # to where it was going once PREROUTING was done (a DNAT changes that).
    first = next((h for h in series.hops if h.node == node), last)
    forwarded = node != series.hops[0].node
    lookup = routing.route_get(
        state,
        last.packet.dst,
        first.packet.src if forwarded else None,
        arrival(net, series, node) if forwarded else None,
    )
    if lookup.route is None:
        return None
    hop_ip = lookup.route.gateway or last.packet.dst
    if link is not None and link.kind == "bridge":
        # Sent by the bridge device itself: its port towards the next hop must pass it.
        blocked = _bridge_port_towards(net, state, link, hop_ip)
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
    why = _no_arp_answer(net, state, link, hop_ip) if link is not None else None
    if why is not None:
        cause += f": {why.cause}"
        fix = why.fix if why.fix else fix
        evidence += why.evidence
        # The owner's fault is the cause; the unanswered entry is how it showed.
        code, objects = why.code, [*why.objects, *objects]
    elif links.owner(net.all, hop_ip) is None:
        cause += f"; no traced namespace holds {hop_ip}"
        bare = _bare_station(net, state, link, hop_ip) if link is not None else None
        if bare is None and lookup.route.gateway == hop_ip:
            route = lookup.route
            gateway = net.gateway_for(node, ip_address(hop_ip).version)
            cause += f", the gateway of {node}'s route {route.describe()}"
            objects.append(ref("route", node, route.dst))
            if gateway is not None and gateway != hop_ip:
                cause += f"; the traced namespace that forwards on that network is at {gateway}"
                fix = net.command(node, f"ip route replace {route.dst} via {gateway}")
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
            fix = net.command(
                b_state.node, f"ip addr add {hop_ip}/{network.prefixlen} dev {b_link.name}"
            )
    return f"{node}/{last.interface}", Finding(code, tuple(objects), cause, fix, evidence)


def _bare_station(
    net: Network, state: NamespaceState, link: Link, address: str
) -> tuple[NamespaceState, Link, IPv4Network | IPv6Network] | None:
    """The one station on ``link``'s segment with no address in the network ``link``
    reaches ``address`` by (where an address nobody holds any more was, likely)."""
    network = next(
        (
            ip_interface(a).network
            for a in link.addresses
            if ip_address(address) in ip_interface(a).network
        ),
        None,
    )
    if network is None:
        return None
    bare = [
        (s, other)
        for s, other in links.segment(net.all, state, link)
        if other.up
        and not any(
            ip_interface(a).version == network.version and ip_interface(a).network == network
            for a in other.addresses
        )
    ]
    if len(bare) != 1:
        return None
    return bare[0][0], bare[0][1], network


def _bridge_port_towards(
    net: Network, state: NamespaceState, bridge: Link, address: str
) -> Finding | None:
    """Why ``bridge`` (a device of ``state``) would not pass what it sends to the
    holder of ``address`` out of the port towards it (None for a broadcast's)."""
    owner = links.owner(net.all, address)
    if owner is None:
        return None
    port = links.bridge_port_towards(net.all, owner[0], owner[1])
    if port is None or port[0] is not state or port[1].master != bridge.name:
        return None
    o_state, o_link = owner
    if not port[1].up:
        return Finding(
            "link.down",
            (ref("link", state.node, port[1].name),),
            f"{bridge.name}'s port {port[1].name}, towards {address} ({o_state.node}/"
            f"{o_link.name}), is down",
            net.command(state.node, f"ip link set {port[1].name} up"),
            [f"{state.node}: {port[1].name} down"],
        )
    if not port[1].carrier and not o_link.up:
        return Finding(
            "link.down",
            (ref("link", o_state.node, o_link.name), ref("link", state.node, port[1].name)),
            f"{address} is on {o_state.node}/{o_link.name}, which is down (so {bridge.name}'s "
            f"port {port[1].name} has no carrier)",
            net.command(o_state.node, f"ip link set {o_link.name} up"),
            [f"{o_state.node}: {o_link.name} down", f"{state.node}: {port[1].name} no carrier"],
        )
    entry = links.neighbour(state, address, bridge.name, after=True)
    mac = None if links.unresolved(entry) or entry is None else entry.lladdr
    blocked = links.bridge_blocks(state, bridge, port[1], mac)
    if blocked is None:
        return None
    evidence = [f"{state.node}: {port[1].name} {port[1].port.describe()}"] if port[1].port else []
    return blocked.finding(state.node, net.command(state.node, blocked.fix), evidence)


def _no_arp_answer(net: Network, state: NamespaceState, link: Link, address: str) -> Finding | None:
    """Why the owner of ``address`` did not answer ARP: its link, its sysctls, or a
    bridge between the two that does not pass the request."""
    owner = links.owner(net.all, address)
    if owner is None:
        return None
    o_state, o_link = owner
    if ":" not in address:
        # The request's sender address is one the owner holds too: the kernel takes
        # such an ARP request for a conflict and answers nothing.
        network = next(
            (
                ip_interface(a).network
                for a in o_link.addresses
                if ":" not in a and ip_address(address) in ip_interface(a).network
            ),
            None,
        )
        for a in link.addresses:
            ip = a.split("/")[0]
            if network is not None and ip_address(ip) in network and o_state.owns(ip):
                dup = duplicate(
                    net,
                    o_state,
                    ip,
                    f"{state.node}'s ARP request comes from {ip}, which {o_state.node} holds "
                    "too, so it answers nothing",
                )
                if dup is not None:
                    return dup
    if not o_link.up:
        return Finding(
            links.down_code(o_link),
            (ref("link", o_state.node, o_link.name),),
            f"{address} is on {o_state.node}/{o_link.name}, which is down"
            + _port_words(net, o_state, o_link),
            net.command(o_state.node, f"ip link set {o_link.name} up"),
            [f"{o_state.node}: {o_link.name} down"],
        )
    if o_link.noarp and o_link.kind != "loopback":
        return Finding(
            "link.noarp",
            (ref("link", o_state.node, o_link.name),),
            f"{address} is on {o_state.node}/{o_link.name}, which has NOARP set: it answers "
            "no ARP request (nor neighbour solicitation)",
            net.command(o_state.node, f"ip link set dev {o_link.name} arp on"),
            [f"{o_state.node}: {o_link.name} flags NOARP"],
        )
    if ":" in address:
        return _no_neighbour_advertisement(net, o_state, address)
    # The kernel uses the larger of the two; 8 answers no ARP request at all.
    keys = ("net.ipv4.conf.all.arp_ignore", f"net.ipv4.conf.{o_link.name}.arp_ignore")
    key, value = max(((k, o_state.sysctls.get(k, "0")) for k in keys), key=lambda kv: int(kv[1]))
    if value == "8":
        return Finding(
            "sysctl.arp_ignore",
            (ref("sysctl", o_state.node, key),),
            f"{o_state.node} does not answer ARP for {address}: {key}={value}",
            net.command(o_state.node, f"sysctl -w {key}=0"),
            [f"{o_state.node}: {key}={value}"],
        )
    if o_link.xdp:
        # ARP carries no tag, so no event shows where the requests went; the program
        # sees every frame on that link before the stack does.
        return Finding(
            "xdp.attached",
            (ref("xdp", o_state.node, o_link.name),),
            f"{address} is on {o_state.node}/{o_link.name}, which has an XDP program attached "
            f"({o_link.xdp}): it sees every frame before ARP does, and may be dropping the "
            "requests (ARP is not traced: unproven)",
            None,
            [f"{o_state.node}: {o_link.name} xdp {o_link.xdp}"],
        )
    mine = links.bridge_port_towards(net.all, state, link)
    theirs = links.bridge_port_towards(net.all, o_state, o_link)
    # tc filters that take every frame, on the links the request and the answer cross:
    # the asker's, the bridge's ports towards both, the owner's.
    way = [(state, link), *([mine] if mine else []), *([theirs] if theirs else []), owner]
    for w_state, w_link in way:
        for direction in ("egress", "ingress"):  # the request out, the answer back
            tc = tc_filter(net, w_state, w_link.name, direction, every=True)
            if tc is not None:
                return tc
    if link.kind == "bridge":  # the bridge device itself asks, out of its ports
        blocked_here = _bridge_port_towards(net, state, link, address)
        if blocked_here is not None:
            return blocked_here
    if mine and mine[0] is o_state and mine[1].master == o_link.name:
        # The address is the bridge's own: the port the request comes in by must pass it.
        blocked = links.bridge_blocks(o_state, mine[1], mine[1], None)
        if blocked is not None:
            evidence = (
                [f"{o_state.node}: {mine[1].name} {mine[1].port.describe()}"]
                if (mine[1].port)
                else []
            )
            return blocked.finding(o_state.node, net.command(o_state.node, blocked.fix), evidence)
        # The answer goes back, unicast to the asker's MAC, out of that same port.
        blocked = links.bridge_blocks(o_state, o_link, mine[1], link.mac)
        if blocked is not None:
            return blocked.finding(
                o_state.node,
                net.command(o_state.node, blocked.fix),
                _port_evidence(o_state, (mine[1],), link.mac),
            )
    if mine and theirs and mine[0] is theirs[0] and mine[1].master == theirs[1].master:
        b_state = mine[0]
        if not theirs[1].carrier or not theirs[1].up:
            return Finding(
                "link.carrier",
                (ref("link", b_state.node, theirs[1].name),),
                f"{b_state.node}'s port {theirs[1].name} has no carrier",
                None,
                [f"{b_state.node}: {theirs[1].name} no carrier"],
            )
        blocked = links.bridge_blocks(b_state, mine[1], theirs[1], None)
        if blocked is not None:
            evidence = [
                f"{b_state.node}: {p.name} {p.port.describe()}"
                for p in (mine[1], theirs[1])
                if p.port
            ]
            return blocked.finding(b_state.node, net.command(b_state.node, blocked.fix), evidence)
        # The answer, unicast to the asker's MAC, from the owner's port to the asker's.
        blocked = links.bridge_blocks(b_state, theirs[1], mine[1], link.mac)
        if blocked is not None:
            return blocked.finding(
                b_state.node,
                net.command(b_state.node, blocked.fix),
                _port_evidence(b_state, (theirs[1], mine[1]), link.mac),
            )
    return None


def _port_evidence(state: NamespaceState, ports: Iterable[Link], mac: str) -> list[str]:
    """The ports' switches and the FDB's word on ``mac`` (or that it has none)."""
    found = [f"{state.node}: {p.name} {p.port.describe()}" for p in ports if p.port]
    fdb = [line for line in state.fdb if line.lower().startswith(mac.lower())]
    found += [f"{state.node}: fdb {line}" for line in fdb] or [
        f"{state.node}: no fdb entry for {mac}"
    ]
    return found


def _no_neighbour_advertisement(
    net: Network, o_state: NamespaceState, address: str
) -> Finding | None:
    """Why the owner of an IPv6 address did not answer a neighbour solicitation:
    IPv6 off there, or a rule of its own that drops solicitations."""
    key = "net.ipv6.conf.all.disable_ipv6"
    if o_state.sysctls.get(key) == "1":
        return Finding(
            "sysctl.disable_ipv6",
            (ref("sysctl", o_state.node, key),),
            f"{o_state.node} has IPv6 off: {key}=1",
            net.command(o_state.node, f"sysctl -w {key}=0"),
            [f"{o_state.node}: {key}=1"],
        )
    rules = o_state.rules()
    candidates = [
        r
        for r in rules.rules_at("INPUT", "ip6")
        if r.verdict == "drop" and ("nd-neighbor-solicit" in r.text or "icmpv6" in r.text)
    ]
    rule, _ = _only(candidates)
    if rule is not None:
        return Finding(
            "nf.drop",
            (nf_ref(o_state.node, rule),),
            f"{o_state.node} drops the neighbour solicitations for {address}: {rule.cited}",
            net.command(o_state.node, rule.delete_command),
            [f"{o_state.node}: {rule.cited}"],
        )
    return None


def duplicate(net: Network, here: NamespaceState, address: str, what: str) -> Finding | None:
    """``here`` holds ``address`` and so does another traced namespace: ``what`` says
    what that did to the packet. The fix removes ``here``'s copy first (the one that
    acted on this packet), the other's after ", or"."""
    mine = next(
        (link for link in here.links if any(a.split("/")[0] == address for a in link.addresses)),
        None,
    )
    others = [
        (state, link)
        for state in net.all
        if state is not here
        for link in state.links
        if any(a.split("/")[0] == address for a in link.addresses)
    ]
    if mine is None or not others:
        return None
    o_state, o_link = others[0]
    held = next(a for a in mine.addresses if a.split("/")[0] == address)
    o_held = next(a for a in o_link.addresses if a.split("/")[0] == address)
    return Finding(
        "address.duplicate",
        (ref("address", here.node, address), ref("address", o_state.node, address)),
        f"{address} is held by both {here.node}/{mine.name} and {o_state.node}/{o_link.name}: "
        f"{what}",
        net.run_in(here.node)
        + f"ip addr del {held} dev {mine.name}, or if {here.node}'s is the right one: "
        + net.command(o_state.node, f"ip addr del {o_held} dev {o_link.name}"),
        [
            f"{here.node}: {mine.name} has {held}",
            f"{o_state.node}: {o_link.name} has {o_held}",
        ],
    )


def narrow_address(
    net: Network, state: NamespaceState, link: Link
) -> tuple[str, NamespaceState, Link, IPv4Network | IPv6Network] | None:
    """An address of ``link`` whose prefix is narrower than the network a station on
    its segment uses for it (192.168.100.2/32 where the bridge has 192.168.100.1/24):
    no connected route, so no route via a gateway there. (held, the station, its
    link, the station's network)."""
    for held in link.addresses:
        mine = ip_interface(held)
        for s, other in links.segment(net.all, state, link):
            for theirs in other.addresses:
                network = ip_interface(theirs).network
                if (
                    network.version == mine.version
                    and network.prefixlen < mine.network.prefixlen
                    and mine.ip in network
                ):
                    return held, s, other, network
    return None


def _prefix_finding(
    net: Network, state: NamespaceState, link: Link, dst: str, what: str
) -> Finding | None:
    found = narrow_address(net, state, link)
    if found is None:
        return None
    held, s, other, network = found
    ip = held.split("/")[0]
    node = state.node
    return Finding(
        "address.prefix",
        (ref("address", node, ip), ref("link", node, link.name), ref("route", node, dst)),
        f"{what}: {link.name} has {held}, while {s.node}/{other.name} on its link uses "
        f"{network}: with /{ip_interface(held).network.prefixlen} there is no route to that "
        "network, nor via a gateway on it",
        f"{net.run_in(node)}ip addr del {held} dev {link.name} && "
        + net.command(node, f"ip addr add {ip}/{network.prefixlen} dev {link.name}")
        + (
            ""
            if ip_address(dst) in network
            else ", then the routes via a gateway on that network (the kernel removed them "
            "with the connected route)"
        ),
        [
            f"{node}: {link.name} has {held}",
            f"{s.node}: {other.name} has {', '.join(other.addresses)}",
        ],
    )


def refused_lookup(
    net: Network, node: str, lookup: routing.Lookup, dst: str, way: str = ""
) -> Finding:
    """A lookup for ``dst`` (``way``: from where it came) that ends in a blackhole,
    unreachable or prohibit route or rule."""
    said = lookup.describe()
    return Finding(
        f"route.{lookup.kind}",
        routing.refs(node, lookup, dst),
        f"{node}'s route lookup for {dst}{way} ends in {lookup.kind}: {said}",
        refused_fix(net, node, lookup, dst),
        [f"{node}: {said}"],
    )


_MARK_SET = re.compile(r"\bmeta mark set (0x[0-9a-f]+|\d+)\b")


def marked(
    net: Network,
    state: NamespaceState,
    found: Finding,
    dst: str,
    src: str | None,
    iif: str | None,
    mark: int,
) -> Finding:
    """``found`` (a lookup refused), told that the packet carried ``mark`` (read from
    the skb), which a policy rule routes by, and which rule set it: where the same
    lookup without the mark would not refuse, the mark is why."""
    if not mark:
        return found
    plain = routing.route_get(state, dst, src, iif, 0)
    if plain.refused:
        return found  # refused with or without it: the mark is not why
    setters = [
        r
        for r in state.rules().rules
        if (m := _MARK_SET.search(r.text)) is not None and int(m.group(1), 0) == mark
    ]
    setter, _ = _only(iter(setters))
    said = f"; the packet carries mark {mark:#x}"
    said += (
        f", which {setter.cited} sets (the one rule read here that sets that value)"
        if setter is not None
        else " (no rule read here sets that value)"
    )
    said += f"; without it the lookup would find {plain.describe()}"
    objects = found.objects + ((nf_ref(state.node, setter),) if setter is not None else ())
    evidence = [*found.evidence, f"{state.node}: skb mark {mark:#x}"]
    if setter is not None:
        evidence.append(f"{state.node}: {setter.cited}")
    return replace(found, cause=found.cause + said, objects=objects, evidence=evidence)


def refused_fix(
    net: Network, node: str, lookup: routing.Lookup, dst: str | None = None
) -> str | None:
    """What mends a lookup that ends in a refusing route or rule: a refusing default
    route replaced by one via the traced namespace that forwards on the node's own
    network (deleting it would leave no route at all); a refusing route to ``dst``
    whose deletion would leave the lookup refused (tried on the saved state)
    replaced by one via the namespace that takes packets on to ``dst``; else the
    refusal deleted."""
    route = lookup.route
    six = "-6 " if route is not None and route.family == 6 else ""
    if route is not None and route.dst == "default" and route.table == 254:
        gateway = net.gateway_for(node, route.family)
        if gateway is not None:
            return net.command(node, f"ip {six}route replace default via {gateway}")
    state = net.state(node)
    if route is not None and route.table == 254 and dst is not None and state is not None:
        without = replace(state, routes=[r for r in state.routes if r is not route])
        hop = net.next_hop(node, dst)
        if routing.route_get(without, dst).refused and hop is not None:
            return net.command(node, f"ip {six}route replace {route.dst} via {hop[0]}")
    delete = routing.delete_command(lookup)
    return net.command(node, delete) if delete else None


def no_route(net: Network, state: NamespaceState, dst: str) -> Finding:
    """``state`` has no route to ``dst``: where an up link has no address of the family,
    the routes through it went with the address (its connected network, the routes via
    a gateway on it)."""
    node, version = state.node, ip_address(dst).version
    mine = [r for r in state.routes if r.family == version and r.table == 254]
    has_default = any(r.dst == "default" for r in mine)
    routes = ", ".join(r.describe() for r in mine) or "none"

    def has_family(link: Link) -> bool:
        return any(ip_interface(a).version == version for a in link.addresses)

    # Links that could carry routes (not loopback, not a port of a bridge or a bond).
    own = [link for link in state.links if link.kind != "loopback" and link.master is None]
    down = [link for link in own if not link.up and has_family(link)]
    bare = [link for link in own if link.up and not has_family(link)]
    evidence = [f"{node}'s routes: {routes}"]
    if down and not has_default:
        # A link that is down takes its connected network and the routes through it.
        names = ", ".join(link.name for link in down)
        return Finding(
            links.down_code(down[0]),
            (*(ref("link", node, link.name) for link in down), ref("route", node, dst)),
            f"{node} has no route to {dst}: {names} is down, so the routes through it are gone",
            net.command(node, f"ip link set {down[0].name} up"),
            evidence + [f"{node}: {link.name} down ({', '.join(link.addresses)})" for link in down],
        )
    if bare and not has_default:
        names = ", ".join(link.name for link in bare)
        return Finding(
            "link.no_address",
            (*(ref("link", node, link.name) for link in bare), ref("route", node, dst)),
            f"{node} has no route to {dst}: {names} has no IPv{version} address, so no route "
            "goes through it (its connected network and the routes via a gateway on it "
            "went with the address)",
            net.advice(f"give {names} its IPv{version} address back, then the routes through it"),
            evidence + [f"{node}: {link.name} has no IPv{version} address" for link in bare],
        )
    for link in own:
        if link.up and (
            narrow := _prefix_finding(net, state, link, dst, f"{node} has no route to {dst}")
        ):
            return replace(narrow, evidence=[*evidence, *narrow.evidence])
    gateway = net.gateway_for(node, version) or "GATEWAY"
    return Finding(
        "route.none",
        (ref("route", node, dst),),
        f"{node} has no route to {dst}" + ("" if has_default else " (it has no default route)"),
        net.command(node, f"ip {'-6 ' if version == 6 else ''}route add default via {gateway}"),
        evidence,
    )


def _route_add(net: Network, node: str, dst: str) -> str:
    """`ip route add` for a route ``node`` lacks to ``dst``, via the one traced
    namespace that can take it on (GATEWAY where none, or several, can)."""
    route = net.route_to(node, dst)
    six = "-6 " if ":" in dst else ""
    return net.command(node, f"ip {six}route add {route or f'{dst} via GATEWAY'}")


def _port_words(net: Network, state: NamespaceState, link: Link) -> str:
    port = links.bridge_port_towards(net.all, state, link)
    if port is None:
        return ""
    return f" (so {port[0].node}'s bridge port {port[1].name} has no carrier)"
