"""The fault corpus: ways a packet dies on the reference lab, each made with plain tools.

Every fault is a few `ip`, `bridge`, `nft`, `iptables`, `tc` or `sysctl`
commands run in the lab's namespaces (never `pathtrace lab break`), a probe,
and the verdict a careful engineer would give: where it stopped, why, and the
command that mends it. Expected causes and fixes are lists of words that must
all appear; places are exact. The Judge never sees a fault's name.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# In a fault's commands, @NODE is that node's namespace (`ip -n @host ...`).
C1_MAC = "02:00:00:00:c1:01"  # container1's veth-cont1, set by faults that need it known
C2_MAC = "02:00:00:00:c2:01"


@dataclass(frozen=True)
class Probe:
    kind: str = "ping"
    target: str = "8.8.8.8"
    port: int = 0
    source: str = "container1"
    size: int = 56
    dont_fragment: bool = False


@dataclass(frozen=True)
class Fault:
    name: str
    layer: str
    made: tuple[tuple[str, str], ...]  # (node, shell command run in its namespace)
    probe: Probe
    place: str  # the verdict's `where`, exactly
    cause: tuple[str, ...]  # words the cause must contain
    fix: tuple[str, ...]  # words the fix must contain
    outcome: str = "dropped"
    # A process the fault needs (node, argv): started before the probe, ended after.
    runs: tuple[tuple[str, tuple[str, ...]], ...] = field(default=())


def _nft(script: str) -> str:
    """An nft table written on one line; nft wants the rule's end on a line of its own."""
    body = script.replace("; } }", "\n}\n}")
    return f"nft -f - <<'EOF'\n{body}\nEOF"


LISTEN_LOCALHOST = (
    "container1",
    (
        "python3",
        "-c",
        "import socket,time;s=socket.socket();s.setsockopt(1,2,1);"
        "s.bind(('127.0.0.1',9000));s.listen();time.sleep(120)",
    ),
)

