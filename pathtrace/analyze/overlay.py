"""The predicted path through a VXLAN device: the frame's MAC from the neighbour
entry, the VTEP from the device's FDB (or its remote), the encapsulated datagram
predicted through the underlay like any packet the node sends (routes, netfilter,
links), then taken in by the VXLAN device of the VTEP's namespace that has the
port and the VNI, whose MAC the frame must carry.

What it does not model ends the path as "unknown": address resolution across the
overlay (no neighbour entry: ARP flooded to the all-zeros FDB entries), an
underlay in another namespace, Geneve and other tunnels.
"""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import ip_address

from pathtrace.analyze import links
from pathtrace.analyze.chains import Chains, Flow, Stop, first_address
from pathtrace.analyze.routing import route_get
from pathtrace.analyze.segments import fit, programs
from pathtrace.model.cause import ref
from pathtrace.model.prediction import Prediction
from pathtrace.model.state import Link, NamespaceState

ZERO_MAC = "00:00:00:00:00:00"
# What VXLAN adds around the frame: outer IP, UDP, VXLAN header, inner Ethernet.
OVERHEAD = {4: 20 + 8 + 8 + 14, 6: 40 + 8 + 8 + 14}
DEFAULT_PORT = 4789  # IANA's; Linux's own default when none is given is 8472

# Predicts the outer datagram from a node, sent by that node (a Walk of its own).
Underlay = Callable[[str, Flow], Prediction]


def through_vxlan(
    walk: Chains, state: NamespaceState, out: Link, gateway: str, flow: Flow, underlay: Underlay
) -> tuple[str, str]:
    """From the VXLAN device ``out`` to the device that decapsulates the frame:
    (its node, its name)."""
    node, here = state.node, ref("link", state.node, out.name)
    if not out.up:
        raise Stop("stopped", node, links.down_code(out), (here,), f"{out.name} is down")
    fit(walk, node, out, flow)
    if out.noarp:
        raise Stop(
            "stopped",
            node,
            "link.noarp",
            (here,),
            f"{out.name} has NOARP: its frames go to its own MAC {out.mac}, which no VTEP has",
        )
    entry = links.neighbour(state, gateway, out.name)
    if entry is None or not entry.lladdr or entry.state in ("FAILED", "INCOMPLETE"):
        raise Stop(
            "unknown",
            node,
            None,
            (here,),
            f"no neighbour entry for {gateway} on {out.name}: address resolution across "
            "the overlay is not modelled",
        )
    mac = entry.lladdr
    vtep, said = _vtep(state, out, mac)
    if vtep is None:
        raise Stop(
            "stopped",
            node,
            "tunnel.fdb",
            (ref("fdb", node, mac), here),
            f"{out.name} has no FDB entry for {mac} ({gateway}'s MAC), no default entry and "
            "no remote: the kernel has no VTEP to send the frame to",
        )
    if out.parent_elsewhere:
        raise Stop("unknown", node, None, (here,), f"{out.name}'s underlay is in another namespace")
    port = int(out.detail("port") or DEFAULT_PORT)
    version = ip_address(vtep).version
    outer = Flow(
        out.detail("local") or first_address(state, None, vtep) or "",
        vtep,
        "udp",
        0,
        port,
        None,
        64,
        flow.length + OVERHEAD[version],
    )
    _underlay_mtu(state, out, flow, outer)
    walk.step(node, out.name, "encapsulate", f"{out.name} sends it to {vtep}:{port} ({said})")
    carried = underlay(node, outer)
    walk.steps.extend(carried.steps)
    walk.unknowns.extend(carried.unknowns)
    if carried.outcome != "delivered" or carried.node is None:
        raise Stop(
            carried.outcome,
            carried.node or node,
            carried.code,
            carried.objects,
            f"the VXLAN datagram to {vtep}: {carried.why}",
        )
    there = walk.net.state(carried.node)
    if there is None:
        raise Stop("left", carried.node, None, (), f"{carried.node} is not traced")
    device = _decapsulator(there, out, port)
    _frame_for(walk, state, out, gateway, mac, there, device)
    programs(walk, there, device, "ingress", flow)
    walk.step(there.node, device.name, "arrive", f"{there.node} takes it off {device.name}")
    return there.node, device.name


