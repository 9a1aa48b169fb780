"""Benchmark: a run on a CNI network as it grows: N pods on one bridge, N = 2, 50, 200.

Each N in a scratch host (tests/scratch.py): the CNI `bridge` plugin with
`ipMasq` makes the pods as a runtime would. Measured per N, median of ROUNDS:
`pathtrace run ping POD2 --from pod1 -c 3` wall time and peak RSS (process
start to exit), and, in process, how long discovery takes, how many
namespaces it keeps and how many interfaces the run captures on. Reported as
ratios against N=2, measured in the same run. Run: `make bench` (as root).
"""

from __future__ import annotations

import json
import statistics
import sys

from tests import scratch

ROUNDS = 5
SIZES = (2, 50, 200)

PROGRAM = r"""
import json, os, statistics, subprocess, sys, time
from pathtrace.system import discover

N, ROUNDS = {n}, {rounds}
os.makedirs("/run/cni", exist_ok=True)
conf = json.dumps({{"cniVersion": "1.0.0", "name": "scale", "type": "bridge", "bridge": "cni0",
                    "isGateway": True, "ipMasq": True,
                    "ipam": {{"type": "host-local", "subnet": "10.30.0.0/16",
                              "dataDir": "/run/cni"}}}})
for i in range(1, N + 1):
    pod = f"pod{{i}}"
    subprocess.run(["ip", "netns", "add", pod], check=True)
    env = {{**os.environ, "CNI_COMMAND": "ADD", "CNI_CONTAINERID": pod,
            "CNI_NETNS": f"/run/netns/{{pod}}", "CNI_IFNAME": "eth0",
            "CNI_PATH": "/usr/lib/cni"}}
    subprocess.run(["/usr/lib/cni/bridge"], input=conf, env=env, text=True,
                   capture_output=True, check=True)
target = "10.30.0.3"  # pod2
argv = [sys.executable, "-m", "pathtrace", "run", "ping", target, "--from", "pod1", "-c", "3"]
walls, rss = [], []
for _ in range(ROUNDS):
    start = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, os.environ,
                         file_actions=[(os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0)])
    _, status, usage = os.wait4(pid, 0)
    walls.append(time.perf_counter() - start)
    rss.append(usage.ru_maxrss / 1024)
    assert os.waitstatus_to_exitcode(status) == 0
found, took = None, []
for _ in range(ROUNDS):
    start = time.perf_counter()
    found = discover.reachable("pod1", discover.candidates(), target).namespaces
    took.append(time.perf_counter() - start)
report = json.loads(subprocess.run([*argv, "--json"], capture_output=True, text=True).stdout)
print(json.dumps({{"n": N, "wall": statistics.median(walls), "rss": statistics.median(rss),
                   "discovery": statistics.median(took), "traced": len(found),
                   "captured_on": report["capture"]["interfaces"]}}))
"""


def main() -> int:
    rows = []
    for n in SIZES:
        rows.append(scratch.result(PROGRAM.format(n=n, rounds=ROUNDS), timeout=900))
        print(json.dumps(rows[-1]), file=sys.stderr)
    base = rows[0]
    print(f"run ping pod2 --from pod1 -c 3 on one CNI bridge, median of {ROUNDS}")
    for row in rows:
        print(
            f"  N={row['n']:<4} {row['wall']:.3f} s ({row['wall'] / base['wall']:.2f}x)  "
            f"peak {row['rss']:.0f} MB ({row['rss'] / base['rss']:.2f}x)  "
            f"discovery {row['discovery'] * 1000:.0f} ms  traced {row['traced']} namespaces  "
            f"capture on {row['captured_on']} interfaces"
        )
    worst = rows[-1]["wall"] / base["wall"]
    print(
        f"  N={SIZES[-1]} / N={SIZES[0]}: {worst:.2f}x (target <= 2x), "
        f"{rows[-1]['wall']:.2f} s (target < 1.5 s); median wall of each: "
        f"{statistics.median([r['wall'] for r in rows]):.3f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
