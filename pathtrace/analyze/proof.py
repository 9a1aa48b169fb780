"""Fixes proven before they are printed: the fix applied to a copy of the saved
state, and the path predicted again.

Only commands whose effect on the state is plain are applied (sysctl -w, ip link
set, ip route/rule/neigh add/del/replace, nft delete rule, iptables -D, bridge
link set, bridge fdb del). A fix in words, or a command not modelled here, is
left as it is, unproven; nothing is claimed for it.
"""

from __future__ import annotations

import copy
import re
import shlex
from collections.abc import Callable
from dataclasses import replace
from ipaddress import ip_address, ip_interface

from pathtrace.analyze import links
from pathtrace.analyze.network import Network
from pathtrace.model.prediction import Prediction
from pathtrace.model.state import FdbEntry, Link, NamespaceState, Neighbour, RouteEntry
from pathtrace.model.trace import Verdict

_RESTORE = re.compile(r" \(or `[^`]*`\)$")
_TABLES = {"main": 254, "local": 255, "default": 253}


def apply_fix(net: Network, fix: str) -> dict[str, NamespaceState] | None:
    """The states with ``fix`` applied, or None when it is not a chain of commands
    this model can apply."""
    text = bare(fix)
    states = copy.deepcopy(net.states)
    by_prefix = sorted(
        ((net.run_in(s.node), ns) for ns, s in states.items()), key=lambda p: -len(p[0])
    )
    for part in text.split(" && "):
        found = next(((p, ns) for p, ns in by_prefix if part.startswith(p)), None)
        if found is None:
            return None
        prefix, namespace = found
        try:
            words = shlex.split(part[len(prefix) :])
        except ValueError:
            return None
        try:
            if not _apply(states[namespace], words):
                return None
        except ValueError:  # a placeholder (GATEWAY) or a value it cannot read
            return None
    _carriers(list(states.values()), net)
    for state in states.values():
        _bridge_mtus(state, net.state(state.node))
        _bridge_carriers(state, net.state(state.node))
    return states


def _bridge_carriers(state: NamespaceState, before: NamespaceState | None) -> None:
    """A bridge has carrier while one of its ports forwards: set again where a fix
    changed a port or the bridge. A bridge brought up enables its ports that have
    carrier (forwarding at once: the saved state shows no STP)."""
    for bridge in [lk for lk in state.links if lk.kind == "bridge"]:
        was = before.link(bridge.name) if before else None
        came_up = bridge.up and was is not None and not was.up
        if came_up:
            state.links = [
                _carried(lk, True) if lk.master == bridge.name and lk.up and lk.carrier else lk
                for lk in state.links
            ]
        ports = [lk for lk in state.links if lk.master == bridge.name]
        old = [lk for lk in before.links if lk.master == bridge.name] if before else ports
        if ports and (ports != old or came_up):
            carrier = bridge.up and any(
                p.up and p.carrier and (p.port is None or p.port.state == "forwarding")
                for p in ports
            )
            state.links = [
                replace(lk, carrier=carrier) if lk.name == bridge.name else lk for lk in state.links
            ]


def _bridge_mtus(state: NamespaceState, before: NamespaceState | None) -> None:
    """A bridge whose MTU followed its ports' smallest follows it again when a fix
    changes a port's MTU (the kernel's default, unless someone set the bridge's)."""
    if before is None:
        return
    for bridge in [lk for lk in state.links if lk.kind == "bridge"]:
        ports = [lk for lk in state.links if lk.master == bridge.name]
        old = [lk for lk in before.links if lk.master == bridge.name]
        if not ports or not old or bridge.mtu != min(p.mtu for p in old):
            continue
        mtu = min(p.mtu for p in ports)
        state.links = [replace(lk, mtu=mtu) if lk is bridge else lk for lk in state.links]


