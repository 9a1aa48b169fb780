"""A fuzzer over kernel state: `python -m tests.faults.fuzz [--seed N] [--count M] [-v]`.

On a fresh reference lab each time, one mutation of the live state, made with the
plain tools (ip, bridge, sysctl, nft), then the probes a user would run. Every
mutation knows the object it changed; every probe it breaks is scored:

- named: the verdict (where, cause, evidence) names the mutated object;
- honest: the cause is "unknown";
- wrong: it blames something else;
- healed (of the named): the printed fix, run exactly as printed, makes the probe pass.

The catalog is built from the lab's own state (its links, addresses, routes, ARP
entries, bridge ports, nodes that forward), not from a list of known faults; a
seed picks the mutations, so a run is reproducible and a failing seed can become
a corpus entry. Only the reference lab's topology so far. Needs root.
"""

from __future__ import annotations

import argparse
import random
import re
import subprocess
import sys
import uuid
from dataclasses import dataclass
from ipaddress import IPv4Address

from pathtrace.lab import build, topology
from pathtrace.model.options import RunOptions
from pathtrace.model.trace import Verdict
from pathtrace.session import Run
from pathtrace.system import netns, observe

# What a user runs on the lab: out through the NAT, across the bridge, in through the DNAT.
PROBES = (
    ("ping", "8.8.8.8", 0, "container1"),
    ("ping", "192.168.100.3", 0, "container1"),
    ("tcp", "198.51.100.2", 8080, "wan"),
)


@dataclass(frozen=True)
class Mutation:
    kind: str  # link, address, route, sysctl, neigh, bridge, nf
    node: str
    command: str  # run in the node's namespace (sh)
    names: tuple[str, ...]  # what a verdict naming the object says: all of them
    # Other ways to name it, each complete (an address removed: by the address, which
    # nothing holds any more, or by the node and the link it was on).
    or_names: tuple[tuple[str, ...], ...] = ()

    @property
    def label(self) -> str:
        return f"{self.kind} {self.node}: {self.command}"


@dataclass(frozen=True)
class Scored:
    mutation: Mutation
    probe: tuple[str, str, int, str]
    verdict: Verdict
    mark: str  # named, honest, wrong
    healed: bool | None  # None: not named, or no command to run


def catalog(lab: topology.Topology) -> list[Mutation]:
    """Single mutations of the lab as it is: each link, address, route, neighbour,
    bridge port and forwarding switch, and a drop in each netfilter hook."""
    found: list[Mutation] = []
    for node in lab.nodes:
        state = observe.state(lab.namespace(node), node)
        for link in state.links:
            if link.kind == "loopback":
                continue
            found.append(Mutation("link", node, f"ip link set {link.name} down", (link.name,)))
            if link.kind != "bridge":
                found.append(
                    Mutation("link", node, f"ip link set dev {link.name} arp off", (link.name,))
                )
            if link.port is not None:
                found.append(
                    Mutation(
                        "bridge",
                        node,
                        f"bridge link set dev {link.name} state 0",
                        (link.name,),
                    )
                )
            for address in link.addresses:
                if ":" in address:
                    continue
                found.append(
                    Mutation(
                        "address",
                        node,
                        f"ip addr del {address} dev {link.name}",
                        (link.name,),
                        or_names=((address.split("/")[0],),),
                    )
                )
        for route in state.routes:
            if (
                route.family == 4
                and route.table == 254
                and (route.gateway or route.dst == "default")
            ):
                found.append(Mutation("route", node, f"ip route del {route.dst}", (route.dst,)))
        for entry in state.neighbour_entries():
            if entry.lladdr and ":" not in entry.dst:
                found.append(
                    Mutation(
                        "neigh",
                        node,
                        f"ip neigh replace {entry.dst} lladdr 02:00:00:00:00:77 "
                        f"dev {entry.dev} nud permanent",
                        ("02:00:00:00:00:77",),
                    )
                )
        if state.sysctls.get("net.ipv4.ip_forward") == "1":
            found.append(
                Mutation("sysctl", node, "sysctl -qw net.ipv4.ip_forward=0", ("ip_forward",))
            )
        for hook in ("prerouting", "input", "forward", "output", "postrouting"):
            found.append(
                Mutation(
                    "nf",
                    node,
                    f"nft add table ip fz && nft add chain ip fz {hook} "
                    f"'{{ type filter hook {hook} priority 0; }}' && "
                    f"nft add rule ip fz {hook} counter drop",
                    ("fz", hook),
                )
            )
    return found