def _vtep(state: NamespaceState, out: Link, mac: str) -> tuple[str | None, str]:
    """Where the device sends a frame for ``mac``: its FDB's entry, the all-zeros
    entry, or its own remote (and how that was known)."""
    own = [e for e in state.fdb if e.dev == out.name and e.dst]
    for wanted in (mac, ZERO_MAC):
        entry = next((e for e in own if e.is_for(wanted)), None)
        if entry is not None:
            return entry.dst, f"FDB {entry.describe()}"
    remote = out.detail("remote")
    return remote, f"{out.name}'s remote"


def _underlay_mtu(state: NamespaceState, out: Link, flow: Flow, outer: Flow) -> None:
    """A datagram larger than the underlay device's MTU: the kernel refuses the frame
    (and tells its sender) when the inner packet may not be fragmented; else the
    datagram is fragmented on its way."""
    lookup = route_get(state, outer.dst, None, None, 0)
    device = state.link(lookup.route.dev or "") if lookup.route is not None else None
    if device is None or outer.length <= device.mtu:
        return
    if flow.dont_fragment or ":" in flow.dst:
        raise Stop(
            "stopped",
            state.node,
            "tunnel.mtu",
            (ref("link", state.node, out.name), ref("link", state.node, device.name)),
            f"{flow.length} bytes in {out.name} make a {outer.length}-byte datagram, more than "
            f"the underlay {device.name}'s MTU {device.mtu} ({out.name}'s MTU is {out.mtu})",
        )


def _decapsulator(there: NamespaceState, out: Link, port: int) -> Link:
    node = there.node
    devices = [k for k in there.links if k.kind == "vxlan" and k.detail("port") == str(port)]
    up = [k for k in devices if k.up]
    if not up:
        if devices:
            device = devices[0]
            raise Stop(
                "stopped",
                node,
                links.down_code(device),
                (ref("link", node, device.name),),
                f"{device.name} takes UDP port {port} only while it is up: it is down",
            )
        raise Stop(
            "stopped",
            node,
            "socket.none",
            (ref("socket", node, f"udp {port}"),),
            f"no VXLAN device of {node} takes UDP port {port}",
        )
    same = [k for k in up if k.detail("vni") == out.detail("vni")]
    if not same:
        raise Stop(
            "unknown",
            node,
            None,
            tuple(ref("link", node, k.name) for k in up),
            f"no VXLAN device of {node} on port {port} has VNI {out.detail('vni')}",
        )
    return same[0]


def _frame_for(
    walk: Chains,
    state: NamespaceState,
    out: Link,
    gateway: str,
    mac: str,
    there: NamespaceState,
    device: Link,
) -> None:
    """The inner frame is taken only if it carries the receiving device's MAC."""
    if not device.mac or device.mac.lower() == mac.lower():
        return
    node = state.node
    owner = [
        (s.node, k.name) for s in walk.net.all for k in s.links if k.mac.lower() == mac.lower()
    ]
    if owner:  # the MAC is another VTEP's: the FDB sent it to the wrong one
        raise Stop(
            "stopped",
            node,
            "tunnel.fdb",
            (ref("fdb", node, mac), ref("link", node, out.name)),
            f"{out.name}'s FDB sends {mac} ({owner[0][0]}/{owner[0][1]}'s) to "
            f"{there.node}, whose {device.name} has MAC {device.mac}",
        )
    raise Stop(
        "stopped",
        node,
        "neigh.wrong_mac",
        (ref("neigh", node, gateway),),
        f"{node}'s neighbour entry gives {gateway} the MAC {mac}, which no device has "
        f"({there.node}/{device.name}'s is {device.mac})",
    )