def _carriers(states: list[NamespaceState], net: Network) -> None:
    """A veth has carrier when it and its peer are both up: set again for the pairs
    a fix brought up (the kernel does it on open)."""
    for state in states:
        before = net.state(state.node)
        for link in list(state.links):
            was = before.link(link.name) if before else None
            if link.kind != "veth" or not link.up or (was is not None and was.up):
                continue
            far = links.peer(states, state, link)
            if far is None:
                continue
            other, peer = far
            both = peer.up
            state.links = [_carried(lk, both) if lk is link else lk for lk in state.links]
            other.links = [_carried(lk, both) if lk is peer else lk for lk in other.links]


def _carried(link: Link, carrier: bool) -> Link:
    """A link given carrier (or not); a bridge port the kernel disabled for the
    want of it forwards again once it has it (STP off, as the saved state shows no
    STP states)."""
    port = link.port
    if port is not None and carrier and port.state == "disabled":
        port = replace(port, state="forwarding")
    return replace(link, carrier=carrier, port=port)


def _apply(state: NamespaceState, words: list[str]) -> bool:
    """``words`` applied to ``state``; False: not a command this model knows."""
    family = 4
    if words[:2] == ["ip", "-6"]:
        family, words = 6, ["ip", *words[2:]]
    elif words[:2] == ["ip", "-4"]:
        words = ["ip", *words[2:]]
    elif words[:1] == ["ip"] and any(":" in w and w.count(":") != 5 for w in words[3:]):
        family = 6  # ip takes the family from an address it is given (not a MAC)
    match words:
        case ["sysctl", "-w", setting] if "=" in setting:
            key, _, value = setting.partition("=")
            state.sysctls[key] = value
            if key in ("net.ipv4.ip_forward", "net.ipv4.conf.all.forwarding"):
                for name in list(state.sysctls):  # the kernel sets every interface's
                    if name.startswith("net.ipv4.conf.") and name.endswith(".forwarding"):
                        state.sysctls[name] = value
                state.sysctls["net.ipv4.ip_forward"] = value
            return True
        case ["ip", "link", "set", *rest]:
            return _link_set(state, [w for w in rest if w != "dev"])
        case ["ip", "route", "del", *spec]:
            return _route_del(state, spec, family)
        case ["ip", "route", ("add" | "replace") as how, *spec]:
            return _route_add(state, spec, family, how == "replace")
        case ["ip", "rule", "del", "pref", pref] if pref.isdigit():
            state.route_rules = [
                r for r in state.route_rules if (r.priority, r.family) != (int(pref), family)
            ]
            return True
        case ["ip", "neigh", ("replace" | "add"), address, "lladdr", mac, "dev", dev, *rest] if (
            rest in ([], ["nud", "permanent"])
        ):
            kept = [
                n for n in state.neighbours if not (n.split()[0] == address and f"dev {dev}" in n)
            ]
            state.neighbours = [*kept, Neighbour(address, dev, mac, "PERMANENT").describe()]
            return True
        case ["ip", "neigh", "del", address, "dev", dev]:
            state.neighbours = [
                n for n in state.neighbours if not (n.split()[0] == address and f"dev {dev}" in n)
            ]
            return True
        case ["nft", "delete", "rule", nf_family, table, chain, "handle", handle]:
            return _nft_delete(state, nf_family, table, chain, handle)
        case [("iptables" | "ip6tables") as tool, "-t", table, "-D", chain, *spec] if spec:
            nf_family = "ip6" if tool == "ip6tables" else "ip"
            line = " ".join(["-A", chain, *spec])
            rule = next(
                (
                    r
                    for r in state.rules().rules
                    if (r.family, r.table, r.iptables) == (nf_family, table, line) and not r.legacy
                ),
                None,
            )
            return rule is not None and _nft_delete(
                state, nf_family, table, chain, str(rule.handle)
            )
        case ["ip", ("addr" | "address" | "a"), ("add" | "del") as how, address, "dev", dev]:
            return _address(state, address, dev, how == "add")
        case ["tc", "filter", ("del" | "delete"), "dev", dev, ("ingress" | "egress") as way]:
            state.tc = [f for f in state.tc if (f.dev, f.direction) != (dev, way)]
            return True
        case ["bridge", "link", "set", "dev", dev, *switches]:
            return _port_set(state, dev, switches)
        case [
            "bridge",
            "fdb",
            ("add" | "append") as how,
            mac,
            "dev",
            dev,
            "dst",
            dst,
            "self",
            *rest,
        ]:
            if rest not in ([], ["permanent"]) or (
                how == "add" and any(e.is_for(mac) and e.dev == dev for e in state.fdb)
            ):
                return False  # add refuses an existing entry; other flags: not modelled
            state.fdb.append(FdbEntry(mac, dev, dst=dst, state="permanent"))
            return True
        case [("iptables-legacy" | "ip6tables-legacy") as tool, "-t", table, "-D", chain, n] if (
            n.isdigit()
        ):
            return _legacy_delete(state, tool.startswith("ip6"), table, chain, int(n))
        case ["bridge", "fdb", "del", mac, "dev", dev, "master"]:
            state.fdb = [e for e in state.fdb if not (e.is_for(mac) and e.dev == dev)]
            return True
    return False


