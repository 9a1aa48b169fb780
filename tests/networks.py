"""Networks built the way other software builds them, for a scratch host only
(tests/scratch.py): the tutorial's own script, the CNI bridge and portmap plugins,
a flannel VXLAN overlay (tests/overlay.py). Each names its namespaces plainly and
makes its host side in the namespace it runs in, so never on the machine's own.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

SEED = next((Path(__file__).resolve().parents[2] / "shared" / "seed").glob("*.txt"), None)

# What the tutorial leaves out: an uplink to a `wan` that owns 8.8.8.8 (and has no
# route back to the containers: the host's masquerade is what answers come back by).
WAN_SETUP = (
    "ip netns add wan && ip link add eth0 type veth peer name eth0 netns wan && "
    "ip addr add 198.51.100.2/24 dev eth0 && ip link set eth0 up && "
    "ip -n wan addr add 198.51.100.1/24 dev eth0 && ip -n wan link set eth0 up && "
    "ip -n wan link set lo up && ip -n wan addr add 8.8.8.8/32 dev lo && "
    "ip route add default via 198.51.100.1"
)

CNI_PATH = Path("/usr/lib/cni")
CNI_BRIDGE: dict[str, Any] = {
    "cniVersion": "1.0.0",
    "name": "testnet",
    "type": "bridge",
    "bridge": "cni0",
    "isGateway": True,
    "ipMasq": True,
    "ipam": {
        "type": "host-local",
        "subnet": "10.22.0.0/24",
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "/run/cni",
    },
}


def tutorial_script() -> str | None:
    """Section 7.1 of the tutorial, verbatim but for `sudo`, from the seed file (None
    when the tutorial is not beside the project)."""
    if SEED is None:
        return None
    text = SEED.read_text()
    start = text.index("#!/bin/bash")
    end = text.index("\n7.2", start)
    return re.sub(r"\bsudo ", "", text[start:end])


def sh(command: str) -> None:
    subprocess.run(["bash", "-c", command], check=True, capture_output=True, text=True)


def listener(namespace: str, port: int) -> subprocess.Popen[str]:
    """A TCP listener on every address of ``namespace``, ready when this returns (the
    scratch host's pid namespace ends it with the test's code)."""
    started = subprocess.Popen(
        [
            "nsenter", f"--net=/run/netns/{namespace}", sys.executable, "-c",
            f"import socket, time; s = socket.socket(); s.bind(('0.0.0.0', {port})); "
            "s.listen(); print('ready', flush=True); time.sleep(3600)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert started.stdout is not None
    started.stdout.readline()
    return started


def cni(plugin: str, pod: str, conf: dict[str, Any], command: str = "ADD") -> Any:
    env = {
        **os.environ,
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": pod,
        "CNI_NETNS": f"/run/netns/{pod}",
        "CNI_IFNAME": "eth0",
        "CNI_PATH": str(CNI_PATH),
    }
    done = subprocess.run(
        [str(CNI_PATH / plugin)],
        input=json.dumps(conf),
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout or "{}")


def tutorial_up() -> None:
    """The tutorial's script without its own test pings (they fail: no uplink yet, and
    take seconds), a `wan`, and a listener on container2:80."""
    script = tutorial_script()
    if script is None:
        raise RuntimeError("the tutorial (shared/seed) is not beside the project")
    script = "\n".join(line for line in script.splitlines() if " ping " not in line)
    subprocess.run(["bash", "-c", script], capture_output=True, check=False)
    sh(WAN_SETUP)
    listener("container2", 80)


def cni_up() -> None:
    """pod1 and pod2 on cni0 by the bridge plugin (pod1 10.22.0.2, pod2 10.22.0.3),
    the host's port 8080 mapped to pod1:80 by portmap, a `wan`, a listener on pod1:80."""
    os.makedirs("/run/cni", exist_ok=True)
    results = {}
    for pod in ("pod1", "pod2"):
        sh(f"ip netns add {pod}")
        results[pod] = cni("bridge", pod, CNI_BRIDGE)
    cni(
        "portmap",
        "pod1",
        {
            "cniVersion": "1.0.0",
            "name": "testnet",
            "type": "portmap",
            "capabilities": {"portMappings": True},
            "runtimeConfig": {
                "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]
            },
            "prevResult": results["pod1"],
        },
    )
    sh(WAN_SETUP)
    listener("pod1", 80)


def overlay_up() -> None:
    """flannel's VXLAN overlay between node-a and node-b, a listener on pod-b:80."""
    from tests.overlay import SETUP  # lazy: tests/overlay is shared with its own test

    sh(SETUP)
    listener("pod-b", 80)
