"""Namespaces from threads: every operation acts on the calling thread, and fails closed.

A namespace created from a worker thread used to be the process's own (pyroute2
binds /proc/self, the main thread's namespace), so the TUI built the lab in the
host. Each test runs in a scratch host (tests/scratch.py) and checks, from
inside the threads, which namespace each one is really in.
"""

from __future__ import annotations

from textwrap import dedent

import pytest

from tests import scratch

pytestmark = pytest.mark.root

# Code shared by the scratch programs: the scratch host's fingerprint.
PRELUDE = """
import json, os, subprocess, sys, threading
from pathtrace.system import netns
from tests.rootns import snapshot
HOST = os.stat("/proc/self/ns/net").st_ino
"""


def test_create_enter_leave_from_many_threads_at_once() -> None:
    seen = scratch.result(
        PRELUDE
        + dedent(
            """
        names = [f"tns{i}" for i in range(6)]
        barrier = threading.Barrier(len(names))
        report, errors = {}, []

        def work(name):
            try:
                barrier.wait()
                ipr = netns.create(name)
                links = [l.get("ifname") for l in ipr.get_links()]
                ipr.close()
                made = netns.inode(name)
                inside = []
                barrier.wait()
                for _ in range(200):  # all threads switching at once
                    with netns.entered(name):
                        inside.append(netns.current_inode())
                    assert netns.current_inode() == HOST
                ipr = netns.iproute(name)  # bound inside, used outside
                later = [l.get("ifname") for l in ipr.get_links()]
                ipr.close()
                report[name] = {
                    "made": made, "links": links, "later": later,
                    "inside": sorted(set(inside)), "after": netns.current_inode(),
                }
            except Exception as error:
                errors.append(repr(error))

        threads = [threading.Thread(target=work, args=(n,)) for n in names]
        for t in threads: t.start()
        for t in threads: t.join()
        for n in names: netns.remove(n)
        print(json.dumps({"host": HOST, "report": report, "errors": errors,
                          "left": netns.names()}))
        """
        )
    )
    assert not seen["errors"]
    made = {r["made"] for r in seen["report"].values()}
    assert len(made) == 6 and seen["host"] not in made  # six new ones, none the host
    for report in seen["report"].values():
        assert report["links"] == ["lo"] and report["later"] == ["lo"]
        assert report["inside"] == [report["made"]]  # always where it asked to be
        assert report["after"] == seen["host"]  # and back where it came from
    assert seen["left"] == []


def test_entering_never_creates_a_namespace() -> None:
    seen = scratch.result(
        PRELUDE
        + dedent(
            """
        try:
            with netns.entered("missing"):
                pass
            outcome = "entered"
        except FileNotFoundError:
            outcome = "refused"
        print(json.dumps({"outcome": outcome, "left": netns.names()}))
        """
        )
    )
    assert seen == {"outcome": "refused", "left": []}


def test_lab_up_and_down_from_a_thread_leave_the_host_as_it_was() -> None:
    seen = scratch.result(
        PRELUDE
        + dedent(
            """
        from pathtrace.lab import build, topology
        topo = topology.parse(topology.reference_text())
        before = snapshot()
        out = {}

        def up():
            build.up(topo)
            out["inodes"] = {n: netns.inode(topo.namespace(n)) for n in topo.nodes}
            out["host_links"] = sorted(l.split(": ")[1].split("@")[0] for l in
                subprocess.run(["ip", "-o", "link"], capture_output=True, text=True)
                .stdout.splitlines())
            ping = netns.run(topo.namespace("container1"), ["ping", "-c1", "-W2", "8.8.8.8"],
                             check=False)
            out["ping"] = ping.returncode

        def down():
            out["removed"] = build.down(topo).removed

        for job in (up, down):
            t = threading.Thread(target=job); t.start(); t.join()
        after = snapshot()
        out["changed"] = sorted(k for k in before if before[k] != after[k])
        out["host"] = HOST
        out["left"] = netns.names()
        print(json.dumps(out))
        """
        )
    )
    inodes = set(seen["inodes"].values())
    assert len(inodes) == 4 and seen["host"] not in inodes
    assert seen["host_links"] == ["lo"]  # no br0, no veth, no eth0 made in the host
    assert seen["ping"] == 0
    assert len(seen["removed"]) == 4 and seen["left"] == []
    assert seen["changed"] == []


def test_a_lab_file_bound_to_the_host_is_refused_and_nothing_changes() -> None:
    seen = scratch.result(
        PRELUDE
        + dedent(
            """
        os.makedirs("/run/netns")
        open("/run/netns/pt-host", "w").close()
        subprocess.run(["mount", "--bind", "/proc/self/ns/net", "/run/netns/pt-host"], check=True)
        before = snapshot()
        out = {}
        for verb in (["lab", "up"], ["lab", "down"], ["run", "ping", "8.8.8.8"],
                     ["lab", "break", "forward-drop"]):
            done = subprocess.run([sys.executable, "-m", "pathtrace", *verb],
                                  capture_output=True, text=True)
            out[" ".join(verb)] = [done.returncode, done.stdout + done.stderr]
        # A thread trying the same, through the library.
        from pathtrace.lab import build, topology
        from pathtrace.errors import ConflictError
        def up():
            try:
                build.up(topology.parse(topology.reference_text()))
                out["thread"] = "built"
            except ConflictError as error:
                out["thread"] = str(error)
        t = threading.Thread(target=up); t.start(); t.join()
        after = snapshot()
        out["changed"] = sorted(k for k in before if before[k] != after[k])
        out["left"] = netns.names()
        for n in netns.names():
            netns.remove(n)
        print(json.dumps(out))
        """
        )
    )
    for verb in ("lab up", "lab down", "run ping 8.8.8.8"):
        code, said = seen[verb]
        assert code == 5, (verb, said)
        assert said.strip().count("\n") == 0 and "host's own network namespace" in said, said
        assert "Traceback" not in said
    assert seen["lab break forward-drop"][0] != 0
    assert "host's own network namespace" in seen["thread"]
    assert seen["changed"] == []
    assert seen["left"] == ["pt-host"]  # not even the binding was touched


def test_two_lab_nodes_bound_to_one_namespace_are_refused() -> None:
    seen = scratch.result(
        PRELUDE
        + dedent(
            """
        from pathtrace.errors import ConflictError
        from pathtrace.lab import build, record, topology
        topo = topology.parse(topology.reference_text())
        build.up(topo)
        # container2's file now names container1's namespace.
        subprocess.run(["umount", "/run/netns/pt-container2"], check=True)
        subprocess.run(["mount", "--bind", "/run/netns/pt-container1", "/run/netns/pt-container2"],
                       check=True)
        out = {}
        try:
            build.up(topo)
            out["up"] = "built"
        except ConflictError as error:
            out["up"] = str(error)
        subprocess.run(["umount", "/run/netns/pt-container2"], check=True)
        build.down(topo)
        print(json.dumps(out))
        """
        )
    )
    assert "are one namespace" in seen["up"]