def _link_set(state: NamespaceState, words: list[str]) -> bool:
    if not words or state.link(words[0]) is None:
        return False
    name, changes = words[0], words[1:]
    link = state.link(name)
    assert link is not None
    while changes:
        match changes:
            case ["up", *changes]:
                link = replace(link, up=True)
            case ["mtu", value, *changes] if value.isdigit():
                link = replace(link, mtu=int(value))
            case ["arp", "on", *changes]:
                link = replace(link, noarp=False)
                # The kernel flushes the NOARP entries the device made while ARP was off.
                state.neighbours = [
                    n for n in state.neighbours if not (f"dev {name} " in n and "NOARP" in n)
                ]
            case _:
                return False
    state.links = [link if lk.name == name else lk for lk in state.links]
    if link.up:  # the kernel adds each address's connected route back when a link comes up
        for address in link.addresses:
            interface = ip_interface(address)
            net = str(interface.network)
            if interface.network.prefixlen == interface.max_prefixlen or interface.ip.is_link_local:
                continue
            family = interface.version
            if not any(r.dst == net and r.table == 254 for r in state.routes):
                state.routes.append(
                    RouteEntry(net, None, name, str(interface.ip), 254, "unicast", 0, family)
                )
    return True


def _address(state: NamespaceState, address: str, dev: str, adding: bool) -> bool:
    """An address added (with its connected route, as the kernel adds it) or
    deleted (with the routes that went with it: its network's, those it was the
    source of)."""
    link = state.link(dev)
    interface = ip_interface(address)
    if link is None:
        return False
    family, network = interface.version, str(interface.network)
    kept = tuple(a for a in link.addresses if ip_interface(a) != interface)
    if adding:
        addresses = (*kept, str(interface))
    else:
        if len(kept) == len(link.addresses):
            return False
        addresses = kept
        others = [a for a in kept if ip_interface(a).network == interface.network]
        state.routes = [
            r
            for r in state.routes
            if r.prefsrc != str(interface.ip)
            and not (r.dst == network and r.dev == dev and r.gateway is None and not others)
        ]
    state.links = [replace(lk, addresses=addresses) if lk.name == dev else lk for lk in state.links]
    full = interface.network.prefixlen == interface.max_prefixlen
    if adding and link.up and not full:
        if not any(r.dst == network and r.dev == dev and r.table == 254 for r in state.routes):
            state.routes.append(
                RouteEntry(network, None, dev, str(interface.ip), 254, "unicast", 0, family)
            )
    return True


def _route_spec(spec: list[str], family: int) -> tuple[str, str, dict[str, str]] | None:
    kind = "unicast"
    if spec and spec[0] in ("blackhole", "unreachable", "prohibit", "throw", "local"):
        kind, spec = spec[0], spec[1:]
    if not spec:
        return None
    dst, rest = spec[0], spec[1:]
    if len(rest) % 2:
        return None
    options = dict(zip(rest[::2], rest[1::2], strict=True))
    if dst in ("default", "::/0", "0.0.0.0/0"):
        dst = "default"
    elif "/" not in dst:
        dst += "/128" if family == 6 else "/32"
    return kind, dst, options


