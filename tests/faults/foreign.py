"""Networks the fuzzer breaks that pathtrace did not build: the tutorial's script,
the CNI bridge and portmap plugins, flannel's VXLAN overlay (tests/networks.py).

Each trial runs in a fresh scratch host (tests/scratch.py): the network is built
there by its own tools, one mutation is made, the printed fix is run when asked,
and pathtrace runs inside as that host's own tool (no lab: the namespaces it
finds). A mutation of the node called `host` changes the scratch host, never the
machine's. The fuzzer outside reads each trial's verdicts as JSON.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict
from ipaddress import ip_address
from typing import Any

from pathtrace.model.options import RunOptions
from pathtrace.model.prediction import Prediction, Step
from pathtrace.model.state import NamespaceState
from pathtrace.model.trace import Verdict
from tests import networks, scratch
from tests.faults.mutations import Mutation, catalog

Probe = tuple[str, str, int, str]  # kind, target, port, from

# Per network: how it is built, and what a user runs on it.
NETWORKS: dict[str, tuple[Callable[[], None], tuple[Probe, ...]]] = {
    "tutorial": (
        networks.tutorial_up,
        (
            ("ping", "8.8.8.8", 0, "container1"),
            ("ping", "192.168.100.3", 0, "container1"),
            ("tcp", "192.168.100.3", 80, "container1"),
        ),
    ),
    "cni": (
        networks.cni_up,
        (
            ("ping", "8.8.8.8", 0, "pod1"),
            ("ping", "10.22.0.3", 0, "pod1"),
            ("tcp", "198.51.100.2", 8080, "wan"),
        ),
    ),
    "overlay": (
        networks.overlay_up,
        (
            ("ping", "10.244.1.2", 0, "pod-a"),
            ("tcp", "10.244.1.2", 80, "pod-a"),
            ("ping", "10.244.0.2", 0, "pod-b"),
        ),
    ),
}


class Foreign:
    """A network built in a scratch host, one trial each time."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.probes = NETWORKS[name][1]
        # Each build gives its devices new MACs: a fix that names a MAC of the build
        # its verdict came from is replayed with the same device's MAC (NODE/NAME,
        # by the catalog's names) in the new one.
        self.macs: dict[str, str] = {}

    def catalog(self) -> list[Mutation]:
        found = self._inside({"catalog": True})
        # Devices named afresh on each build (the CNI plugin's host veths): known
        # by what they lead to, so a trial can find this build's names.
        self.names: dict[str, str] = found["names"]
        return [
            Mutation(m["kind"], m["node"], m["command"], tuple(m["objects"]))
            for m in found["mutations"]
        ]

    def trial(
        self, mutation: Mutation, fix: str | None = None, probes: tuple[Probe, ...] | None = None
    ) -> list[Verdict] | str:
        """The verdicts of ``probes`` (all by default) with ``mutation`` made (and then
        ``fix`` run); or why the mutation could not be made."""
        done = self._inside(
            {
                "mutation": asdict(mutation),
                "fix": fix,
                "probes": probes or self.probes,
                "names": self.names,
                "macs": self.macs,
            }
        )
        if isinstance(done, str):
            return done
        if not fix:
            self.macs = done["macs"]
        return [_verdict(v) for v in done["verdicts"]]

    def _inside(self, request: dict[str, Any]) -> Any:
        request["network"] = self.name
        code = f"from tests.faults.foreign import inside\ninside({json.dumps(request)!r})\n"
        return scratch.result(code, timeout=600)


def inside(request_text: str) -> None:
    """In the scratch host: build, mutate, fix, run; print the answer as JSON."""
    # lazy: these need the scratch host's own /run (pathtrace's locks, its netns)
    from pathtrace.session import Run
    from pathtrace.system import discover, netns, observe

    request = json.loads(request_text)
    build, _ = NETWORKS[request["network"]]
    build()
    nodes = {discover.name_of(path): path for path in discover.candidates()}
    nodes = {node: path for node, path in nodes.items() if not node.startswith("netns:")}
    states = {node: observe.state(path, node) for node, path in nodes.items()}
    names = _veths_by_peer(states)
    if request.get("catalog"):
        mutations = [asdict(m) for m in catalog(nodes)]
        print(json.dumps({"mutations": mutations, "names": names}))
        return
    now = {key: name for name, key in names.items()}
    # The catalog's names -> this build's, and back for what the verdicts say.
    to_now = {old: now[key] for old, key in request["names"].items() if key in now}
    to_catalog = {new: old for old, new in to_now.items()}
    mutation = request["mutation"]
    command = _renamed(mutation["command"], to_now)
    made = netns.run(nodes[mutation["node"]], ["sh", "-ec", command], check=False)
    if made.returncode != 0:  # this kernel or these tools cannot make it: said
        print(json.dumps(made.stderr.strip() or f"exit {made.returncode}"))
        return
    macs = {
        mac.lower(): f"{node}/{to_catalog.get(link.name, link.name)}"
        for node, state in states.items()
        for link in state.links
        if (mac := link.mac) and link.kind != "loopback"
    }
    if request.get("fix"):
        fix = _renamed(request["fix"], to_now)
        now = {where: mac for mac, where in macs.items()}
        for mac, where in request.get("macs", {}).items():
            if where in now:
                fix = re.sub(re.escape(mac), now[where], fix, flags=re.IGNORECASE)
        subprocess.run(["sh", "-c", fix], capture_output=True, timeout=20)
    verdicts = []
    for kind, target, port, source in request["probes"]:
        options = RunOptions(kind, ip_address(target), port, source=source, count=1, timeout=1.0)
        verdict = Run(options, None).execute().probes[0].verdict
        verdicts.append(_renamed(asdict(verdict), to_catalog))
    sys.stdout.flush()
    print(json.dumps({"verdicts": verdicts, "macs": macs}))


def _veths_by_peer(states: dict[str, NamespaceState]) -> dict[str, str]:
    """Each veth's name -> "NODE/NAME" of its peer, where the peer is in another node."""
    found = {}
    for node, state in states.items():
        for link in state.links:
            for other, o_state in states.items():
                peer = next(
                    (
                        o
                        for o in o_state.links
                        if other != node
                        and link.peer_index == o.index
                        and o.peer_index == link.index
                    ),
                    None,
                )
                if peer is not None:
                    found[link.name] = f"{other}/{peer.name}"
    return found


def _renamed(value: Any, names: dict[str, str]) -> Any:
    """``value`` (a string, or lists and dicts of them) with each device name replaced."""
    if isinstance(value, str):
        for old, new in names.items():
            value = re.sub(rf"\b{re.escape(old)}\b", new, value)
        return value
    if isinstance(value, list):
        return [_renamed(v, names) for v in value]
    if isinstance(value, dict):
        return {k: _renamed(v, names) for k, v in value.items()}
    return value


def _verdict(data: dict[str, Any]) -> Verdict:
    """A verdict back from the scratch host's JSON, its predicted paths as records."""
    predicted = [
        Prediction(
            **{
                **p,
                "steps": tuple(Step(**step) for step in p["steps"]),
                "objects": tuple(p["objects"]),
                "unknowns": tuple(p["unknowns"]),
            }
        )
        for p in data.get("predicted", [])
    ]
    return Verdict(**{**data, "predicted": predicted})