FAULTS: list[Fault] = [
    # ---- the ten `lab break` scenarios, made by hand ----
    Fault(
        "no-masquerade",
        "netfilter",
        (
            (
                "host",
                "nft delete rule ip nat POSTROUTING handle $(nft -a list chain ip nat "
                "POSTROUTING | awk '/masquerade/ {print $NF}')",
            ),
        ),
        Probe(),
        "wan",
        ("no route back to 192.168.100.2", "nothing translated it"),
        ("masquerade",),
        outcome="lost",
    ),
    Fault(
        "forward-drop",
        "netfilter",
        (("host", "nft add rule ip filter FORWARD ip saddr 192.168.100.0/24 drop"),),
        Probe(),
        "host/br0",
        ("FORWARD", "ip saddr 192.168.100.0/24 drop", "handle"),
        ("nft delete rule ip filter FORWARD handle",),
    ),
    Fault(
        "ip-forward-off",
        "sysctl",
        (("host", "sysctl -qw net.ipv4.ip_forward=0"),),
        Probe(),
        "host/br0",
        ("net.ipv4.ip_forward",),
        ("sysctl -w net.ipv4.ip_forward=1",),
    ),
    Fault(
        "no-default-route",
        "routing",
        (("container1", "ip route del default"),),
        Probe(),
        "container1",
        ("no route to 8.8.8.8", "no default route"),
        ("ip route add default",),
    ),
    Fault(
        "port-down",
        "link",
        (("host", "ip link set veth-host1 down"),),
        Probe(target="192.168.100.3"),
        "container1/veth-cont1",
        ("no carrier", "veth-host1", "down"),
        ("ip link set veth-host1 up",),
        outcome="lost",
    ),
    Fault(
        "dnat-without-forward-accept",
        "netfilter",
        (
            (
                "host",
                "nft delete rule ip filter FORWARD handle $(nft -a list chain ip filter "
                "FORWARD | awk '/tcp dport 80 accept/ {print $NF}')",
            ),
            ("host", "nft add rule ip filter FORWARD ct state established,related accept"),
            ("host", "nft add rule ip filter FORWARD iifname br0 accept"),
            ("host", "nft 'chain ip filter FORWARD { policy drop; }'"),
        ),
        Probe("tcp", "198.51.100.2", 8080, source="wan"),
        "host/eth0",
        ("FORWARD", "policy is drop", "192.168.100.2"),
        ("accept",),
    ),
    Fault(
        "small-mtu-with-df",
        "mtu",
        (("host", "ip link set eth0 mtu 1280"), ("wan", "ip link set eth0 mtu 1280")),
        Probe(size=1400, dont_fragment=True),
        "host",
        ("MTU", "1280", "eth0"),
        ("smaller",),
        outcome="rejected",
    ),
    Fault(
        "ttl-expired",
        "netfilter",
        (
            (
                "host",
                _nft(
                    "table ip t { chain p { type filter hook prerouting priority -150; "
                    "ip saddr 192.168.100.0/24 ip ttl set 1; } }"
                ),
            ),
        ),
        Probe(),
        "host",
        ("TTL", "ip ttl set 1"),
        ("nft delete rule ip t p handle",),
        outcome="rejected",
    ),
    Fault(
        "udp-port-unreachable",
        "delivery",
        (
            (
                "wan",
                _nft(
                    "table ip t { chain i { type filter hook input priority 0; "
                    "udp dport 53 reject with icmp type port-unreachable; } }"
                ),
            ),
        ),
        Probe("udp", "8.8.8.8", 53),
        "wan",
        ("reject", "udp dport 53", "handle"),
        ("nft delete rule ip t i handle",),
        outcome="rejected",
    ),
    Fault(
        "reject-rule",
        "netfilter",
        (
            (
                "host",
                "nft add rule ip filter FORWARD ip daddr 8.8.8.8 reject with icmp type "
                "admin-prohibited",
            ),
        ),
        Probe(),
        "host",
        ("reject", "ip daddr 8.8.8.8", "handle"),
        ("nft delete rule ip filter FORWARD handle",),
        outcome="rejected",
    ),
    # ---- link ----
    Fault(
        "source-link-down",
        "link",
        (("container1", "ip link set veth-cont1 down"),),
        Probe(),
        "container1/veth-cont1",
        ("veth-cont1 is down",),
        ("ip link set veth-cont1 up",),
    ),
    Fault(
        "uplink-peer-down",
        "link",
        (("wan", "ip link set eth0 down"),),
        Probe(),
        "host/eth0",
        ("no carrier", "eth0", "down"),
        ("ip link set eth0 up",),
        outcome="lost",
    ),
    Fault(
        "peer-gone",
        "link",
        (("host", "ip link del veth-host2"),),
        Probe(target="192.168.100.3"),
        "container1/veth-cont1",
        ("ARP", "192.168.100.3", "no answer"),
        ("192.168.100.3",),
        outcome="lost",
    ),
    Fault(
        "bridge-port-peer-down",
        "link",
        (("container2", "ip link set veth-cont2 down"),),
        Probe(target="192.168.100.3"),
        "container1/veth-cont1",
        ("ARP", "192.168.100.3", "veth-host2", "no carrier"),
        ("ip link set veth-cont2 up",),
        outcome="lost",
    ),
    # ---- layer 2 ----
    Fault(
        "wrong-gateway-mac",
        "l2",
        (
            (
                "container1",
                "ip neigh replace 192.168.100.1 lladdr 02:00:00:00:00:99 "
                "dev veth-cont1 nud permanent",
            ),
        ),
        Probe(),
        "host/br0",
        ("02:00:00:00:00:99", "192.168.100.1", "container1"),
        ("ip neigh del 192.168.100.1 dev veth-cont1",),
    ),
    Fault(
        "wrong-container-mac",
        "l2",
        (
            (
                "host",
                "ip neigh replace 192.168.100.2 lladdr 02:00:00:00:00:98 dev br0 nud permanent",
            ),
        ),
        Probe(),
        "host/br0",
        ("02:00:00:00:00:98", "192.168.100.2", "host"),
        ("ip neigh del 192.168.100.2 dev br0",),
    ),
    Fault(
        "arp-ignore",
        "l2",
        (("container2", "sysctl -qw net.ipv4.conf.all.arp_ignore=8"),),
        Probe(target="192.168.100.3"),
        "container1/veth-cont1",
        ("ARP", "192.168.100.3", "arp_ignore"),
        ("arp_ignore=0",),
        outcome="lost",
    ),
    Fault(
        "port-isolated",
        "l2",
        (
            ("host", "bridge link set dev veth-host1 isolated on"),
            ("host", "bridge link set dev veth-host2 isolated on"),
        ),
        Probe(target="192.168.100.3"),
        "container1/veth-cont1",
        ("isolated", "veth-host1", "veth-host2"),
        ("isolated off",),
        outcome="lost",
    ),
    Fault(
        "port-flood-off",
        "l2",
        (
            ("container2", f"ip link set veth-cont2 address {C2_MAC}"),
            ("host", "bridge link set dev veth-host2 learning off flood off"),
            ("host", f"bridge fdb del {C2_MAC} dev veth-host2 master 2>/dev/null || true"),
        ),
        Probe(target="192.168.100.3"),
        "host/br0",
        (C2_MAC, "veth-host2", "learning off", "flood off"),
        ("bridge link set dev veth-host2 learning on flood on",),
    ),
    # ---- routing ----
    Fault(
        "blackhole-route",
        "routing",
        (("host", "ip route add blackhole 8.8.8.8"),),
        Probe(),
        "host/br0",
        ("blackhole", "8.8.8.8"),
        ("ip route del blackhole 8.8.8.8",),
    ),
    Fault(
        "unreachable-route",
        "routing",
        (("host", "ip route add unreachable 8.8.8.8"),),
        Probe(),
        "host",
        ("unreachable 8.8.8.8", "route"),
        ("ip route del unreachable 8.8.8.8",),
        outcome="rejected",
    ),
    Fault(
        "prohibit-route",
        "routing",
        (("host", "ip route add prohibit 8.8.8.8"),),
        Probe(),
        "host",
        ("prohibit 8.8.8.8", "route"),
        ("ip route del prohibit 8.8.8.8",),
        outcome="rejected",
    ),
    Fault(
        "policy-rule-blackhole",
        "routing",
        (("host", "ip rule add from 192.168.100.0/24 iif br0 blackhole pref 100"),),
        Probe(),
        "host/br0",
        ("rule 100", "blackhole"),
        ("ip rule del pref 100",),
    ),
    Fault(
        "policy-rule-wrong-table",
        "routing",
        (
            ("host", "ip route add default via 198.51.100.9 table 100"),
            ("host", "ip rule add from 192.168.100.0/24 lookup 100 pref 100"),
        ),
        Probe(),
        "host/eth0",
        ("rule 100", "table 100", "198.51.100.9", "ARP"),
        ("ip rule del pref 100",),
        outcome="lost",
    ),
    # From the fuzzer (seed 7, cold: 6 of 14 broken probes blamed elsewhere): a mark
    # set by a netfilter rule, and a policy rule that routes marked packets into a
    # table whose only route is a blackhole. The mark is read from the skb.
    Fault(
        "fwmark-rule-forwarded",
        "routing",
        (
            (
                "host",
                _nft(
                    "table ip mk { chain p { type filter hook prerouting priority -150; "
                    "ip saddr 192.168.100.0/24 meta mark set 0x77; } }"
                ),
            ),
            ("host", "ip route add blackhole default table 77"),
            ("host", "ip rule add fwmark 0x77 lookup 77 pref 90"),
        ),
        Probe(),
        "host/br0",
        ("mark 0x77", "mk p", "blackhole"),
        ("ip route del blackhole default table 77",),
    ),
    Fault(
        "fwmark-rule-at-source",
        "routing",
        (
            (
                "container1",
                _nft(
                    "table ip mk { chain o { type route hook output priority -150; "
                    "meta mark set 0x77; } }"
                ),
            ),
            ("container1", "ip route add blackhole default table 77"),
            ("container1", "ip rule add fwmark 0x77 lookup 77 pref 90"),
        ),
        Probe(),
        "container1",
        ("mark 0x77", "mk o", "blackhole", "Invalid argument"),
        ("ip route del blackhole default table 77",),
    ),
    Fault(
        "no-route-back",
        "routing",
        (("wan", "ip route del 198.51.100.0/24 dev eth0"),),
        Probe(),
        "wan",
        ("no route back to 198.51.100.2",),
        ("ip route add 198.51.100.0/24 dev eth0",),
        outcome="lost",
    ),
    Fault(
        "source-address-selection",
        "routing",
        (
            ("container1", "ip address add 10.9.9.9/32 dev veth-cont1"),
            ("container1", "ip route replace default via 192.168.100.1 src 10.9.9.9"),
        ),
        Probe(),
        "wan",
        ("no route back to 10.9.9.9", "src 10.9.9.9"),
        ("ip route replace default via 192.168.100.1",),
        outcome="lost",
    ),
    Fault(
        "rp-filter",
        "routing",
        (
            # container1 knows its gateway's MAC already: rp_filter also silences
            # ARP, and this fault is about the IP packet.
            (
                "container1",
                "ip neigh replace 192.168.100.1 dev veth-cont1 nud permanent "
                "lladdr $(ip -n @host -br link show br0 | awk '{print $3}')",
            ),
            ("host", "ip route add 192.168.100.2/32 via 198.51.100.1"),
            ("host", "sysctl -qw net.ipv4.conf.all.rp_filter=1"),
        ),
        Probe(),
        "host/br0",
        ("rp_filter", "192.168.100.2"),
        ("rp_filter",),
    ),
    # ---- MTU ----
    Fault(
        "veth-mtu-mismatch",
        "mtu",
        (("container1", "ip link set veth-cont1 mtu 9000"),),
        Probe(size=3000),
        "container1/veth-cont1",
        ("9000", "1500", "veth-host1"),
        ("ip link set veth-cont1 mtu 1500",),
    ),
    # From the fuzzer (seed 7, cold): the small end is the bridge port, and the
    # bridge's other ports take 1500: raise it (not lower container1's to 68).
    Fault(
        "bridge-port-mtu-small",
        "mtu",
        (("host", "ip link set veth-host1 mtu 68"),),
        Probe(),
        "container1/veth-cont1",
        ("68", "veth-host1", "veth-host2 mtu 1500"),
        ("ip link set veth-host1 mtu 1500",),
    ),
    # From the fuzzer (seed 7): the source's own link at 68 bytes. The probe, DF
    # clear, is sent in fragments as the kernel would send an application's; the
    # answer comes back whole and container1's veth cannot take it.
    Fault(
        "source-mtu-fragments",
        "mtu",
        (("container1", "ip link set veth-cont1 mtu 68"),),
        Probe(),
        "host/veth-host1",
        ("68", "container1/veth-cont1"),
        ("ip link set veth-cont1 mtu 1500",),
    ),
    Fault(
        "source-mtu-df",
        "mtu",
        (("container1", "ip link set veth-cont1 mtu 1280"),),
        Probe(size=1400, dont_fragment=True),
        "container1",
        ("MTU", "1280"),
        ("smaller",),
    ),
    # ---- netfilter, every table and hook ----
    Fault(
        "container-output-drop",
        "netfilter",
        (
            (
                "container1",
                _nft(
                    "table ip f { chain o { type filter hook output priority 0; "
                    "ip daddr 8.8.8.8 drop; } }"
                ),
            ),
        ),
        Probe(),
        "container1 (OUTPUT, before any device)",
        ("OUTPUT", "ip daddr 8.8.8.8 drop", "handle"),
        ("nft delete rule ip f o handle",),
    ),
    Fault(
        "host-input-drop",
        "netfilter",
        (
            (
                "host",
                _nft(
                    "table ip f { chain i { type filter hook input priority 0; "
                    "ip protocol icmp drop; } }"
                ),
            ),
        ),
        Probe(target="192.168.100.1"),
        "host/br0",
        ("INPUT", "ip protocol icmp drop", "handle"),
        ("nft delete rule ip f i handle",),
    ),
    Fault(
        "wan-raw-prerouting-drop",
        "netfilter",
        (
            (
                "wan",
                _nft(
                    "table ip raw { chain p { type filter hook prerouting priority -300; "
                    "ip saddr 198.51.100.2 drop; } }"
                ),
            ),
        ),
        Probe(),
        "wan/eth0",
        ("PREROUTING", "ip saddr 198.51.100.2 drop", "handle"),
        ("nft delete rule ip raw p handle",),
    ),
    Fault(
        "host-postrouting-drop",
        "netfilter",
        (
            (
                "host",
                _nft(
                    "table ip f { chain p { type filter hook postrouting priority 200; "
                    'oifname "eth0" icmp type echo-request drop; } }'
                ),
            ),
        ),
        Probe(),
        "host/eth0",
        ("POSTROUTING", "drop", "handle"),
        ("nft delete rule ip f p handle",),
    ),
    Fault(
        "ct-new-forward-drop",
        "netfilter",
        (("host", "nft insert rule ip filter FORWARD ct state new iifname br0 drop"),),
        Probe("tcp", "8.8.8.8", 443),
        "host/br0",
        ("FORWARD", "ct state new", "handle"),
        ("nft delete rule ip filter FORWARD handle",),
    ),
    Fault(
        "reply-dropped",
        "netfilter",
        (("host", "nft insert rule ip filter FORWARD ct state established iifname eth0 drop"),),
        Probe(),
        "host/eth0",
        ("FORWARD", "ct state established", "handle"),
        ("nft delete rule ip filter FORWARD handle",),
    ),
    Fault(
        "iptables-in-container",
        "netfilter",
        (("container2", "iptables -A INPUT -p icmp -j DROP"),),
        Probe(target="192.168.100.3"),
        "container2/veth-cont2",
        ("INPUT", "-p icmp -j DROP"),
        ("iptables -t filter -D INPUT -p icmp -j DROP",),
    ),
    Fault(
        "bridge-family-drop",
        "netfilter",
        (
            (
                "host",
                _nft(
                    "table bridge f { chain fw { type filter hook forward priority 0; "
                    "ip daddr 192.168.100.3 drop; } }"
                ),
            ),
        ),
        Probe(target="192.168.100.3"),
        "host/veth-host2",
        ("bridge", "ip daddr 192.168.100.3 drop", "handle"),
        ("nft delete rule bridge f fw handle",),
    ),
    Fault(
        "bridged-through-ip-forward",
        "netfilter",
        (
            ("host", "sysctl -qw net.bridge.bridge-nf-call-iptables=1"),
            ("host", "nft add rule ip filter FORWARD ip daddr 192.168.100.3 drop"),
        ),
        Probe(target="192.168.100.3"),
        "host/veth-host2",
        ("bridge-nf-call-iptables=1", "ip daddr 192.168.100.3 drop"),
        ("nft delete rule ip filter FORWARD handle",),
    ),
    # ---- local delivery ----
    Fault(
        "no-listener",
        "delivery",
        (),
        Probe("tcp", "8.8.8.8", 444),
        "wan",
        ("nothing listens on 8.8.8.8 port 444",),
        ("listener",),
        outcome="rejected",
    ),
    Fault(
        "no-listener-after-dnat",
        "delivery",
        (
            ("host", "nft add rule ip nat PREROUTING tcp dport 8081 dnat to 192.168.100.2:81"),
            ("host", "nft add rule ip filter FORWARD tcp dport 81 accept"),
        ),
        Probe("tcp", "198.51.100.2", 8081, source="wan"),
        "container1",
        ("nothing listens on 192.168.100.2 port 81",),
        ("listener",),
        outcome="rejected",
    ),
    Fault(
        "listener-on-localhost",
        "delivery",
        (),
        Probe("tcp", "192.168.100.2", 9000, source="container2"),
        "container1",
        ("127.0.0.1", "9000"),
        ("0.0.0.0",),
        outcome="rejected",
        runs=(LISTEN_LOCALHOST,),
    ),
    # ---- sysctls ----
    Fault(
        "interface-forwarding-off",
        "sysctl",
        (("host", "sysctl -qw net.ipv4.conf.br0.forwarding=0"),),
        Probe(),
        "host/br0",
        ("net.ipv4.conf.br0.forwarding",),
        ("sysctl -w net.ipv4.conf.br0.forwarding=1",),
    ),
    Fault(
        "echo-ignored",
        "sysctl",
        (("wan", "sysctl -qw net.ipv4.icmp_echo_ignore_all=1"),),
        Probe(),
        "wan",
        ("icmp_echo_ignore_all",),
        ("icmp_echo_ignore_all=0",),
        outcome="delivered",
    ),
    # ---- tc ----
    Fault(
        "tc-ingress-redirect",
        "tc",
        (
            # ARP would be redirected too: container1 knows its gateway already.
            (
                "container1",
                "ip neigh replace 192.168.100.1 dev veth-cont1 nud permanent "
                "lladdr $(ip -n @host -br link show br0 | awk '{print $3}')",
            ),
            ("host", "ip link add tcsink type veth peer name tcsink-peer"),
            ("host", "tc qdisc add dev veth-host1 clsact"),
            (
                "host",
                "tc filter add dev veth-host1 ingress u32 match u32 0 0 "
                "action mirred egress redirect dev tcsink",
            ),
        ),
        Probe(),
        "host/veth-host1",
        ("tc", "ingress", "veth-host1", "redirect dev tcsink", "down"),
        ("tc filter del dev veth-host1 ingress",),
    ),
    Fault(
        "tc-egress-redirect",
        "tc",
        (
            (
                "container1",
                "ip neigh replace 192.168.100.1 dev veth-cont1 nud permanent "
                "lladdr $(ip -n @host -br link show br0 | awk '{print $3}')",
            ),
            ("container1", "ip link add tcsink type veth peer name tcsink-peer"),
            ("container1", "tc qdisc add dev veth-cont1 clsact"),
            (
                "container1",
                "tc filter add dev veth-cont1 egress u32 match u32 0 0 "
                "action mirred egress redirect dev tcsink",
            ),
        ),
        Probe(),
        "container1/veth-cont1",
        ("tc", "egress", "veth-cont1", "redirect dev tcsink", "down"),
        ("tc filter del dev veth-cont1 egress",),
    ),
    # ---- found cold, outside the corpus, then added (issue 22) ----
    Fault(
        "bridge-down",
        "l2",
        (("host", "ip link set br0 down"),),
        Probe(),
        "container1/veth-cont1",
        ("br0", "down"),
        ("ip link set br0 up",),
        outcome="lost",
    ),
    Fault(
        "bridge-down-gateway-known",
        "l2",
        (
            # The gateway's MAC already known: the frame goes out and meets the bridge.
            (
                "container1",
                "ip neigh replace 192.168.100.1 dev veth-cont1 nud permanent "
                "lladdr $(ip -n @host -br link show br0 | awk '{print $3}')",
            ),
            ("host", "ip link set br0 down"),
        ),
        Probe(),
        "host/br0",
        ("br0 itself is down",),
        ("ip link set br0 up",),
    ),
    Fault(
        "notrack-before-nat",
        "netfilter",
        (
            (
                "host",
                _nft(
                    "table ip raw2 { chain p { type filter hook prerouting priority -300; "
                    "ip saddr 192.168.100.0/24 notrack; } }"
                ),
            ),
        ),
        Probe(),
        "wan",
        ("did not track it", "notrack"),
        ("nft delete rule ip raw2 p handle",),
        outcome="lost",
    ),
    # From the fuzzer (seed 7, cold): notrack also keeps a port forward's DNAT away;
    # the packet is the host's own, and nothing listens on 8080 there.
    Fault(
        "notrack-before-dnat",
        "netfilter",
        (
            (
                "host",
                _nft(
                    "table ip raw3 { chain p { type filter hook prerouting priority -300; "
                    "tcp dport 8080 notrack; } }"
                ),
            ),
        ),
        Probe("tcp", "198.51.100.2", 8080, source="wan"),
        "host",
        ("did not track it", "DNAT rule never ran"),
        ("nft delete rule ip raw3 p handle",),
        outcome="rejected",
    ),
    Fault(
        "dnat-to-localhost",
        "netfilter",
        (("host", "nft insert rule ip nat PREROUTING tcp dport 8080 dnat to 127.0.0.1:80"),),
        Probe("tcp", "198.51.100.2", 8080, source="wan"),
        "host/eth0",
        ("route_localnet", "127.0.0.1"),
        ("net.ipv4.conf.eth0.route_localnet=1",),
    ),
    Fault(
        "noarp-destination",
        "l2",
        (("container2", "ip link set dev veth-cont2 arp off"),),
        Probe(target="192.168.100.3"),
        "container1/veth-cont1",
        ("NOARP", "192.168.100.3"),
        ("arp on",),
        outcome="lost",
    ),
    # ---- found by the state fuzzer (tests/faults/fuzz.py) ----
    Fault(
        "tc-ingress-eats-arp",
        "tc",
        (
            ("container2", "ip link add tcsink type veth peer name tcsink-peer"),
            ("container2", "tc qdisc add dev veth-cont2 clsact"),
            (
                "container2",
                "tc filter add dev veth-cont2 ingress u32 match u32 0 0 "
                "action mirred egress redirect dev tcsink",
            ),
        ),
        Probe(target="192.168.100.3"),
        "container1/veth-cont1",
        ("ARP", "tc ingress filter", "container2/veth-cont2", "every frame"),
        ("tc filter del dev veth-cont2 ingress",),
        outcome="lost",
    ),
    Fault(
        "address-removed",
        "routing",
        (("container2", "ip addr del 192.168.100.3/24 dev veth-cont2"),),
        Probe(target="192.168.100.3"),
        "container1/veth-cont1",
        ("no traced namespace holds 192.168.100.3", "container2/veth-cont2"),
        ("ip addr add 192.168.100.3/24 dev veth-cont2",),
        outcome="lost",
    ),
    Fault(
        "prohibit-rule-at-source",
        "routing",
        (("container1", "ip rule add to 8.8.8.8 prohibit pref 90"),),
        Probe(),
        "container1",
        ("route lookup", "prohibit", "rule 90"),
        ("ip rule del pref 90",),
    ),
    Fault(
        "dnat-to-disabled-port",
        "l2",
        (("host", "bridge link set dev veth-host1 state 0"),),
        Probe("tcp", "198.51.100.2", 8080, source="wan"),
        "host/br0",
        ("veth-host1", "disabled"),
        ("bridge link set dev veth-host1 state 3",),
        outcome="lost",
    ),
    Fault(
        "legacy-forward-drop",
        "netfilter",
        (("host", "iptables-legacy -A FORWARD -s 192.168.100.0/24 -p icmp -j DROP"),),
        Probe(),
        "host/br0",
        ("filter FORWARD rule 1", "iptables-legacy: -A FORWARD"),
        ("iptables-legacy -t filter -D FORWARD 1",),
    ),
    Fault(
        "noarp-source",
        "l2",
        (("container1", "ip link set dev veth-cont1 arp off"),),
        Probe(),
        "container1/veth-cont1",
        ("NOARP", "192.168.100.1", "host/veth-host1 drops it"),
        ("ip link set dev veth-cont1 arp on",),
    ),
    Fault(
        "dnat-target-link-down",
        "link",
        (("container1", "ip link set veth-cont1 down"),),
        Probe("tcp", "198.51.100.2", 8080, source="wan"),
        "host/br0",
        ("192.168.100.2 is on container1/veth-cont1, which is down",),
        ("ip link set veth-cont1 up",),
        outcome="lost",
    ),
    Fault(
        "dnat-target-port-down",
        "link",
        (("host", "ip link set veth-host1 down"),),
        Probe("tcp", "198.51.100.2", 8080, source="wan"),
        "host/br0",
        ("br0's port veth-host1", "is down"),
        ("ip link set veth-host1 up",),
        outcome="lost",
    ),
    Fault(
        "port-unlearned-answer",
        "l2",
        (
            (
                "host",
                "bridge link set dev veth-host1 flood off learning off && "
                "ip link set dev veth-host1 type bridge_slave fdb_flush",
            ),
        ),
        Probe(),
        "container1/veth-cont1",
        ("no FDB entry", "veth-host1", "flood"),
        ("bridge link set dev veth-host1 learning on flood on",),
        outcome="lost",
    ),
    Fault(
        "dnat-flooded-past",
        "l2",
        (
            (
                "host",
                "bridge link set dev veth-host1 flood off learning off && "
                "ip link set dev veth-host1 type bridge_slave fdb_flush",
            ),
        ),
        Probe("tcp", "198.51.100.2", 8080, source="wan"),
        "host/br0",
        ("no FDB entry", "veth-host1", "flood"),
        ("bridge link set dev veth-host1 learning on flood on",),
    ),
    Fault(
        "duplicate-address-on-gateway",
        "l2",
        (("host", "ip addr add 192.168.100.2/24 dev br0 nodad"),),
        Probe(),
        "container1/veth-cont1",
        ("192.168.100.2 is held by both host/br0 and container1/veth-cont1",),
        ("ip addr del 192.168.100.2/24 dev br0",),
        outcome="lost",
    ),
    Fault(
        "host-prefix-address",
        "routing",
        (
            (
                "container1",
                "ip addr del 192.168.100.2/24 dev veth-cont1 && "
                "ip addr add 192.168.100.2/32 dev veth-cont1",
            ),
        ),
        Probe(target="192.168.100.3"),
        "container1",
        ("192.168.100.2/32", "192.168.100.0/24"),
        ("ip addr add 192.168.100.2/24 dev veth-cont1",),
    ),
    Fault(
        "blackhole-default-at-source",
        "routing",
        (("container1", "ip route replace blackhole default"),),
        Probe(),
        "container1",
        ("ends in blackhole", "route blackhole default"),
        ("ip route replace default via 192.168.100.1",),
    ),
    # From the cold set: the host's default route via an address nobody on
    # eth0 holds; the probes wait for ARP, which nobody answers.
    Fault(
        "default-via-nobody",
        "routing",
        (("host", "ip route replace default via 198.51.100.9"),),
        Probe(),
        "host/eth0",
        ("198.51.100.9", "ARP", "no traced namespace holds"),
        ("ip route replace default via 198.51.100.1",),
        outcome="lost",
    ),
]

