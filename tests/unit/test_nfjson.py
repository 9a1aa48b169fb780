"""The ruleset read as nft's JSON, and rules evaluated from their expressions.

A real ruleset loaded into a namespace of a scratch host, read as pathtrace reads
it (``observe.ruleset_both``), then evaluated for packets: from the JSON, and
from nft's words for the same rules; both must agree wherever the words are
understood, and the JSON must also read what the words cannot (named sets).
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

import pytest

from pathtrace.analyze import nfmatch
from pathtrace.model.ruleset import parse_listing, same_rules
from tests import scratch

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="namespaces need root")

RULESET = """
table inet t {
  set web { type ipv4_addr; flags interval; elements = { 10.0.0.1, 10.2.0.0/24 } ; }
  chain f1 { type filter hook forward priority filter - 5; policy drop;
    ct state established,related accept
    iifname "veth*" oifname != "eth0" ip saddr @web tcp dport { 80, 443 } accept comment "web"
    ip daddr 10.1.0.0/16 meta mark set 0x10 jump c2
    ip6 daddr fd00::/64 icmpv6 type echo-request reject with icmpv6 type admin-prohibited
    udp sport 1000-2000 ip saddr != 10.0.0.0/8 drop
    meta l4proto { tcp, udp } th dport 53 accept
    icmp type echo-request limit rate 1/second accept
  }
  chain c2 { ip ttl set 1 return; }
  chain m1 { type nat hook postrouting priority 101; meta mark & 0x2000 == 0x2000 masquerade; }
  chain p1 { type nat hook prerouting priority dstnat; tcp dport 8080 dnat ip to 192.168.1.2:80; }
  chain p2 { type nat hook postrouting priority srcnat; oifname "eth0" masquerade; }
  chain r1 { type filter hook prerouting priority raw; ip saddr 1.1.1.1 notrack; }
}
"""

_READ = """
import json, subprocess
from pathtrace.system import observe
subprocess.run(["ip", "netns", "add", "t1"], check=True)
subprocess.run(["ip", "netns", "exec", "t1", "nft", "-f", "-"], input=%r, text=True, check=True)
# iptables-nft's own: a target and a comment match that the JSON shows as "xt"
subprocess.run(["ip", "netns", "exec", "t1", "iptables", "-t", "nat", "-A", "POSTROUTING",
                "-s", "10.9.0.0/16", "-m", "comment", "--comment", "x", "-j", "MASQUERADE"],
               check=True)
