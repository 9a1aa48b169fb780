"""From one namespace to the next in the predicted path: out of a link, across the
segment (a veth, or a bridge between), to the station that holds the next hop.

What is checked is what the kernel checks on the way: the link's admin state,
carrier, NOARP and MTU; address resolution (who holds the next hop on the
segment, a static entry's MAC, the answerer's NOARP and arp_ignore); the
bridge's own state, its ports', isolation, flooding and FDB (``links``), its
ports' MTU, and the bridge family's forward hook (and the IP family's, with
br_netfilter).
"""

from __future__ import annotations

from dataclasses import replace
from ipaddress import ip_interface
from typing import TYPE_CHECKING

from pathtrace.analyze import links
from pathtrace.analyze.chains import Chains, Flow, Stop
from pathtrace.model.cause import ref
from pathtrace.model.state import Link, NamespaceState

if TYPE_CHECKING:
    from pathtrace.analyze.network import Network

FOLLOWED = ("veth", "bridge", "dummy")


def cross(
    walk: Chains, state: NamespaceState, out: Link, gateway: str, flow: Flow
) -> tuple[str, str]:
    """From ``out`` to the station that holds ``gateway``: (its node, its link)."""
    node, net = state.node, walk.net
    here = ref("link", node, out.name)
    programs(walk, state, out, "egress", flow)
    if out.kind not in FOLLOWED:
        raise Stop("unknown", node, None, (), f"{out.name} is a {out.kind} device: not followed")
    if not out.up:
        raise Stop("stopped", node, links.down_code(out), (here,), f"{out.name} is down")
    far = links.peer(net.all, state, out)
    if not out.carrier:
        objects = (here, ref("link", far[0].node, far[1].name)) if far else (here,)
        raise Stop(
            "stopped",
            node,
            "link.carrier",
            objects,
            f"{out.name} has no carrier ({net.peer_words(node, out)} is down)",
        )
    fit(walk, node, out, flow)
    if far is not None and flow.length > far[1].mtu:
        raise Stop(
            "stopped",
            far[0].node,
            "link.mtu",
            (here, ref("link", far[0].node, far[1].name)),
            f"{flow.length} bytes is more than the peer {far[1].name}'s MTU {far[1].mtu} "
            f"({out.name}'s is {out.mtu})",
        )
    if out.noarp:
        raise Stop("stopped", node, "link.noarp", (here,), f"{out.name} has NOARP set")
    segment = links.segment(net.all, state, out)
    stations = [p for p in segment if any(a.split("/")[0] == gateway for a in p[1].addresses)]
    if not stations:
        if far is None and not segment:
            raise Stop("left", node, None, (), f"{out.name} leads out of the traced namespaces")
        # The route that sent it to that gateway, and the policy rule that chose it.
        chose = tuple(r for r in (walk.gateway_route, walk.gateway_rule) if r)
        raise Stop(
            "stopped",
            node,
            "neigh.failed",
            (ref("neigh", node, gateway), *chose),
            f"nobody on {out.name}'s segment holds {gateway}: address resolution fails",
        )
    if len(stations) > 1:
        where = ", ".join(f"{s.node}/{lk.name}" for s, lk in stations)
        raise Stop(
            "stopped",
            node,
            "address.duplicate",
            tuple(ref("address", s.node, gateway) for s, _ in stations),
            f"{gateway} is held by {where}: which one answers is a race",
        )
    there, link = stations[0]
    _resolve(walk, state, out, gateway, there, link, flow)
    if flow.length > link.mtu:
        raise Stop(
            "stopped",
            there.node,
            "link.mtu",
            (ref("link", there.node, link.name),),
            f"{flow.length} bytes is more than {link.name}'s MTU {link.mtu} in {there.node}",
        )
    programs(walk, there, link, "ingress", flow)
    walk.step(there.node, link.name, "arrive", f"{there.node} receives it on {link.name}")
    return there.node, link.name


def fit(walk: Chains, node: str, out: Link, flow: Flow) -> None:
    """The packet against the MTU of the device it leaves by: refused with DF (IPv6
    never fragments on the way), else fragmented to fit."""
    if flow.length <= out.mtu:
        return
    if flow.dont_fragment or ":" in flow.dst:
        # The node's own packet is refused by its own stack (EMSGSIZE) before it goes.
        own = not any(s.action == "arrive" for s in walk.steps)
        raise Stop(
            "stopped",
            node,
            "source.too_big" if own else "link.mtu",
            (ref("link", node, out.name),),
            f"{flow.length} bytes with DF is more than {out.name}'s MTU {out.mtu}",
        )
    flow.length = out.mtu  # fragmented to fit: the largest fragment goes on
    walk.step(node, out.name, "route", f"{node} fragments it to {out.mtu} bytes")


