"""An XDP program that drops, generic and native, on a veth in a scratch host: the
verdict names the program as netlink shows it attached, and the printed fix,
run as printed, heals."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests import scratch

pytestmark = pytest.mark.root

# No headers: the program returns XDP_DROP (1) whatever comes.
PROGRAM = """
struct xdp_md;
__attribute__((section("xdp"), used)) int xdp_drop(struct xdp_md *ctx) { return 1; }
char _license[] __attribute__((section("license"), used)) = "GPL";
"""

XDP = r"""
import json, subprocess, sys

def sh(command):
    return subprocess.run(["bash", "-c", command], check=True, capture_output=True,
                          text=True).stdout

def run():
    done = subprocess.run([sys.executable, "-m", "pathtrace", "run", "ping", "10.7.0.2", "--from",
                           "c1", "-c", "1", "--json"], capture_output=True, text=True, timeout=60)
    return {"code": done.returncode, "report": json.loads(done.stdout or "null")}

sh("ip netns add c1 && ip netns add c2 && ip link add va type veth peer name vb && "
   "ip link set va netns c1 && ip link set vb netns c2 && "
   "ip -n c1 addr add 10.7.0.1/24 dev va && ip -n c2 addr add 10.7.0.2/24 dev vb && "
   "ip -n c1 link set va up && ip -n c2 link set vb up && "
   # c2's MAC known: the probe itself meets the program (ARP would meet it first).
   "ip -n c1 neigh add 10.7.0.2 dev va nud permanent "
   "lladdr $(ip -n c2 -br link show vb | awk '{print $3}')")
sh(f"ip -n c2 link set dev vb {MODE} obj {OBJECT} sec xdp")
shown = sh("ip -n c2 -d link show vb")
broken = run()
fix = broken["report"]["probes"][0]["verdict"]["fix"] or ""
sh(fix.split(", or ")[0])  # the printed command, as printed
print(json.dumps({"shown": shown, "broken": broken, "healed": run()}))
"""


@pytest.mark.parametrize(("mode", "said"), [("xdpgeneric", "generic"), ("xdpdrv", "native")])
def test_an_xdp_drop_is_named_and_its_fix_heals(tmp_path: Path, mode: str, said: str) -> None:
    source, obj = tmp_path / "drop.c", tmp_path / "drop.o"
    source.write_text(PROGRAM)
    subprocess.run(
        ["clang", "-target", "bpf", "-O2", "-c", str(source), "-o", str(obj)], check=True
    )
    seen = scratch.result(XDP.replace("{MODE}", mode).replace("{OBJECT}", str(obj)))
    prog_id = seen["shown"].split("prog/xdp id ")[1].split()[0]  # ground truth: ip -d link
    verdict = seen["broken"]["report"]["probes"][0]["verdict"]
    assert verdict["outcome"] == "dropped" and verdict["where"] == "c2/vb", verdict
    assert verdict["cause"].startswith(
        f"the XDP program on c2/vb ({said} id {prog_id}) dropped it"
    ), verdict
    assert seen["broken"]["report"]["warnings"] == []  # the empty capture is the program's doing
    assert seen["healed"]["code"] == 0, seen["healed"]
