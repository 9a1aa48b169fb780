"""Findings as data: why a packet stopped, as a cause code from a closed vocabulary
and the kernel objects that explain it, beside the sentences people read.

A cause code says which kind of kernel fact explains the stop (``route.blackhole``,
``nf.drop``, ``sysctl.rp_filter``); an object reference names the fact itself,
``KIND:NODE/NAME`` (``nf:host/ip filter FORWARD handle 7``, ``link:host/br0``,
``sysctl:wan/net.ipv4.ip_forward``, ``route:container1/8.8.8.8``: the route the
lookup for that address needed). Scorers and JSON consumers read these, never the
English.
"""

from __future__ import annotations

from dataclasses import dataclass, field

CAUSES: dict[str, str] = {
    # routing
    "route.none": "no route to the destination",
    "route.back": "the destination has no route back to the source",
    "route.blackhole": "the route lookup ends in a blackhole route or rule",
    "route.unreachable": "the route lookup ends in an unreachable route or rule",
    "route.prohibit": "the route lookup ends in a prohibit route or rule",
    "route.source": "a route's preferred source picks an address nothing translates",
    # sysctls
    "sysctl.forwarding": "forwarding is off for the packet's family or interface",
    "sysctl.rp_filter": "reverse-path filtering refused the source",
    "sysctl.route_localnet": "a loopback destination came in where route_localnet is off",
    "sysctl.arp_ignore": "the owner of the address answers no ARP request",
    "sysctl.disable_ipv6": "IPv6 is off where the address lives",
    "sysctl.icmp_echo_ignore": "the destination ignores echo requests",
    # netfilter and NAT
    "nf.drop": "a netfilter rule dropped it",
    "nf.policy": "a chain's drop policy, no rule accepting it",
    "nf.reject": "a netfilter reject rule refused it",
    "nf.notrack": "a notrack rule kept it out of conntrack, so no NAT rule ran",
    "nf.ttl": "a rule rewrote the TTL so that it ran out",
    "nat.none": "nothing translated the source, and the far side has no way back to it",
    "nat.port": "a DNAT sends it to a port nothing listens on",
    "nat.reply": "the answer matched no conntrack entry, so nothing translated it back",
    # neighbours and links
    "neigh.failed": "the next hop never answered address resolution",
    "neigh.wrong_mac": "a neighbour entry gives a MAC that is not the next hop's",
    "link.down": "a link on the way is down",
    "link.carrier": "a link has no carrier: its peer is down",
    "link.noarp": "a link has NOARP set",
    "link.mtu": "a packet larger than a link's MTU",
    "link.no_address": "the source's link has no address of the family",
    "address.duplicate": "two traced namespaces hold the same address",
    "address.prefix": "an address's prefix is narrower than the network its link's stations use",
    # bridges
    "bridge.down": "the bridge itself is down",
    "bridge.port_state": "a bridge port is not forwarding",
    "bridge.isolated": "both bridge ports are isolated",
    "bridge.flood": "the bridge does not flood the frame to the port",
    "bridge.fdb": "the bridge's FDB sends the MAC to another port",
    # tunnels, XDP, tc
    "tunnel.fdb": "a VXLAN device has no VTEP for the frame's MAC",
    "tunnel.mtu": "the encapsulated datagram is larger than the underlay's MTU",
    "xdp.drop": "an XDP program dropped it",
    "xdp.attached": "an XDP program sees the frames before the stack (unproven)",
    "tc.drop": "a tc filter dropped it",
    "tc.redirect": "a tc filter redirected it to a device that cannot send",
    # the endpoints
    "socket.none": "nothing listens on the port",
    "socket.bound": "the service listens on another address only",
    "path.ttl": "the TTL ran out on the way",
    "source.refused": "the source's own stack refused to send it",
    "source.too_big": "the probe is larger than the source's MTU",
    "unknown": "the saved state does not show why",
}

OBJECT_KINDS = (
    "link",  # a device: link:NODE/IFNAME
    "port",  # a bridge port's switches: port:NODE/IFNAME
    "address",  # address:NODE/ADDRESS
    "route",  # the route a lookup needed or used: route:NODE/DESTINATION
    "rule",  # a policy routing rule: rule:NODE/pref N
    "neigh",  # a neighbour entry: neigh:NODE/ADDRESS
    "fdb",  # a bridge or VXLAN FDB entry: fdb:NODE/MAC
    "sysctl",  # sysctl:NODE/KEY
    "nf",  # a chain or rule: nf:NODE/FAMILY TABLE CHAIN[ handle N | rule N (iptables-legacy)]
    "tc",  # tc:NODE/IFNAME DIRECTION
    "xdp",  # xdp:NODE/IFNAME
    "socket",  # socket:NODE/PROTOCOL PORT
)


def ref(kind: str, node: str, name: str) -> str:
    """An object reference: ``KIND:NODE/NAME``."""
    if kind not in OBJECT_KINDS:
        raise ValueError(f"unknown object kind {kind!r}")
    return f"{kind}:{node}/{name}"


def parse_ref(text: str) -> tuple[str, str, str]:
    """(kind, node, name) of ``KIND:NODE/NAME``."""
    kind, _, rest = text.partition(":")
    node, _, name = rest.partition("/")
    return kind, node, name


@dataclass(frozen=True)
class Finding:
    """Why: the code, the objects, and what people read (cause, fix, evidence)."""

    code: str
    objects: tuple[str, ...]
    cause: str
    fix: str | None
    evidence: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.code not in CAUSES:  # the vocabulary is closed: no code made up on the way
            raise ValueError(f"unknown cause code {self.code!r}")
