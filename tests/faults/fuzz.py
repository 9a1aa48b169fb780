"""A fuzzer over kernel state: `python -m tests.faults.fuzz [--seed N] [--count M] [-v]`.

On a fresh network each time, one mutation of the live state, made with the
plain tools (ip, bridge, sysctl, nft), then the probes a user would run. Every
mutation knows the object it changed; every probe it breaks is scored:

- named: the verdict's objects (model.cause references) name the mutated object;
- honest: the cause's code is "unknown";
- wrong: it blames something else;
- healed (of the named): the printed fix, run exactly as printed, makes the probe pass.

The catalog is built from the lab's own state (its links, addresses, routes, ARP
entries, bridge ports, nodes that forward), not from a list of known faults; a
seed picks the mutations, so a run is reproducible and a failing seed can become
a corpus entry. Topologies pathtrace builds: the reference lab, and a routed path
(routed.toml: two routers, no NAT, no bridge); networks other software builds, each
in a scratch host (foreign.py): the tutorial's script, the CNI plugins, flannel's
VXLAN overlay. Needs root.
"""

from __future__ import annotations

import argparse
import random
import re
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import ip_address, ip_network
from pathlib import Path

from pathtrace.lab import build, topology
from pathtrace.model.cause import parse_ref
from pathtrace.model.options import RunOptions
from pathtrace.model.trace import Verdict
from pathtrace.session import Run
from pathtrace.system import netns
from tests.faults.foreign import NETWORKS, Foreign, Probe
from tests.faults.mutations import Mutation, catalog, catalog6

# Per topology: its description, and what a user runs on it. The lab: out through
# the NAT, across the bridge, in through the DNAT. Routed: across two routers, both
# ways, and a TCP connection.
TOPOLOGIES: dict[str, tuple[Callable[[], str], tuple[Probe, ...]]] = {
    "lab": (
        topology.reference_text,
        (
            ("ping", "8.8.8.8", 0, "container1"),
            ("ping", "192.168.100.3", 0, "container1"),
            ("tcp", "198.51.100.2", 8080, "wan"),
        ),
    ),
    # The same lab over IPv6: out through the NAT66, across the bridge, in through
    # the DNAT to [fd00:100::2]:80 (its catalog: IPv6's own mutations).
    "lab6": (
        topology.reference_text,
        (
            ("ping", "2001:4860:4860::8888", 0, "container1"),
            ("ping", "fd00:100::3", 0, "container1"),
            ("tcp", "2001:db8::2", 8080, "wan"),
        ),
    ),
    "routed": (
        lambda: (Path(__file__).parent / "routed.toml").read_text(),
        (
            ("ping", "10.2.0.2", 0, "client"),
            ("tcp", "10.2.0.2", 80, "client"),
            ("ping", "10.1.0.2", 0, "server"),
        ),
    ),
}


@dataclass(frozen=True)
class Scored:
    mutation: Mutation
    probe: tuple[str, str, int, str]
    verdict: Verdict
    mark: str  # named, honest, wrong
    healed: bool | None  # None: not named, or no command to run
    # The printed fix's proof on the saved state (verdict.proof), and for a fix the
    # proof withdrew, whether running it anyway healed (it must not have).
    proof: str = "none"  # proven, withdrawn, clears, none
    withdrawn_healed: bool | None = None


def _run(lab: topology.Topology, text: str, probe: tuple[str, str, int, str]) -> Verdict:
    kind, target, port, source = probe
    options = RunOptions(
        kind,  # type: ignore[arg-type]
        ip_address(target),
        port,
        source=source,
        count=1,
        timeout=1.0,
    )
    return Run(options, lab, topology_text=text).execute().probes[0].verdict


