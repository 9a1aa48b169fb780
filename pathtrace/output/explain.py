"""What happened at a hop, in the kernel terms of the tutorial, for a learner."""

from __future__ import annotations

from pathtrace.model.trace import Hop

_TEXT = {
    "send": (
        "The packet leaves {node}'s network namespace through {iface}. A container has "
        "its own network stack; {iface} is one end of a veth pair, the other end lives "
        "in another namespace."
    ),
    "cross": (
        "A veth pair is a virtual cable: what one end transmits, the other receives at "
        "once. The packet is now in {node}, arriving on {iface}."
    ),
    "bridge-up": (
        "{iface} is a Linux bridge (a virtual switch). The frame was addressed to the "
        "bridge's own MAC, so the bridge hands it up to {node}'s IP stack, which "
        "routes it (ip_forward must be 1 to send it on)."
    ),
    "bridge-forward": (
        "The bridge looked the destination MAC up in its forwarding table "
        "(bridge fdb) and sent the frame out of port {iface}, without routing. "
        "With net.bridge.bridge-nf-call-iptables=1, bridged IPv4 still passes "
        "the ip FORWARD chain."
    ),
    "route": (
        "{node} looked the destination up in its routing table and sends the packet out "
        "of {iface}; its TTL went down by one if it was forwarded."
    ),
    "translate": (
        "Netfilter's NAT rewrote the addresses. The first packet of a connection "
        "picks the rule (here: {rule}); conntrack remembers the translation and "
        "applies it, reversed, to the replies."
    ),
    "receive": "{node} receives the packet on {iface}.",
    "deliver": (
        "The packet reached the end of its way in {node}: a socket took it, or, for "
        "an injected probe's answer, the kernel freed it having no socket for it."
    ),
    "drop": ("The kernel freed the packet as a drop in {node}; kfree_skb says why: {reason}."),
    "end": (
        "The kernel freed the packet in {node} without a drop reason, short of its destination."
    ),
}


def explain(hop: Hop) -> str:
    rule = hop.translation.rule if hop.translation and hop.translation.rule else "the NAT rule"
    return _TEXT.get(hop.action, hop.text).format(
        node=hop.node, iface=hop.interface or "-", rule=rule, reason=hop.drop_reason
    )
