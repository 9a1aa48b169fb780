"""`pathtrace doctor`: what this machine lets pathtrace do, and why not where not.

Every hook family is really loaded and attached (netfilter links in a scratch
namespace of our own, never the root one), then detached: the answer is what
the kernel did, not what its version suggests.
"""

from __future__ import annotations

import os
import platform
import shutil
from dataclasses import dataclass, field
from typing import Any

from pathtrace.errors import PathtraceError
from pathtrace.kernel import engine, libbpf
from pathtrace.kernel.engine import Tracer
from pathtrace.system import discover, netns, observe, privileges

TOOLS = ("ip", "nft", "nsenter", "tcpdump", "tshark", "ping", "clang", "bpftool")


@dataclass
class Diagnosis:
    kernel: str
    machine: str
    btf: bool
    lockdown: str | None
    capabilities: list[str]
    libbpf: str | None
    probes: str
    probes_built: bool
    tools: dict[str, bool]
    hooks: list[dict[str, Any]] = field(default_factory=list)
    problem: str | None = None
    # iptables-legacy tables in use in the namespace pathtrace runs in: nft cannot list them.
    # None: not known (reading them needs root).
    legacy_iptables: list[str] | None = field(default_factory=list)
    probes_advice: str = ""  # how to get probes, for the way pathtrace was installed

    def to_json(self) -> dict[str, Any]:
        return self.__dict__.copy()


def diagnose() -> Diagnosis:

    try:
        lib_version: str | None = libbpf.version()
    except PathtraceError:
        lib_version = None
    lockdown = None
    try:
        with open("/sys/kernel/security/lockdown") as f:
            lockdown = next((w.strip("[]") for w in f.read().split() if w.startswith("[")), None)
    except OSError:
        pass
    directory = engine.probes_dir()
    result = Diagnosis(
        kernel=os.uname().release,
        machine=platform.machine(),
        btf=os.path.exists(libbpf.KernelBtf.PATH),
        lockdown=lockdown,
        capabilities=sorted(privileges.effective()),
        libbpf=lib_version,
        probes=str(directory),
        probes_built=all(
            (directory / f"{f}.bpf.o").exists()
            for f in ("device", "drop", "netfilter", "veth", "bridge", "nat")
        ),
        tools={tool: shutil.which(tool) is not None for tool in TOOLS},
        probes_advice=engine.how_to_build_probes(),
    )
    try:
        result.legacy_iptables = observe.legacy_tables(discover.host_path()).splitlines()
    except OSError:
        result.legacy_iptables = None  # entering the host's namespace needs CAP_SYS_ADMIN
    try:
        result.hooks = [s.to_json() for s in _try_hooks()]
    except PathtraceError as error:
        result.problem = str(error)
    return result


def _try_hooks() -> list[Any]:

    privileges.require("CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_BPF", doing="pathtrace doctor")
    scratch = f"{netns.SCRATCH_PREFIX}{os.getpid()}"
    netns.create(scratch).close()
    # Links into the scratch namespace even though it has no rules: the doctor
    # must see the kernel accept a netfilter link, not only the program.
    tracer = Tracer(
        run=0, namespaces=[scratch], netfilter_namespaces=[scratch], ask_kernel_again=True
    )
    try:
        tracer.start()
        return list(tracer.statuses)
    finally:
        tracer.stop()
        netns.remove(scratch)


def print_diagnosis(d: Diagnosis) -> None:
    from rich.console import Console
    from rich.markup import escape

    console = Console(highlight=False, emoji=False)

    def line(label: str, ok: bool, text: str) -> None:
        mark = "[green]ok[/]" if ok else "[red]!![/]"
        console.print(f"{mark} {label:<13} {escape(text)}")

    line("kernel", True, f"{d.kernel} ({d.machine})")
    line("BTF", d.btf, "/sys/kernel/btf/vmlinux" if d.btf else "missing: no CO-RE probes")
    line("lockdown", d.lockdown in (None, "none", "integrity"), d.lockdown or "not reported")
    wanted = {"CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_BPF"}
    line("privileges", wanted <= set(d.capabilities), ", ".join(d.capabilities) or "none")
    line("libbpf", d.libbpf is not None, d.libbpf or "not installed (libbpf1)")
    line(
        "probes",
        d.probes_built,
        d.probes if d.probes_built else f"not built in {d.probes}: {d.probes_advice}",
    )
    missing = [t for t, ok in d.tools.items() if not ok]
    line("tools", not missing, "all present" if not missing else "missing: " + " ".join(missing))
    if d.legacy_iptables is None:
        line("iptables", False, "not known: reading the host's tables needs root")
    else:
        line(
            "iptables",
            not d.legacy_iptables,
            "no iptables-legacy tables here"
            if not d.legacy_iptables
            else f"iptables-legacy tables {' '.join(d.legacy_iptables)} in use: nft cannot "
            "list their rules, so runs show their translations and drops without the rule",
        )
    if d.problem:
        line("hooks", False, d.problem)
    if not wanted <= set(d.capabilities):
        console.print(
            "   without root: `bundle list|show|diff` and `tui --bundle` work; `run`, `lab`, "
            "the hook checks above and reading the host's firewall need root"
        )
    for hook in d.hooks:
        state = hook["state"]
        colour = {"used": "green", "unavailable": "yellow", "failed": "red"}[state]
        points = ", ".join(hook["attach_points"])
        console.print(f"   [{colour}]{state:<11}[/] {hook['family']:<9} {escape(points)}")
        if hook["reason"]:
            console.print(f"               [dim]{escape(hook['reason'])}[/]")