def same_object(said: str, changed: str) -> bool:
    """A verdict's object reference names the changed one: the same kind and node, and
    the same name, where a route is named by any address or network it covers, an
    address with or without its prefix, and a chain by any of its rules."""
    kind, node, name = parse_ref(said)
    c_kind, c_node, c_name = parse_ref(changed)
    if (kind, node) != (c_kind, c_node):
        return False
    if kind == "route":
        # "default" is the whole of the family the other side names.
        six = ":" in name or ":" in c_name
        anything = "::/0" if six else "0.0.0.0/0"
        changed_net = ip_network(anything if c_name == "default" else c_name, strict=False)
        said_net = ip_network(anything if name == "default" else name, strict=False)
        return said_net.version == changed_net.version and (
            said_net.subnet_of(changed_net) or changed_net.subnet_of(said_net)  # type: ignore[arg-type]
        )
    if kind == "address":
        return name.split("/")[0] == c_name.split("/")[0]
    if kind == "nf":
        return name == c_name or name.startswith((f"{c_name} handle ", f"{c_name} rule "))
    return name == c_name


def _named(verdict: Verdict, mutation: Mutation) -> str:
    if any(same_object(o, c) for o in verdict.objects for c in mutation.objects):
        return "named"
    if verdict.code in (None, "unknown"):
        return "honest"
    return "wrong"


# The command a fix starts with, as printed: a tool (after "ip netns exec NS " or
# "nsenter ... -n " for another namespace; bare in the host's own) up to the first
# ", " or " (or `" that begins prose. A fix in prose alone is not run.
_COMMAND = re.compile(
    r"^((?:ip netns exec \S+ |nsenter (?:-t \d+ -n|--net=\S+) )?"
    r"(?:ip|sysctl|bridge|nft|tc|iptables|iptables-legacy) [^,(]+?)(?:,| \(or `|$)"
)


class Built:
    """A topology pathtrace's lab builds, afresh for each trial (a prefix of its own)."""

    def __init__(self, name: str) -> None:
        describe, self.probes = TOPOLOGIES[name]
        self.name = name
        self.prefix = f"ptz{uuid.uuid4().hex[:5]}-"
        self.text = describe().replace('prefix = "pt-"', f'prefix = "{self.prefix}"', 1)
        self.lab = topology.parse(self.text)
        # Each build gives veths new MACs: a fix naming a MAC of the build its verdict
        # came from is replayed with the same device's MAC in the new build.
        self._macs: dict[str, tuple[str, str]] = {}

    def _read_macs(self) -> dict[str, tuple[str, str]]:
        found = {}
        for node in self.lab.nodes:
            out = netns.run(self.lab.namespace(node), ["ip", "-br", "link"], check=False).stdout
            for line in out.splitlines():
                words = line.split()
                if len(words) >= 3 and words[2].count(":") == 5:
                    found[words[2].lower()] = (node, words[0].split("@")[0])
        return found

    def _same_devices(self, fix: str) -> str:
        now = {where: mac for mac, where in self._read_macs().items()}
        for mac, where in self._macs.items():
            if where in now and mac in fix.lower():
                fix = re.sub(re.escape(mac), now[where], fix, flags=re.IGNORECASE)
        return fix

    def catalog(self) -> list[Mutation]:
        build.up(self.lab, self.text)
        try:
            nodes = {node: self.lab.namespace(node) for node in self.lab.nodes}
            return catalog6(nodes) if self.name == "lab6" else catalog(nodes)
        finally:
            build.down(None, prefix=self.prefix)

    def trial(
        self, mutation: Mutation, fix: str | None = None, probes: tuple[Probe, ...] | None = None
    ) -> list[Verdict] | str:
        build.down(None, prefix=self.prefix)  # fresh: converging leaves what a mutation added
        build.up(self.lab, self.text)
        try:
            made = netns.run(
                self.lab.namespace(mutation.node), ["sh", "-ec", mutation.command], check=False
            )
            if made.returncode != 0:
                return made.stderr.strip() or f"exit {made.returncode}"
            if fix:
                subprocess.run(
                    ["sh", "-c", self._same_devices(fix)], capture_output=True, timeout=20
                )
            else:
                self._macs = self._read_macs()
            return [_run(self.lab, self.text, probe) for probe in probes or self.probes]
        finally:
            build.down(None, prefix=self.prefix)