words, objects = observe.ruleset_both("t1")
print(json.dumps([words, objects]))
"""


@pytest.fixture(scope="module")
def listing() -> tuple[str, list[dict[str, Any]]]:
    words, objects = scratch.result(_READ % RULESET)
    return words, objects


P = nfmatch.Packet


def _packets() -> list[nfmatch.Packet]:
    return [
        P(4, "10.0.0.1", "8.8.8.8", "tcp", 1234, 80, iif="veth1", oif="eth1"),
        P(4, "10.2.0.9", "8.8.8.8", "tcp", 1234, 443, iif="veth1", oif="eth1"),
        P(4, "10.3.0.9", "8.8.8.8", "tcp", 1234, 443, iif="veth1", oif="eth1"),
        P(4, "10.0.0.1", "8.8.8.8", "tcp", 1234, 80, iif="veth1", oif="eth0"),
        P(4, "10.0.0.1", "8.8.8.8", "udp", 1500, 53, iif="eth9", oif="eth1"),
        P(4, "192.0.2.1", "10.1.2.3", "udp", 1500, 99),
        P(4, "192.0.2.1", "10.1.2.3", "icmp", icmp_type=8, ct="established"),
        P(6, "fd00::9", "fd00::2", "icmpv6", icmp_type=128),
        P(6, "fd00::9", "fd00::2", "icmpv6", icmp_type=129),
        P(4, "1.1.1.1", "2.2.2.2", "tcp", 5, 8080),
    ]


def test_the_two_listings_hold_the_same_rules(listing: tuple[str, list[dict[str, Any]]]) -> None:
    words, objects = listing
    assert objects, "nft -j gave nothing"
    assert same_rules(words, objects)
    rules = parse_listing(words, "", objects)
    # Every rule has its expressions but the one iptables-nft made (read from words).
    assert [r.table for r in rules.rules if not r.expr] == ["nat"]
    f1 = next(c for c in rules.chains if c.name == "f1")
    assert (f1.hook, f1.priority, f1.policy, f1.type) == ("forward", -5, "drop", "filter")
    assert rules.sets[("inet", "t", "web")]


def test_json_and_words_agree_where_the_words_are_read(
    listing: tuple[str, list[dict[str, Any]]],
) -> None:
    words, objects = listing
    both = parse_listing(words, "", objects)
    compared = 0
    for rule in both.rules:
        for packet in _packets():
            by_json, does = nfmatch.evaluate_rule(rule, packet, both)
            by_words, said = nfmatch.evaluate(rule.text, packet)
            if by_words is not None:
                assert by_json == by_words, (rule.text, packet)
                compared += 1
            assert does == said or "limit" in rule.text, rule.text
    assert compared > 40


def test_named_sets_are_read_from_the_json(listing: tuple[str, list[dict[str, Any]]]) -> None:
    words, objects = listing
    rules = parse_listing(words, "", objects)
    web = next(r for r in rules.rules if r.comment == "web")
    inside, outside = _packets()[1], _packets()[2]
    assert nfmatch.evaluate(web.text, inside)[0] is None  # the words cannot say
    assert nfmatch.evaluate_rule(web, inside, rules)[0] is True
    assert nfmatch.evaluate_rule(web, outside, rules)[0] is False


def test_statements_from_the_json(listing: tuple[str, list[dict[str, Any]]]) -> None:
    words, objects = listing
    rules = {r.chain + str(i): r for i, r in enumerate(parse_listing(words, "", objects).rules)}
    said = {key: nfmatch.statement(rule) for key, rule in rules.items()}
    dnat = next(s for s in said.values() if s.nat == "dnat")
    assert (dnat.target, dnat.port, dnat.verdict) == ("192.168.1.2", 80, "accept")
    assert any(s.mark == 0x10 and s.verdict == "jump" and s.target == "c2" for s in said.values())
    assert any(s.ttl == 1 and s.verdict == "return" for s in said.values())
    assert any(s.notrack for s in said.values())
    assert any(s.nat == "masquerade" for s in said.values())
    limited = next(r for r in rules.values() if "limit" in r.text)
    # A rate limit decides per packet: never a certain match.
    assert nfmatch.evaluate_rule(limited, _packets()[6])[0] is None


def test_a_masked_mark_is_read(listing: tuple[str, list[dict[str, Any]]]) -> None:
    words, objects = listing
    rules = parse_listing(words, "", objects)
    (masked,) = [r for r in rules.rules if r.chain == "m1"]
    packet = _packets()[0]
    assert nfmatch.evaluate_rule(masked, replace(packet, mark=0x2001), rules)[0] is True
    assert nfmatch.evaluate_rule(masked, replace(packet, mark=0x1000), rules)[0] is False


def test_an_iptables_target_is_read_from_the_words(
    listing: tuple[str, list[dict[str, Any]]],
) -> None:
    """iptables-nft's MASQUERADE is an opaque "xt" object in nft's JSON; nft's words
    (libxtables' translation) say masquerade: the rule is read from them."""
    words, objects = listing
    rules = parse_listing(words, "", objects)
    (masq,) = [r for r in rules.rules if r.table == "nat" and r.family == "ip"]
    assert not masq.expr and "masquerade" in masq.text
    said = nfmatch.evaluate_rule(masq, P(4, "10.9.1.1", "8.8.8.8", "icmp", icmp_type=8), rules)
    assert said[0] is True and said[1].nat == "masquerade"