def _table(options: dict[str, str]) -> int | None:
    table = options.get("table", "main")
    return _TABLES.get(table, int(table) if table.isdigit() else None)


def _route_del(state: NamespaceState, spec: list[str], family: int) -> bool:
    parsed = _route_spec(spec, family)
    if parsed is None or _table(parsed[2]) is None:
        return False
    kind, dst, options = parsed
    table = _table(options)
    state.routes = [
        r
        for r in state.routes
        if not (r.family == family and r.table == table and r.dst == dst and r.type == kind)
    ]
    return True


def _route_add(state: NamespaceState, spec: list[str], family: int, replacing: bool) -> bool:
    parsed = _route_spec(spec, family)
    if parsed is None or _table(parsed[2]) is None:
        return False
    kind, dst, options = parsed
    table = _table(options)
    assert table is not None
    if not set(options) <= {"via", "dev", "table", "src", "metric"}:
        return False
    dev = options.get("dev")
    if dev is None and "via" in options:  # the link whose network holds the gateway
        dev = next(
            (lk.name for lk in state.links for a in lk.addresses if _holds(a, options["via"])),
            None,
        )
        if dev is None:
            return False
    if replacing:
        state.routes = [
            r for r in state.routes if not (r.family, r.table, r.dst) == (family, table, dst)
        ]
    metric = int(options.get("metric", "0"))
    state.routes.append(
        RouteEntry(dst, options.get("via"), dev, options.get("src"), table, kind, metric, family)
    )
    return True


def _holds(address: str, gateway: str) -> bool:
    interface = ip_interface(address)
    return ip_address(gateway) in interface.network and interface.network.prefixlen < (
        interface.max_prefixlen
    )


def _nft_delete(state: NamespaceState, family: str, table: str, chain: str, handle: str) -> bool:
    """The rule's line taken out of the saved listing."""
    lines, here, found = [], ("", "", ""), False
    for raw in state.ruleset.splitlines():
        line = raw.strip()
        if line.startswith("table "):
            words = line.split()
            here = (words[1], words[2], "") if len(words) > 2 else here
        elif line.startswith("chain "):
            here = (here[0], here[1], line.split()[1])
        elif here == (family, table, chain) and line.endswith(f"# handle {handle}"):
            found = True
            continue
        lines.append(raw)
    state.ruleset = "\n".join(lines) + "\n"
    state.ruleset_json = [
        item
        for item in state.ruleset_json
        if not (
            (r := item.get("rule"))
            and (r["family"], r["table"], r["chain"], str(r["handle"]))
            == (family, table, chain, handle)
        )
    ]
    return found


def _legacy_delete(state: NamespaceState, six: bool, table: str, chain: str, n: int) -> bool:
    """The chain's ``n``-th rule taken out of iptables-legacy-save's listing and of
    its translation (the two are read side by side, by position)."""
    save, translated = (
        (state.legacy6_save, state.legacy6_nft) if six else (state.legacy_save, state.legacy_nft)
    )
    family = "ip6" if six else "ip"

    def without(
        text: str, table_of: Callable[[str], str | None], is_rule: Callable[[str], bool]
    ) -> str | None:
        lines, here, seen, found = [], "", 0, False
        for line in text.splitlines():
            here = table_of(line) or here
            if here == table and is_rule(line):
                seen += 1
                if seen == n:
                    found = True
                    continue
            lines.append(line)
        return "\n".join(lines) + "\n" if found else None

    def saved_table(line: str) -> str | None:
        return line[1:].strip() if line.startswith("*") else None

    def translated_table(line: str) -> str | None:
        words = line.split()
        return (
            words[3] if words[:3] in (["add", "table", family], ["add", "chain", family]) else None
        )

    kept_save = without(save, saved_table, lambda line: line.split()[:2] == ["-A", chain])
    kept_nft = without(
        translated,
        translated_table,
        lambda line: line.startswith((f"add rule {family} {table} {chain} ", f"# -A {chain} ")),
    )
    if kept_save is None or kept_nft is None:
        return False
    if six:
        state.legacy6_save, state.legacy6_nft = kept_save, kept_nft
    else:
        state.legacy_save, state.legacy_nft = kept_save, kept_nft
    return True


