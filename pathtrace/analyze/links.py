"""Layer 2 and links over saved state: veth peers, neighbours, MACs, bridge ports, MTU.

Pure functions: each answers one question a diagnosis asks ("who owns this
address?", "what does the sender believe its MAC is?", "will br0 pass a frame
from this port to that one?") from the states a run saved.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pathtrace.analyze.routing import route_get
from pathtrace.model.cause import Finding, ref
from pathtrace.model.state import Link, NamespaceState, Neighbour

Place = tuple[NamespaceState, Link]


def peer(states: Iterable[NamespaceState], state: NamespaceState, link: Link) -> Place | None:
    """The other end of veth ``link``: the link whose index is its peer index and
    whose peer index is its own, in the namespace netlink says (IFLA_LINK_NETNSID,
    resolved through the namespace's ids; none: the same namespace). Ifindexes repeat
    across namespaces: where the saved state cannot tell two candidates apart, None."""
    if link.peer_index is None:
        return None
    where = next((ns for ns, i in state.nsids.items() if i == link.peer_nsid), None)
    found = [
        (other, candidate)
        for other in states
        if link.parent_elsewhere is None or (other is not state) == link.parent_elsewhere
        if where is None or other.namespace == where
        for candidate in other.links
        if candidate.index == link.peer_index
        and candidate.peer_index == link.index
        and candidate.kind == "veth"
        and candidate is not link
    ]
    if link.parent_elsewhere is None:  # an old bundle: the first, as it was read then
        return found[0] if found else None
    return found[0] if len(found) == 1 else None


def owner(states: Iterable[NamespaceState], address: str) -> Place | None:
    """The namespace and interface that hold ``address``."""
    for state in states:
        for link in state.links:
            if any(a.split("/")[0] == address for a in link.addresses):
                return state, link
    return None


def neighbour(
    state: NamespaceState, address: str, dev: str | None, after: bool = False
) -> Neighbour | None:
    """``state``'s ARP entry for ``address`` (on ``dev`` when given)."""
    for entry in state.neighbour_entries(after):
        if entry.dst == address and (dev is None or entry.dev == dev):
            return entry
    return None


def unresolved(entry: Neighbour | None) -> bool:
    return entry is not None and any(s in entry.state for s in ("INCOMPLETE", "FAILED"))


def bridge_port_towards(
    states: list[NamespaceState], state: NamespaceState, link: Link
) -> Place | None:
    """The bridge port that ``link`` (a veth) plugs into, if its peer is one."""
    found = peer(states, state, link)
    if found is not None and found[1].master is not None:
        return found
    return None


def segment(states: list[NamespaceState], state: NamespaceState, link: Link) -> list[Place]:
    """The other stations on ``link``'s layer-2 segment, as netlink shows it: a veth's
    peer, or, where that peer (or ``link`` itself) is a bridge port or a bridge, the
    bridge device and the far ends of its other ports. Empty where it is not known."""
    found: list[Place] = []
    far = peer(states, state, link)
    if far is not None and far[1].master is None:
        return [far]
    bridge_state, bridge_name, came_by = state, link.name, None
    if far is not None:
        bridge_state, bridge_name, came_by = far[0], far[1].master or "", far[1].name
    elif link.master is not None:
        bridge_name, came_by = link.master, link.name
    bridge = bridge_state.link(bridge_name)
    if bridge is None or bridge.kind != "bridge":
        return []
    if bridge is not link:
        found.append((bridge_state, bridge))
    for port in bridge_state.links:
        if port.master != bridge.name or port.name == came_by:
            continue
        end = peer(states, bridge_state, port)
        if end is not None:
            found.append(end)
    return found


@dataclass(frozen=True)
class Blocked:
    why: str  # in a person's words
    fix: str  # a command for the bridge's node
    code: str  # the cause's code (model.cause)
    subject: tuple[str, str]  # (object kind, name) in the bridge's node
    also: tuple[tuple[str, str], ...] = ()  # other objects it names there

    def finding(self, node: str, fix: str | None, evidence: list[str]) -> Finding:
        """As a finding in ``node``, the bridge's, with the fix as the caller words it."""
        objects = tuple(ref(kind, node, name) for kind, name in (self.subject, *self.also))
        return Finding(self.code, objects, self.why, fix, evidence)


def down_code(link: Link) -> str:
    """A link that is down, as a cause code: a bridge down stops every port."""
    return "bridge.down" if link.kind == "bridge" else "link.down"


def bridge_blocks(
    bridge_state: NamespaceState, ingress: Link, egress: Link, dst_mac: str | None
) -> Blocked | None:
    """Why the bridge would not pass a frame from port ``ingress`` (or the bridge
    device itself, sending) to port ``egress`` (``dst_mac``: the frame's destination,
    None for a broadcast such as ARP)."""
    bridge = ingress.name if ingress.kind == "bridge" else ingress.master
    device = bridge_state.link(bridge) if bridge else None
    if device is not None and not device.up:
        # A bridge that is down puts every port in state disabled: the ports'
        # state follows from it, and setting them heals nothing.
        return Blocked(
            f"{bridge} itself is down (so its ports are disabled): it passes no frame",
            f"ip link set {bridge} up",
            "bridge.down",
            ("link", device.name),
        )
    for port in (ingress, egress):
        if not port.up or not port.carrier:
            # The link's own fault, said elsewhere: a port without carrier is disabled
            # by the bridge, and setting its state heals nothing.
            return None
    for port in (ingress, egress):
        if port.port is not None and port.port.state not in ("forwarding",):
            return Blocked(
                f"{bridge}'s port {port.name} is in state {port.port.state}, not forwarding",
                f"bridge link set dev {port.name} state 3",
                "bridge.port_state",
                ("port", port.name),
            )
    i, e = ingress.port, egress.port
    if i is not None and e is not None and i.isolated and e.isolated:
        return Blocked(
            f"{bridge}'s ports {ingress.name} and {egress.name} are both isolated "
            "(isolated on): an isolated port never sends to another",
            f"bridge link set dev {egress.name} isolated off",
            "bridge.isolated",
            ("port", egress.name),
        )
    if dst_mac is None:
        if e is not None and not e.bcast_flood:
            return Blocked(
                f"{bridge} does not flood broadcasts (such as ARP requests) to "
                f"{egress.name}: bcast_flood off",
                f"bridge link set dev {egress.name} bcast_flood on",
                "bridge.flood",
                ("port", egress.name),
            )
        return None
    known = fdb_port(bridge_state, dst_mac)
    if known is None and e is not None and not e.flood:
        off = "learning off, flood off" if not e.learning else "flood off"
        return Blocked(
            f"{bridge} has no FDB entry for {dst_mac} (the MAC behind {egress.name}, "
            f"whose port has {off}: it never learns it), and does not flood unknown "
            f"unicast to {egress.name}",
            f"bridge link set dev {egress.name} learning on flood on",
            "bridge.flood",
            ("port", egress.name),
        )
    if known is not None and known != egress.name:
        return Blocked(
            f"{bridge}'s FDB sends {dst_mac} to {known}, but that MAC is behind {egress.name}",
            f"bridge fdb del {dst_mac} dev {known} master",
            "bridge.fdb",
            ("fdb", dst_mac),
            (("port", known),),
        )
    return None


def fdb_port(state: NamespaceState, mac: str) -> str | None:
    for entry in state.fdb:
        if entry.is_for(mac):
            return entry.dev
    return None


@dataclass(frozen=True)
class TooBig:
    sender: str  # the interface whose MTU let it go
    mtu: int
    receiver: str  # the peer that refused it
    peer_mtu: int
    # The links the receiver passes packets on to (the other ports of its bridge, or
    # its namespace's other links) all take the sender's MTU: the receiver is the
    # odd one, and raising it is the fix (else the sender's is lowered).
    receiver_is_odd: bool = False
    onward: tuple[str, ...] = ()  # those links, "name mtu N"


def veth_mtu(
    states: list[NamespaceState], state: NamespaceState, link: Link, length: int
) -> TooBig | None:
    """A packet of ``length`` bytes sent on veth ``link`` that its peer's MTU refuses."""
    other = peer(states, state, link)
    if other is None:
        return None
    peer_link = other[1]
    if length > peer_link.mtu and link.mtu > peer_link.mtu:
        onward = _onward(other[0], peer_link)
        return TooBig(
            link.name,
            link.mtu,
            f"{other[0].node}/{peer_link.name}",
            peer_link.mtu,
            all(o.mtu >= link.mtu for o in onward),
            tuple(f"{o.name} mtu {o.mtu}" for o in onward),
        )
    return None


def _onward(state: NamespaceState, link: Link) -> list[Link]:
    """The links a packet taken in on ``link`` can go on through: the other ports of
    its bridge, or else the namespace's other links (not loopback, not ports)."""
    if link.master:
        return [o for o in state.links if o.master == link.master and o.name != link.name]
    return [
        o for o in state.links if o.name != link.name and o.kind != "loopback" and o.master is None
    ]


def leaves_machine(
    states: Iterable[NamespaceState], host: NamespaceState, target: str
) -> str | None:
    """Why a packet the host sends to ``target`` could leave this machine (None:
    it cannot). The target must be an address some namespace here owns, and the
    host's route to it must go out of a link into another namespace (a veth),
    or a bridge whose every port is one."""
    if owner(states, target) is None:
        return f"{target} is not an address of any namespace on this machine"
    lookup = route_get(host, target)
    if lookup.kind != "unicast" or lookup.route is None or lookup.route.dev is None:
        return None  # local, refused or no route: nothing goes out
    out = host.link(lookup.route.dev)
    if out is None:
        return None
    leads_away = _leads_away(host, out, 4)
    if leads_away:
        return (
            f"the host's route to {target} goes out of {', '.join(leads_away)}, not a veth "
            "(or a device on one)"
        )
    return None


# Devices whose frames go out through their lower device (IFLA_LINK).
_UPPER = ("macvlan", "macvtap", "ipvlan", "ipvtap", "vlan", "vxlan", "geneve")


def _leads_away(host: NamespaceState, link: Link, depth: int) -> list[str]:
    """The links through which ``link``'s frames could leave the machine: none for a
    veth, a bridge of veths, or a device whose lower device (in the same namespace,
    as netlink says) is one of those."""
    if link.kind == "veth":
        return []
    if link.kind == "bridge" and depth:
        ports = [p for p in host.links if p.master == link.name]
        return [name for p in ports for name in _leads_away(host, p, depth - 1)]
    if link.kind in _UPPER and depth and link.parent_index is not None:
        lower = None if link.parent_elsewhere else host.link_by_index(link.parent_index)
        if lower is not None:
            return _leads_away(host, lower, depth - 1)
    return [link.name]