def fuzz(
    seed: int, count: int, verbose: bool = False, on: str = "lab", only: str = ""
) -> list[Scored]:
    """``only``: mutations whose label holds this text (to reproduce one)."""
    rng = random.Random(seed)
    network: Built | Foreign = Foreign(on) if on in NETWORKS else Built(on)
    mutations = [m for m in network.catalog() if only in m.label]
    chosen = rng.sample(mutations, min(count, len(mutations)))
    scored: list[Scored] = []
    for mutation in chosen:
        verdicts = network.trial(mutation)
        if isinstance(verdicts, str):  # this kernel or these tools cannot make it: said
            print(f"not made: {mutation.label}: {verdicts}", file=sys.stderr)
            continue
        for probe, verdict in zip(network.probes, verdicts, strict=True):
            if verdict.outcome in ("answered", "delivered"):
                continue
            mark = _named(verdict, mutation)
            healed: bool | None = None
            command = _COMMAND.match(verdict.fix or "")
            if mark == "named" and command is not None:
                again = network.trial(mutation, command.group(1), (probe,))
                healed = not isinstance(again, str) and again[0].outcome in (
                    "answered",
                    "delivered",
                )
            elif mark == "named":
                healed = False
            proof, withdrawn_healed = _proof(verdict), None
            withdrawn = _WITHDRAWN.search(verdict.proof or "") if proof == "withdrawn" else None
            if withdrawn is not None and _COMMAND.match(withdrawn.group(1)):
                again = network.trial(mutation, withdrawn.group(1), (probe,))
                withdrawn_healed = not isinstance(again, str) and again[0].outcome in (
                    "answered",
                    "delivered",
                )
            scored.append(Scored(mutation, probe, verdict, mark, healed, proof, withdrawn_healed))
            if verbose:
                print(
                    f"{mark:6} healed={healed} | {mutation.label} | {probe[0]} {probe[1]} "
                    f"from {probe[3]}\n  {verdict.outcome} {verdict.where}: {verdict.cause}"
                    f"\n  code: {verdict.code} {verdict.objects}"
                    f"\n  fix: {verdict.fix}\n  proof: {verdict.proof}"
                    + "".join(f"\n  predicted {p.describe()}" for p in verdict.predicted),
                    file=sys.stderr,
                )
    return scored


_WITHDRAWN = re.compile(r"^not printed: `(.*?)` applied to the saved state")


def _proof(verdict: Verdict) -> str:
    said = verdict.proof or ""
    for word, mark in (
        ("proven", "proven"),
        ("not printed", "withdrawn"),
        ("on the saved", "clears"),
    ):
        if said.startswith(word):
            return mark
    return "none"


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
    proven = [s for s in scored if s.proof == "proven" and s.healed is not None]
    withdrawn = [s for s in scored if s.proof == "withdrawn"]
    lines.append(
        f"fixes on the saved state: {len(proven)} proven ({sum(bool(s.healed) for s in proven)} "
        f"healed when run), {len(withdrawn)} withdrawn "
        f"({sum(bool(s.withdrawn_healed) for s in withdrawn)} would have healed), "
        f"{sum(s.proof == 'clears' for s in scored)} clear the stop only, "
        f"{sum(s.proof == 'none' and s.verdict.fix is not None for s in scored)} not modelled"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.faults.fuzz")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--count", type=int, default=20, help="mutations to make")
    parser.add_argument("-v", "--verbose", action="store_true", help="each broken probe")
    parser.add_argument("--topology", choices=sorted({*TOPOLOGIES, *NETWORKS}), default="lab")
    parser.add_argument("--only", default="", metavar="TEXT", help="mutations whose label has it")
    args = parser.parse_args(argv)
    scored = fuzz(args.seed, args.count, args.verbose, args.topology, args.only)
    print(f"seed {args.seed}, {args.count} mutations of the {args.topology} topology:")
    print(summary(scored))
    return 1 if any(s.mark == "wrong" for s in scored) else 0


if __name__ == "__main__":
    sys.exit(main())
