"""The topology parser: the reference, and one clear error per kind of bad file."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface

import pytest

from pathtrace.errors import TopologyError
from pathtrace.lab import firewall, topology


def test_reference_is_the_seed_topology() -> None:
    topo = topology.load()
    assert topo.prefix == "pt-"
    assert set(topo.nodes) == {"container1", "container2", "host", "wan"}
    c1 = topo.nodes["container1"].interfaces["veth-cont1"]
    # Dual-stack: the ULA beside the tutorial's IPv4.
    assert c1.addresses == (IPv4Interface("192.168.100.2/24"), IPv6Interface("fd00:100::2/64"))
    assert c1.peer == ("host", "veth-host1")
    assert {r.version for r in topo.nodes["container1"].routes} == {4, 6}
    host = topo.nodes["host"]
    assert host.interfaces["veth-host1"].peer == ("container1", "veth-cont1")  # filled in
    assert host.interfaces["veth-host2"].master == "br0"
    assert host.sysctls == {"net.ipv4.ip_forward": "1", "net.ipv6.conf.all.forwarding": "1"}
    assert [(r.family, r.name) for r in host.rules] == [
        ("ip", "masquerade"),
        ("ip", "dnat-8080"),
        ("ip", "forward-dnat-8080"),
        ("ip6", "masquerade6"),
        ("ip6", "dnat6-8080"),
    ]
    wan = topo.nodes["wan"]
    assert {a.ip for a in wan.interfaces["lo"].addresses} == {
        IPv4Address("8.8.8.8"),
        IPv4Address("1.1.1.1"),
        IPv6Address("2001:4860:4860::8888"),
        IPv6Address("2606:4700:4700::1111"),
    }
    assert wan.routes == ()  # no way back to 192.168.100.0/24 without NAT
    assert len(topo.veth_pairs()) == 3


def test_firewall_script_has_named_rules_at_nat_priorities() -> None:
    script = firewall.render(topology.load().nodes["host"])
    assert script.startswith("flush ruleset\n")
    assert "type nat hook postrouting priority 100; policy accept;" in script
    assert "type nat hook prerouting priority -100; policy accept;" in script
    assert 'masquerade comment "masquerade"' in script


def test_parse_listing_reads_rules_with_handles() -> None:
    listing = """table ip nat { # handle 1
	chain POSTROUTING { # handle 2
		type nat hook postrouting priority srcnat; policy accept;
		ip saddr 192.168.100.0/24 oifname "eth0" masquerade comment "masquerade" # handle 4
		counter packets 0 bytes 0 # handle 5
	}
}
"""
    rules = firewall.parse_listing(listing)
    assert rules.chain("nat", "POSTROUTING") is not None
    assert rules.chain("nat", "POSTROUTING").policy == "accept"  # type: ignore[union-attr]
    named = rules.rule_named("nat", "POSTROUTING", "masquerade")
    assert named is not None and named.handle == 4
    assert named.text == 'ip saddr 192.168.100.0/24 oifname "eth0" masquerade'
    assert rules.rules[1].comment is None


BAD_FILES = [
    ("prefix = 3\n[nodes.a]\n", "prefix"),
    ('prefix = ""\n[nodes.a]\n', "prefix"),
    ("[nodes]\n", "nodes"),
    ("[nodes.a]\ncolour = 1\n", "nodes.a.colour"),
    ("[nodes.a.interfaces.x]\npeer = 'b:y'\n", "nodes.a.interfaces.x.peer"),
    ("[nodes.a.interfaces.x]\n", "nodes.a.interfaces.x"),
    (
        "[nodes.a.interfaces.x]\npeer='b:y'\naddresses=['10.0.0.1']\n[nodes.b]\n",
        "nodes.a.interfaces.x.addresses[0]",
    ),
    (
        "[nodes.a.interfaces.x]\npeer='b:y'\naddresses=['10.0.0.1/24']\n"
        "[nodes.b.interfaces.y]\naddresses=['10.0.0.1/24']\n",
        "address clash",
    ),
    (
        "[nodes.a.interfaces.x]\npeer='b:y'\n[nodes.b.interfaces.y]\npeer='a:z'\n",
        "nodes.a.interfaces.x.peer",
    ),
    (
        "[nodes.a.interfaces.x]\npeer='b:y'\nmaster='br9'\n[nodes.b]\n",
        "nodes.a.interfaces.x.master",
    ),
    ("[nodes.a]\nroutes=[{to='default', via='10.1.1.1'}]\n", "nodes.a.routes[0].via"),
    ("[nodes.a]\nroutes=[{to='default'}]\n", "nodes.a.routes[0]"),
    ("[nodes.a]\nsysctls={'kernel.panic'='1'}\n", "nodes.a.sysctls.kernel.panic"),
    ("[[nodes.a.rules]]\nname='r'\nchain='nat FORWARD'\nrule='accept'\n", "nodes.a.rules[0].chain"),
    (
        "[[nodes.a.rules]]\nname='r'\nchain='filter FORWARD'\nrule='accept'\n"
        "[[nodes.a.rules]]\nname='r'\nchain='filter INPUT'\nrule='accept'\n",
        "nodes.a.rules[1].name",
    ),
    (
        "[nodes.a.interfaces.averyveryverylongname]\nkind='bridge'\n",
        "nodes.a.interfaces.averyveryverylongname",
    ),
    ("[nodes.a.interfaces.lo]\naddresses=['1.1.1.1/32']\n", "nodes.a.interfaces.lo.kind"),
    ("this is not toml", "not valid TOML"),
]


@pytest.mark.parametrize(("text", "field"), BAD_FILES)
def test_bad_topology_names_the_field(text: str, field: str) -> None:
    with pytest.raises(TopologyError) as caught:
        topology.parse(text, source="bad.toml")
    message = str(caught.value)
    assert message.startswith("bad.toml: ")
    assert field in message
    assert "\n" not in message


def test_missing_file_is_a_topology_error(tmp_path: object) -> None:
    with pytest.raises(TopologyError, match="cannot read it"):
        topology.load("/nonexistent/lab.toml")


def test_rules_are_found_by_hook_whatever_the_chain_is_called() -> None:
    listing = """table ip nat { # handle 1
	chain post { # handle 1
		type nat hook postrouting priority srcnat; policy accept;
		oifname "out0" masquerade # handle 2
	}
}
table ip filter { # handle 2
	chain fwd { # handle 1
		type filter hook forward priority filter; policy drop;
		ct state established accept # handle 3
	}
}
"""
    rules = firewall.parse_listing(listing)
    assert [r.text for r in rules.rules_at("POSTROUTING")] == ['oifname "out0" masquerade']
    assert rules.rules_at("PREROUTING") == []
    assert rules.policy_at("FORWARD") == "drop"
    assert rules.policy_at("POSTROUTING") == "accept"


def test_the_responder_repeats_the_tag_magic_exactly() -> None:
    from pathtrace.lab import responder
    from pathtrace.model import tag

    assert (responder.MAGIC, responder.MAGIC_REPLY) == (tag.MAGIC, tag.MAGIC_REPLY)