def _port_set(state: NamespaceState, dev: str, switches: list[str]) -> bool:
    link = state.link(dev)
    if link is None or link.port is None or len(switches) % 2:
        return False
    port = link.port
    for name, value in zip(switches[::2], switches[1::2], strict=True):
        on = value == "on"
        if name == "state" and value.isdigit():
            states = ["disabled", "listening", "learning", "forwarding", "blocking"]
            port = replace(port, state=states[int(value)] if int(value) < 5 else value)
        elif name == "learning" and value in ("on", "off"):
            port = replace(port, learning=on)
        elif name == "flood" and value in ("on", "off"):
            port = replace(port, flood=on)
        elif name == "bcast_flood" and value in ("on", "off"):
            port = replace(port, bcast_flood=on)
        elif name == "isolated" and value in ("on", "off"):
            port = replace(port, isolated=on)
        else:
            return False
    state.links = [replace(lk, port=port) if lk.name == dev else lk for lk in state.links]
    return True


def _stop(predictions: list[Prediction]) -> Prediction | None:
    return next((p for p in predictions if p.outcome != "delivered"), None)


def bare(fix: str) -> str:
    """A fix without the lab's restore beside it: the commands alone."""
    return _RESTORE.sub("", fix.strip())


def routes_with_link(
    verdict: Verdict, changed: Network, after: list[Prediction]
) -> tuple[str, str] | None:
    """A fix that gives a link back (up, or its address) and then leaves the path
    without a route in the same node: the kernel removed the routes via a gateway
    on that link with it. (the node, ``ip route add default via`` the station on
    the link's network that forwards), where the node has no default route of the
    family and one station qualifies."""
    stop = _stop(after)
    if stop is None or stop.outcome != "stopped" or stop.code not in ("route.none", "route.back"):
        return None
    node = stop.node or ""
    if not any(o.startswith(f"link:{node}/") for o in verdict.objects):
        return None
    state = changed.state(node)
    dst = next((o.split("/", 1)[1] for o in stop.objects if o.startswith(f"route:{node}/")), "")
    try:
        version = ip_address(dst).version
    except ValueError:
        return None
    if state is None or state.has_default(version):
        return None
    gateway = changed.gateway_for(node, version)
    if gateway is None:
        return None
    six = "-6 " if version == 6 else ""
    return node, f"ip {six}route add default via {gateway}"


def prove(verdict: Verdict, after: list[Prediction] | None) -> tuple[str | None, bool]:
    """(what the prediction says of the verdict's fix, whether to withdraw it).
    ``after``: the prediction with the fix applied (None: it could not be)."""
    if verdict.fix is None or after is None:
        return None, False
    before = _stop(verdict.predicted)
    now = _stop(after)
    if now is None:
        node = after[0].node
        return (
            f"proven on the saved state: with it, the predicted path reaches {node} and back",
            False,
        )
    if before is None or before.outcome != "stopped" or now.outcome != "stopped":
        return None, False
    agrees = before.code == verdict.code and set(before.objects) & set(verdict.objects)
    same = (now.node, now.code, now.objects) == (before.node, before.code, before.objects)
    if agrees and same:
        return (
            f"not printed: `{verdict.fix}` applied to the saved state leaves the predicted "
            f"path stopped where it is ({now.why})"
        ), True
    return (
        f"on the saved state it clears this stop; the prediction then stops in {now.node}: "
        f"{now.why}",
        False,
    )