def _run(lab: topology.Topology, text: str, probe: tuple[str, str, int, str]) -> Verdict:
    kind, target, port, source = probe
    options = RunOptions(
        kind,  # type: ignore[arg-type]
        IPv4Address(target),
        port,
        source=source,
        count=1,
        timeout=1.0,
    )
    return Run(options, lab, topology_text=text).execute().probes[0].verdict


def _named(verdict: Verdict, mutation: Mutation) -> str:
    text = " ".join([verdict.where or "", verdict.cause or "", *verdict.evidence])
    ways = [(mutation.node, *mutation.names), *mutation.or_names]
    if any(all(name.lower() in text.lower() for name in way) for way in ways):
        return "named"
    if (verdict.cause or "").lower().startswith("unknown") or verdict.cause is None:
        return "honest"
    return "wrong"


# The command a fix starts with, as printed: "ip netns exec NS ..." up to the first
# ", " or " (or `" that begins prose.
_COMMAND = re.compile(r"^(ip netns exec \S+ [^,(]+?)(?:,| \(or `|$)")


def fuzz(seed: int, count: int, verbose: bool = False) -> list[Scored]:
    rng = random.Random(seed)
    prefix = f"ptz{uuid.uuid4().hex[:5]}-"
    text = topology.reference_text().replace('prefix = "pt-"', f'prefix = "{prefix}"', 1)
    lab = topology.parse(text)
    build.up(lab, text)
    try:
        mutations = catalog(lab)
    finally:
        build.down(None, prefix=prefix)
    chosen = rng.sample(mutations, min(count, len(mutations)))
    scored: list[Scored] = []
    for mutation in chosen:
        build.up(lab, text)
        try:
            netns.run(lab.namespace(mutation.node), ["sh", "-ec", mutation.command])
            for probe in PROBES:
                verdict = _run(lab, text, probe)
                if verdict.outcome in ("answered", "delivered"):
                    continue
                mark = _named(verdict, mutation)
                healed: bool | None = None
                command = _COMMAND.match(verdict.fix or "")
                if mark == "named" and command is not None:
                    subprocess.run(["sh", "-c", command.group(1)], capture_output=True, timeout=20)
                    healed = _run(lab, text, probe).outcome in ("answered", "delivered")
                    build.up(lab, text)  # converge back, and make the mutation again
                    netns.run(lab.namespace(mutation.node), ["sh", "-ec", mutation.command])
                elif mark == "named":
                    healed = False
                scored.append(Scored(mutation, probe, verdict, mark, healed))
                if verbose:
                    print(
                        f"{mark:6} healed={healed} | {mutation.label} | {probe[0]} {probe[1]} "
                        f"from {probe[3]}\n  {verdict.outcome} {verdict.where}: {verdict.cause}"
                        f"\n  fix: {verdict.fix}",
                        file=sys.stderr,
                    )
        finally:
            build.down(None, prefix=prefix)
    return scored


def summary(scored: list[Scored]) -> str:
    total = len(scored)
    marks = {m: sum(s.mark == m for s in scored) for m in ("named", "honest", "wrong")}
    named = [s for s in scored if s.mark == "named"]
    healed = sum(bool(s.healed) for s in named)
    kinds = sorted({s.mutation.kind for s in scored})
    lines = [f"{'kind':8} {'broken':>6} {'named':>6} {'honest':>6} {'wrong':>6} {'healed':>6}"]
    for kind in kinds:
        these = [s for s in scored if s.mutation.kind == kind]
        lines.append(
            f"{kind:8} {len(these):6} {sum(s.mark == 'named' for s in these):6} "
            f"{sum(s.mark == 'honest' for s in these):6} {sum(s.mark == 'wrong' for s in these):6} "
            f"{sum(bool(s.healed) for s in these):6}"
        )
    lines.append(
        f"{'total':8} {total:6} {marks['named']:6} {marks['honest']:6} {marks['wrong']:6} "
        f"{healed:6}   (named {marks['named'] / max(total, 1):.0%}, "
        f"healed {healed / max(len(named), 1):.0%} of named)"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.faults.fuzz")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--count", type=int, default=20, help="mutations to make")
    parser.add_argument("-v", "--verbose", action="store_true", help="each broken probe")
    args = parser.parse_args(argv)
    scored = fuzz(args.seed, args.count, args.verbose)
    print(f"seed {args.seed}, {args.count} mutations of the reference lab:")
    print(summary(scored))
    return 1 if any(s.mark == "wrong" for s in scored) else 0


if __name__ == "__main__":
    sys.exit(main())
