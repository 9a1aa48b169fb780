"""Benchmark: `pathtrace lab up` against the tutorial's shell script, in one run.

The script is seed section 7.1 extended to the same topology (wan, DNAT, the
FORWARD accept, IPv6 off, the same listeners on container1 and wan), with the
host role in a scratch namespace so the root namespace is never touched. Each
side runs ROUNDS times, alternating, from nothing to a working lab; teardown
is not timed. Run: `make bench` (as root).
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pathtrace.lab import build, topology
from pathtrace.system import netns

ROUNDS = 9
SCRIPT_PREFIX = "ptbs-"
TOOL_PREFIX = "ptbt-"

SCRIPT = r"""
set -e
P=ptbs-
for n in host container1 container2 wan; do ip netns add ${P}$n; done
for n in host container1 container2 wan; do
  ip -n ${P}$n link set lo up
  ip netns exec ${P}$n sysctl -qw net.ipv6.conf.all.disable_ipv6=1 \
    net.ipv6.conf.default.disable_ipv6=1
done
ip -n ${P}host link add name br0 type bridge
ip -n ${P}host link set br0 up
ip -n ${P}host addr add 192.168.100.1/24 dev br0
ip -n ${P}host link add veth-host1 type veth peer name veth-cont1 netns ${P}container1
ip -n ${P}host link add veth-host2 type veth peer name veth-cont2 netns ${P}container2
ip -n ${P}host link add eth0 type veth peer name eth0 netns ${P}wan
ip -n ${P}host link set veth-host1 master br0
ip -n ${P}host link set veth-host2 master br0
ip -n ${P}host link set veth-host1 up
ip -n ${P}host link set veth-host2 up
ip -n ${P}host link set eth0 up
ip -n ${P}host addr add 198.51.100.2/24 dev eth0
ip -n ${P}host route add default via 198.51.100.1
ip -n ${P}container1 link set veth-cont1 up
ip -n ${P}container1 addr add 192.168.100.2/24 dev veth-cont1
ip -n ${P}container1 route add default via 192.168.100.1
ip -n ${P}container2 link set veth-cont2 up
ip -n ${P}container2 addr add 192.168.100.3/24 dev veth-cont2
ip -n ${P}container2 route add default via 192.168.100.1
ip -n ${P}wan link set eth0 up
ip -n ${P}wan addr add 198.51.100.1/24 dev eth0
ip -n ${P}wan addr add 8.8.8.8/32 dev lo
ip -n ${P}wan addr add 1.1.1.1/32 dev lo
ip netns exec ${P}host sysctl -qw net.ipv4.ip_forward=1
ip netns exec ${P}host iptables -t nat -A POSTROUTING -s 192.168.100.0/24 -o eth0 -j MASQUERADE
ip netns exec ${P}host iptables -t nat -A PREROUTING -p tcp --dport 8080 \
  -j DNAT --to-destination 192.168.100.2:80
ip netns exec ${P}host iptables -A FORWARD -p tcp -d 192.168.100.2 --dport 80 -j ACCEPT
# the lab's services (the same listeners), waited for until bound
exec 3< <(ip netns exec ${P}container1 "$PY" -I -S "$RESP" tcp:80)
exec 4< <(ip netns exec ${P}wan "$PY" -I -S "$RESP" tcp:80 tcp:443 udp:53 udp:7)
read -r -u 3 ready1; read -r -u 4 ready2
"""


def _remove(prefix: str) -> None:
    for name in netns.names():
        if name.startswith(prefix):
            for pid in netns.holders(name):  # the script's listeners: ours to end
                os.kill(pid, signal.SIGKILL)
            netns.remove(name)


def _timed(argv: list[str]) -> float:
    env = {**os.environ, "PY": sys.executable, "RESP": build.RESPONDER}
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=env)
    return time.perf_counter() - start


def main() -> int:
    text = topology.reference_text().replace('prefix = "pt-"', f'prefix = "{TOOL_PREFIX}"', 1)
    script_times: list[float] = []
    tool_times: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "lab.toml"
        path.write_text(text)
        try:
            for _ in range(ROUNDS):
                script_times.append(_timed(["bash", "-c", SCRIPT]))
                _remove(SCRIPT_PREFIX)
                tool_times.append(
                    _timed(
                        [sys.executable, "-m", "pathtrace", "lab", "up", "--topology", str(path)]
                    )
                )
                build.down(topology.parse(text))
        finally:
            _remove(SCRIPT_PREFIX)
            build.down(None, prefix=TOOL_PREFIX)
    script = statistics.median(script_times)
    tool = statistics.median(tool_times)
    print(f"lab up, median of {ROUNDS} rounds (wall time, process start to exit)")
    print(f"  shell script (ip + iptables) {script:.3f} s")
    print(f"  pathtrace lab up             {tool:.3f} s")
    print(f"  ratio pathtrace / script     {tool / script:.2f}  (target <= 2.0, and < 0.5 s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