def programs(walk: Chains, state: NamespaceState, link: Link, direction: str, flow: Flow) -> None:
    """tc filters and XDP programs the frame meets. A filter that takes every frame
    of the packet's protocol is run, in preference order, as the kernel would: its
    first action decides (drop; a redirect to a device that is down drops too; to
    one that is up the packet goes where the model does not follow; pass ends the
    filters); a filter whose match is not read (u32 keys, bpf, flower), and an XDP
    program, is listed as not run."""
    node = state.node
    protocols = ("all", "ipv6" if ":" in flow.dst else "ip")
    hook = sorted(
        (f for f in state.tc if f.dev == link.name and f.direction == direction),
        key=lambda f: f.pref,
    )
    for filter_ in hook:
        said = f"tc {filter_.describe()}"
        if filter_.protocol not in protocols:
            continue
        if not filter_.every:
            walk.unknowns.append(f"{node}: {said} (not run)")
            continue
        first = filter_.actions[0] if filter_.actions else "pass"
        where = (ref("tc", node, f"{link.name} {direction}"),)
        if first == "drop":
            raise Stop("stopped", node, "tc.drop", where, f"{said} drops it")
        target_name = filter_.redirects_to()
        if target_name is not None and first.endswith(f"redirect dev {target_name}"):
            target = state.link(target_name)
            if target is None or not target.up:
                raise Stop(
                    "stopped",
                    node,
                    "tc.redirect",
                    where,
                    f"{said} redirects it to {target_name}, which is "
                    + ("down" if target is not None else "not in this namespace"),
                )
            raise Stop("unknown", node, None, where, f"{said} redirects it: not followed")
        if first == "pass":
            break
        if not first.startswith("mirror"):
            walk.unknowns.append(f"{node}: {said} (not run)")
    if link.xdp and direction == "ingress":
        walk.unknowns.append(f"{node}: XDP {link.xdp} on {link.name} (not run)")


def _resolve(
    walk: Chains,
    state: NamespaceState,
    out: Link,
    gateway: str,
    there: NamespaceState,
    link: Link,
    flow: Flow,
) -> None:
    """Address resolution and the bridge between, both ways, then the frame."""
    node, theirs = state.node, ref("link", there.node, link.name)
    entry = links.neighbour(state, gateway, out.name)
    static = entry is not None and entry.state in ("PERMANENT", "NOARP") and bool(entry.lladdr)
    if entry is not None and static and (entry.lladdr or "").lower() != link.mac.lower():
        raise Stop(
            "stopped",
            node,
            "neigh.wrong_mac",
            (ref("neigh", node, gateway),),
            f"{node}'s neighbour entry {entry.describe()} is not {gateway}'s MAC {link.mac}",
        )
    if not link.up:
        raise Stop("stopped", there.node, links.down_code(link), (theirs,), f"{link.name} is down")
    if not static and ":" not in gateway:
        _answers_arp(there, link, out, gateway)
    bridge = _bridge_between(walk.net, state, out, there, link)
    if bridge is None:
        return
    bridge_state, ingress, egress = bridge
    programs(walk, bridge_state, ingress, "ingress", flow)
    programs(walk, bridge_state, egress, "egress", flow)
    for port in (ingress, egress):
        if port.kind != "bridge" and (not port.up or not port.carrier):
            code = "link.down" if not port.up else "link.carrier"
            raise Stop(
                "stopped",
                bridge_state.node,
                code,
                (ref("link", bridge_state.node, port.name),),
                f"the bridge port {port.name} is {'down' if not port.up else 'without carrier'}",
            )
    checks: list[tuple[Link, Link, str | None]] = [(ingress, egress, link.mac)]
    if not static:  # the request (broadcast for ARP; ND's multicast is not modelled), the answer
        asked: list[tuple[Link, Link, str | None]] = (
            [] if ":" in flow.dst else [(ingress, egress, None)]
        )
        checks = [*asked, (egress, ingress, out.mac), *checks]
    for into, onto, mac in checks:
        # To the bridge's own MAC the frame goes up, whatever port's entry holds it.
        blocked = links.bridge_blocks(
            bridge_state, into, onto, None if onto.kind == "bridge" else mac
        )
        if blocked is not None:
            raise Stop(
                "stopped",
                bridge_state.node,
                blocked.code,
                tuple(ref(k, bridge_state.node, n) for k, n in (blocked.subject, *blocked.also)),
                blocked.why,
            )
    if egress.kind != "bridge" and flow.length > egress.mtu:
        raise Stop(
            "stopped",
            bridge_state.node,
            "link.mtu",
            (ref("link", bridge_state.node, egress.name),),
            f"{flow.length} bytes is more than the bridge port {egress.name}'s MTU {egress.mtu}",
        )
    if not static and ":" not in flow.dst:
        _bridged(walk, bridge_state, replace(flow, protocol="arp", icmp_type=None), ingress, egress)
    _bridged(walk, bridge_state, flow, ingress, egress)
    walk.step(bridge_state.node, egress.name, "bridge", f"{ingress.name} -> {egress.name}")