BY_NAME = {fault.name: fault for fault in FAULTS}

# What the verdict names, as data: the cause code, and the objects (prefixes of
# KIND:NODE/NAME references, rule handles left out) it must name. The corpus scores
# these; the words above check what people read.
NAMES: dict[str, tuple[str, tuple[str, ...]]] = {
    "no-masquerade": ("nat.none", ("route:wan/192.168.100.2",)),
    "forward-drop": ("nf.drop", ("nf:host/ip filter FORWARD",)),
    "ip-forward-off": ("sysctl.forwarding", ("sysctl:host/net.ipv4.ip_forward",)),
    "no-default-route": ("route.none", ("route:container1/8.8.8.8",)),
    "port-down": ("link.carrier", ("link:host/veth-host1",)),
    "dnat-without-forward-accept": ("nf.policy", ("nf:host/ip filter FORWARD",)),
    "small-mtu-with-df": ("link.mtu", ("link:host/eth0",)),
    "ttl-expired": ("nf.ttl", ("nf:host/ip t p",)),
    "udp-port-unreachable": ("nf.reject", ("nf:wan/ip t i",)),
    "reject-rule": ("nf.reject", ("nf:host/ip filter FORWARD",)),
    "source-link-down": ("link.down", ("link:container1/veth-cont1",)),
    "uplink-peer-down": ("link.carrier", ("link:wan/eth0",)),
    "peer-gone": ("neigh.failed", ("neigh:container1/192.168.100.3",)),
    "bridge-port-peer-down": ("link.down", ("link:container2/veth-cont2",)),
    "wrong-gateway-mac": ("neigh.wrong_mac", ("neigh:container1/192.168.100.1",)),
    "wrong-container-mac": ("neigh.wrong_mac", ("neigh:host/192.168.100.2",)),
    "arp-ignore": ("sysctl.arp_ignore", ("sysctl:container2/net.ipv4.conf.all.arp_ignore",)),
    "port-isolated": ("bridge.isolated", ("port:host/veth-host2",)),
    "port-flood-off": ("bridge.flood", ("port:host/veth-host2",)),
    "blackhole-route": ("route.blackhole", ("route:host/8.8.8.8/32",)),
    "unreachable-route": ("route.unreachable", ("route:host/8.8.8.8/32",)),
    "prohibit-route": ("route.prohibit", ("route:host/8.8.8.8/32",)),
    "policy-rule-blackhole": ("route.blackhole", ("rule:host/pref 100",)),
    "policy-rule-wrong-table": ("neigh.failed", ("rule:host/pref 100",)),
    "fwmark-rule-forwarded": ("route.blackhole", ("rule:host/pref 90", "nf:host/ip mk p")),
    "fwmark-rule-at-source": (
        "route.blackhole",
        ("rule:container1/pref 90", "nf:container1/ip mk o"),
    ),
    "no-route-back": ("route.back", ("route:wan/198.51.100.2",)),
    "source-address-selection": ("route.source", ("route:container1/8.8.8.8",)),
    "rp-filter": ("sysctl.rp_filter", ("sysctl:host/net.ipv4.conf.all.rp_filter",)),
    "veth-mtu-mismatch": ("link.mtu", ("link:container1/veth-cont1",)),
    "bridge-port-mtu-small": ("link.mtu", ("link:host/veth-host1",)),
    "source-mtu-fragments": ("link.mtu", ("link:container1/veth-cont1",)),
    "source-mtu-df": ("source.too_big", ("link:container1/veth-cont1",)),
    "container-output-drop": ("nf.drop", ("nf:container1/ip f o",)),
    "host-input-drop": ("nf.drop", ("nf:host/ip f i",)),
    "wan-raw-prerouting-drop": ("nf.drop", ("nf:wan/ip raw p",)),
    "host-postrouting-drop": ("nf.drop", ("nf:host/ip f p",)),
    "ct-new-forward-drop": ("nf.drop", ("nf:host/ip filter FORWARD",)),
    "reply-dropped": ("nf.drop", ("nf:host/ip filter FORWARD",)),
    "iptables-in-container": ("nf.drop", ("nf:container2/ip filter INPUT",)),
    "bridge-family-drop": ("nf.drop", ("nf:host/bridge f fw",)),
    "bridged-through-ip-forward": ("nf.drop", ("nf:host/ip filter FORWARD",)),
    "no-listener": ("socket.none", ("socket:wan/tcp 444",)),
    "no-listener-after-dnat": ("nat.port", ("nf:host/ip nat PREROUTING",)),
    "listener-on-localhost": ("socket.bound", ("socket:container1/tcp 9000",)),
    "interface-forwarding-off": (
        "sysctl.forwarding",
        ("sysctl:host/net.ipv4.conf.br0.forwarding",),
    ),
    "echo-ignored": ("sysctl.icmp_echo_ignore", ("sysctl:wan/net.ipv4.icmp_echo_ignore_all",)),
    "tc-ingress-redirect": ("tc.redirect", ("tc:host/veth-host1 ingress",)),
    "tc-egress-redirect": ("tc.redirect", ("tc:container1/veth-cont1 egress",)),
    "bridge-down": ("bridge.down", ("link:host/br0",)),
    "bridge-down-gateway-known": ("bridge.down", ("link:host/br0",)),
    "notrack-before-nat": ("nf.notrack", ("nf:host/ip raw2 p",)),
    "notrack-before-dnat": ("nf.notrack", ("nf:host/ip raw3 p",)),
    "dnat-to-localhost": (
        "sysctl.route_localnet",
        ("sysctl:host/net.ipv4.conf.eth0.route_localnet",),
    ),
    "noarp-destination": ("link.noarp", ("link:container2/veth-cont2",)),
    "tc-ingress-eats-arp": ("tc.redirect", ("tc:container2/veth-cont2 ingress",)),
    "address-removed": ("neigh.failed", ("link:container2/veth-cont2",)),
    "prohibit-rule-at-source": ("route.prohibit", ("rule:container1/pref 90",)),
    "dnat-to-disabled-port": ("bridge.port_state", ("port:host/veth-host1",)),
    "legacy-forward-drop": ("nf.drop", ("nf:host/ip filter FORWARD rule 1",)),
    "noarp-source": ("link.noarp", ("link:container1/veth-cont1",)),
    "dnat-target-link-down": ("link.down", ("link:container1/veth-cont1",)),
    "dnat-target-port-down": ("link.down", ("link:host/veth-host1",)),
    "port-unlearned-answer": ("bridge.flood", ("port:host/veth-host1",)),
    "dnat-flooded-past": ("bridge.flood", ("port:host/veth-host1",)),
    "duplicate-address-on-gateway": ("address.duplicate", ("address:host/192.168.100.2",)),
    "host-prefix-address": ("address.prefix", ("address:container1/192.168.100.2",)),
    "blackhole-default-at-source": ("route.blackhole", ("route:container1/default",)),
    "default-via-nobody": ("neigh.failed", ("neigh:host/198.51.100.9", "route:host/default")),
}
