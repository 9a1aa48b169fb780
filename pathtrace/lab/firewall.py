"""A node's firewall as nftables rules: written from the description, read back live.

Each rule carries its name as its nft comment; that is how status finds it and
how reports cite it (with its handle and the text nft prints for it).
"""

from __future__ import annotations

from pathtrace.errors import EnvironmentProblem
from pathtrace.lab.topology import CHAIN_HOOKS, Node
from pathtrace.model.ruleset import Ruleset, parse_listing
from pathtrace.system import netns, observe

FAMILIES = ("ip", "ip6")


def used_chains(node: Node) -> list[tuple[str, str, str]]:
    """(family, table, chain) of the base chains the node's rules and policies need,
    in hook order (policies are IPv4's)."""
    wanted = {(r.family, r.table, r.chain) for r in node.rules}
    wanted |= {("ip", t, c) for t, c in node.policies}
    return [
        (f, t, c)
        for f in FAMILIES
        for t, chains in CHAIN_HOOKS.items()
        for c in chains
        if (f, t, c) in wanted
    ]


def render(node: Node) -> str:
    """The nft script that makes the node's firewall exactly as described."""
    lines = ["flush ruleset"]
    for family in FAMILIES:
        for table in CHAIN_HOOKS:
            chains = [c for f, t, c in used_chains(node) if (f, t) == (family, table)]
            if not chains:
                continue
            lines.append(f"table {family} {table} {{")
            for chain in chains:
                hook, priority = CHAIN_HOOKS[table][chain]
                kind = "nat" if table == "nat" else "filter"
                policy = node.policies.get((table, chain), "accept") if family == "ip" else "accept"
                lines.append(f"  chain {chain} {{")
                lines.append(f"    type {kind} hook {hook} priority {priority}; policy {policy};")
                for rule in node.rules:
                    if (rule.family, rule.table, rule.chain) == (family, table, chain):
                        lines.append(f'    {rule.text} comment "{rule.name}"')
                lines.append("  }")
            lines.append("}")
    return "\n".join(lines) + "\n"


def apply(namespace: str, script: str) -> None:
    netns.require_not_host(namespace)  # the lab's rules never go into the host
    result = netns.run(namespace, ["nft", "-f", "-"], input=script, check=False)
    if result.returncode != 0:
        raise EnvironmentProblem(
            f"nft refused the rules for {namespace}: {result.stderr.strip().splitlines()[0]}"
        )


def read(namespace: str) -> Ruleset:
    return parse_listing(observe.ruleset(namespace, strict=True))