def _answers_arp(there: NamespaceState, link: Link, out: Link, gateway: str) -> None:
    """Whether ``link`` answers an ARP request for ``gateway`` from ``out``."""
    theirs = ref("link", there.node, link.name)
    if link.noarp:
        raise Stop(
            "stopped",
            there.node,
            "link.noarp",
            (theirs,),
            f"{link.name} in {there.node} has NOARP set: it answers no ARP request",
        )
    keys, ignore = effective(there, "arp_ignore", link.name)
    named = tuple(ref("sysctl", there.node, k) for k in keys)
    asker = [ip_interface(a) for a in out.addresses if ":" not in a]
    held = [ip_interface(a) for a in link.addresses if a.split("/")[0] == gateway]
    if ignore == 2 and not any(a.ip in h.network for a in asker for h in held):
        raise Stop(
            "stopped",
            there.node,
            "sysctl.arp_ignore",
            named,
            f"arp_ignore 2 on {link.name} in {there.node}: the asker's address is not on "
            f"{gateway}'s subnet, so no ARP answer",
        )
    if ignore >= 8:
        raise Stop(
            "stopped",
            there.node,
            "sysctl.arp_ignore",
            named,
            f"arp_ignore {ignore} on {link.name} in {there.node}: it answers no ARP request",
        )


def _bridged(
    walk: Chains, bridge_state: NamespaceState, flow: Flow, ingress: Link, egress: Link
) -> None:
    """The bridge family's forward hook, and with br_netfilter the IP family's."""
    if ingress.kind == "bridge" or egress.kind == "bridge":
        return  # to or from the bridge's own stack: the node's hooks said it
    ruleset = bridge_state.rules()
    walk.hook(bridge_state, ruleset, "forward", flow, ingress.name, egress.name, ("bridge",))
    if flow.protocol == "arp":
        return
    key = "ip6tables" if ":" in flow.dst else "iptables"
    if bridge_state.sysctls.get(f"net.bridge.bridge-nf-call-{key}") == "1":
        bridge = ingress.master or ""
        walk.hook(bridge_state, ruleset, "forward", flow, bridge, bridge)


def _bridge_between(
    net: Network, state: NamespaceState, out: Link, there: NamespaceState, link: Link
) -> tuple[NamespaceState, Link, Link] | None:
    """(the bridge's namespace, the port the frame comes in by, the port it leaves by)."""
    if out.kind == "bridge":
        far = links.peer(net.all, there, link)
        if far is None or far[0] is not state:
            return None
        return state, out, far[1]
    near = links.peer(net.all, state, out)
    if near is None or near[1].master is None:
        return None
    if link.kind == "bridge":
        return near[0], near[1], link
    far = links.peer(net.all, there, link)
    if far is None:
        return None
    return near[0], near[1], far[1]


def effective(state: NamespaceState, key: str, dev: str) -> tuple[list[str], int]:
    """(the keys that give the effective value, the value): the larger of the
    interface's and all's, as the kernel takes it for rp_filter and arp_ignore."""
    keys = [f"net.ipv4.conf.{dev}.{key}", f"net.ipv4.conf.all.{key}"]
    values = {k: int(v) for k in keys if (v := state.sysctls.get(k) or "").isdigit()}
    top = max(values.values(), default=0)
    return [k for k, v in values.items() if v == top and top], top
