"""The probe engine: open -> configure -> load -> attach -> poll -> stop.

``Tracer.start()`` returns only when every hook that can run is attached:
that is the readiness barrier, and traffic may start right after it. A run
that has yet to read the namespaces calls ``begin()`` first: the kernel
verifies the programs (most of the start) in a thread meanwhile, and
``finish()`` links netfilter into the namespaces with rules. Every
program is held by a file descriptor of this process (BPF links, netfilter
links), so whatever way the process ends, the kernel detaches them all.
"""

from __future__ import annotations

import os
import selectors
import struct
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pathtrace.errors import KernelUnsupported, ProbesMissing
from pathtrace.kernel import hooks, libbpf, needs, nflink, reach
from pathtrace.kernel.layout import EventLayout
from pathtrace.kernel.refusals import Refusals
from pathtrace.model.event import ENCAP_CODES, HOOK_MAX, TAG_KIND_NUMBERS, TagKind
from pathtrace.model.options import Address, RunOptions
from pathtrace.system import discover, netns, observe, privileges

SHARED_MAPS = (
    "pt_events", "pt_tracked", "pt_lost", "pt_ids", "pt_flows", "pt_tunnels",
    "pt_watch_vm", "pt_watch_ns", "pt_watch_inside", "pt_watch_stats", "pt_watch_gate",
)  # fmt: skip
# pt_watch_stats' entries (enum pt_watch_stat, probes/include/pathtrace.h).
WATCH_STATS = (
    "filtered", "matched", "over_limit", "undecided", "sampled_out", "reader_behind", "ruled_out",
)  # fmt: skip
# Linked last: its links go into the namespaces with rules, known once they are read.
LINKED_LAST = "netfilter"


def for_probes(options: RunOptions, run: int) -> Tracer:
    """The tracer a run of ``options`` arms: its run id, its count of probes, the
    IP version of its target; UDP and DNS probes also followed by their flows."""
    return Tracer(
        run,
        [],
        index_limit=options.count,
        ip_versions=(options.target.version,),
        by_flow=options.kind in ("udp", "dns"),
        ring_bytes=ring_for(options.count),
    )


# The events' ring buffer: 8 MB holds ~32,000 events unread (`watch` at 10,000
# packets a second loses none); a run needs room for what its probes can make
# at once: ~31 events a probe through the lab's NAT, 264 bytes each, so 32 KB
# a probe is twice that. At least 1 MB (~4,000 events).
RING_BYTES = 8 << 20
_RING_PER_PROBE = 32 << 10
_RING_LEAST = 1 << 20


def ring_for(count: int) -> int:
    """A ring buffer's size (a power of two, as the kernel requires) for ``count`` probes."""
    wanted = max(_RING_LEAST, count * _RING_PER_PROBE)
    return min(RING_BYTES, 1 << (wanted - 1).bit_length())


def for_watch(flows: int, run: int) -> Tracer:
    """The tracer `watch` arms: no tags, packets chosen by a filter (``watch_filter``)
    start flows, at most ``flows`` of them, followed by skb and by flow key."""
    return Tracer(run, [], index_limit=0xFFFFFFFF, by_flow=True, watch_flows=flows)


def probes_dir() -> Path:
    """The probe objects: package data beside this module, where `make probes` puts
    them (PATHTRACE_PROBES overrides)."""
    env = os.environ.get("PATHTRACE_PROBES")
    if env:
        return Path(env)
    return Path(__file__).resolve().with_name("bpf")


def how_to_build_probes() -> str:
    """What to do about missing probes, for the way pathtrace was installed: from a
    checkout (make), or from a wheel (whose build compiles them)."""
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "probes" / "Makefile").exists():
        return f"run `make setup` (or `make probes`) in {checkout}"
    return (
        "this installation carries no probes: reinstall pathtrace from a wheel built "
        "where clang, llvm-strip and bpftool are present (building the wheel compiles "
        "them), or set PATHTRACE_PROBES to a folder of built objects"
    )


@dataclass
class HookStatus:
    family: str
    purpose: str
    state: str  # used, unavailable, failed
    via: str | None = None
    attach_points: tuple[str, ...] = ()
    reason: str = ""
    probe_object: str = ""  # the object file used (*.compat.bpf.o: packet reads by helper)
    # Failed for this run only (a netfilter link into a namespace), not refused by
    # the kernel: what it would have shown is missing, and the user is warned.
    this_run: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Tracer:
    """Follows the packets tagged with ``run`` through ``namespaces``."""

    def __init__(
        self,
        run: int,
        namespaces: Sequence[str],
        families: Sequence[str] | None = None,
        directory: Path | None = None,
        netfilter_namespaces: Sequence[str] | None = None,
        index_limit: int = 65536,
        refusals: Refusals | None = None,
        ask_kernel_again: bool = False,
        ip_versions: Sequence[int] = (4, 6),
        by_flow: bool = False,
        tunnels: Sequence[tuple[int, str]] = (),
        watch_flows: int = 0,
        ring_bytes: int = RING_BYTES,
    ) -> None:
        self.run = run & 0xFFFFFFFF
        # The events' ring buffer: its pages are mapped into this process (twice:
        # the data area is mapped again to read across its end), so they are
        # part of its resident size.
        self.ring_bytes = ring_bytes
        # `watch`: how many flows the filter may start (0: a run of tagged probes).
        self.watch_flows = watch_flows
        # UDP probes: an answer is any datagram of the reverse flow (common.bpf.h).
        self.by_flow = by_flow
        # (UDP port, kind) of the traced namespaces' VXLAN/Geneve devices: the
        # probes look inside datagrams to them (at most PT_TUNNEL_PORTS).
        self.tunnels = _tunnels(tunnels)
        # Netfilter links per IP version: a run's probes (and the errors quoting
        # them) are all of its target's version, and each version's links cost
        # its packets, and `start`, their own.
        self.ip_versions = tuple(ip_versions)
        self.namespaces = list(namespaces)
        # Netfilter links cost every packet of their namespace a few program
        # runs; by default only namespaces with rules (where a translation or a
        # filter verdict can happen) get them.
        self.netfilter_namespaces = (
            list(netfilter_namespaces)
            if netfilter_namespaces is not None
            else observe.with_rules(namespaces)
        )
        self.index_limit = index_limit
        # What this boot's kernel refused before is not asked again, unless told
        # to (the doctor): the new answer then replaces the remembered one.
        self.refusals = refusals or Refusals()
        self.ask_kernel_again = ask_kernel_again
        self.family_names = list(families) if families else [f.name for f in hooks.FAMILIES]
        self.directory = directory or probes_dir()
        self.statuses: list[HookStatus] = []
        self.layout: EventLayout | None = None
        self.facts: hooks.KernelFacts | None = None  # read by start()
        self._objects: list[libbpf.BpfObject] = []
        self._links: list[libbpf.Link] = []
        self._nf_fds: list[int] = []
        self.nf_distance = 0  # how far from the pivots the netfilter links had to go
        self._shared: dict[str, int] = {}
        self._ring: libbpf.RingBuffer | None = None
        self._records: list[bytes] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.on_record: Callable[[], None] | None = None
        self._flow_layout: tuple[_Struct, _Struct] | None = None
        self._tunnel_layout: _Struct | None = None
        # `watch`: pt_watch_gate's value and where sample_every is in it.
        self._gate: tuple[bytearray, int] | None = None
        self._notes: dict[int, str | None] = {}  # conntrack's messages read (note())
        # `watch`: the comparisons one of which every match passes (needs.py).
        self.watch_atoms: tuple[needs.Atom, ...] = ()
        self._preloaded: dict[Path, libbpf.BpfObject | BaseException] = {}
        self._beginning: threading.Thread | None = None
        self._preparing: threading.Thread | None = None
        self._prepare_error: BaseException | None = None
        self._wake = (-1, -1)  # a pipe that ends the polling thread
        self._begin_error: BaseException | None = None

    # -- lifecycle ----------------------------------------------------------

    def start(self) -> Tracer:
        self._begin()
        return self._finish()

    def begin(self) -> None:
        """Starts loading in a thread; ``finish()`` waits for it and links the rest."""
        self._beginning = threading.Thread(target=self._begin_apart, name="pathtrace-load")
        self._beginning.start()

    def finish(
        self, netfilter_namespaces: Sequence[str], tunnels: Sequence[tuple[int, str]]
    ) -> Tracer:
        """Ends a ``begin()``: the netfilter links into ``netfilter_namespaces``, the
        tunnels written where the programs read them."""
        if self._beginning is not None:
            self._beginning.join()
            self._beginning = None
        if self._begin_error is not None:
            raise self._begin_error  # _begin() stopped what it had started
        self.netfilter_namespaces = list(netfilter_namespaces)
        self.tunnels = _tunnels(tunnels)
        return self._finish()

    def _begin_apart(self) -> None:
        try:
            self._begin()
        except BaseException as error:  # raised again by finish(), in the caller's thread
            self._begin_error = error

    def prepare(self) -> None:
        """Starts verifying the programs in a thread, attaching nothing: a tracer made
        ahead of the run that will use it (``begin()`` then only attaches)."""
        # A daemon: a process that ends before its next run does not wait for it.
        self._preparing = threading.Thread(
            target=self._prepare_apart, name="pathtrace-verify", daemon=True
        )
        self._preparing.start()

    def wait_prepared(self) -> None:
        """Returns once ``prepare()``'s verifying has ended (well or not)."""
        preparing = self._preparing
        if preparing is not None:
            preparing.join()

    def _prepare_apart(self) -> None:
        try:
            self._prepare()
        except BaseException as error:  # raised again by begin()/finish()
            self._prepare_error = error

    def _prepare(self) -> None:
        """Reads the kernel's facts, makes the shared maps and verifies every family's
        first object."""
        privileges.require("CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_BPF", doing="tracing")
        # The doctor asks the kernel afresh; a run takes this boot's answers.
        read = hooks.KernelFacts.read if self.ask_kernel_again else hooks.KernelFacts.remembered
        self.facts = facts = read()
        if not facts.btf:
            raise KernelUnsupported(
                "this kernel has no BTF (/sys/kernel/btf/vmlinux): build it with "
                "CONFIG_DEBUG_INFO_BTF=y to trace"
            )
        names = [f.name for f in hooks.FAMILIES if f.name in self.family_names]
        if not names:
            return
        self._preload(names[0])  # its maps are the ones every object shares
        if not self._shared:  # refused: the first that loads makes them, in turn
            self._preload_all(names[1:])
            return
        # Then two at a time (the verifier runs outside the interpreter lock): each
        # load holds ~10 MB while it runs; all at once peaked at 87 MB.
        other = threading.Thread(
            target=self._preload_all, args=(names[2::2],), name="pathtrace-verify", daemon=True
        )
        other.start()
        self._preload_all(names[1::2])
        other.join()

    def _preload_all(self, names: Sequence[str]) -> None:
        for name in names:
            self._preload(name)

    def _begin(self) -> None:
        """Loads and attaches every family but the one linked last, and loads that one."""
        try:
            if self._preparing is not None:
                self._preparing.join()
                self._preparing = None
                if self._prepare_error is not None:
                    raise self._prepare_error
            else:
                self._prepare()
            assert self.facts is not None
            for family in hooks.FAMILIES:
                if family.name in self.family_names and family.name != LINKED_LAST:
                    self._start_family(family, self.facts)
        except BaseException:
            self.stop()
            self.refusals.save()
            raise

    def _finish(self) -> Tracer:
        assert self.facts is not None
        try:
            for family in hooks.FAMILIES:
                if family.name in self.family_names and family.name == LINKED_LAST:
                    self._start_family(family, self.facts)
            if self._ring is None or not self.used:
                raise KernelUnsupported("no probe could be attached: see `pathtrace doctor`")
            self._write_tunnels()
        except BaseException:
            self.stop()
            raise
        finally:
            self.refusals.save()
        self._wake = os.pipe()
        self._thread = threading.Thread(target=self._poll, name="pathtrace-ring", daemon=True)
        self._thread.start()
        return self

    def _preload(self, name: str) -> None:
        """Loads (verifies) family ``name``'s first object now, to attach it later: the
        load is what takes the time, and it depends on nothing read from namespaces."""
        family = next((f for f in hooks.FAMILIES if f.name == name), None)
        if family is None or name not in self.family_names:
            return
        assert self.facts is not None
        for mechanism in family.mechanisms:
            if hooks.reason_unavailable(family, mechanism, self.facts):
                continue
            path = self.directory / f"{family.name}.bpf.o"
            if path.exists() and not (
                not self.ask_kernel_again and self.refusals.get(path, mechanism.via)
            ):
                try:
                    obj = self._load(path, mechanism)
                except Exception as error:  # noqa: BLE001 - raised where the load is asked for
                    # (often in another thread than this one: never a traceback here)
                    self._preloaded[path] = error
                else:
                    self._preloaded[path] = obj
                    if not self._shared:  # the first object's maps are every object's
                        self._adopt_shared(obj)
            return

    def _start_family(self, family: hooks.Family, facts: hooks.KernelFacts) -> None:
        path = self.directory / f"{family.name}.bpf.o"
        if not path.exists():
            raise ProbesMissing(f"probe object {path} is missing: {how_to_build_probes()}")
        # Plain packet reads first; the helper-reading build where the kernel refuses them.
        compat = self.directory / f"{family.name}.compat.bpf.o"
        objects = [path, compat] if compat.exists() else [path]
        failures = []
        for mechanism in family.mechanisms:

            def status(state: str, reason: str = "", m: hooks.Mechanism = mechanism) -> HookStatus:
                return HookStatus(
                    family.name, family.purpose, state, m.via, m.attach_points, reason
                )

            reason = hooks.reason_unavailable(family, mechanism, facts)
            if reason:
                failures.append(status("unavailable", reason))
                continue
            used_object, why, this_run = self._load_first(objects, family, mechanism)
            if used_object is None:
                failed = status("failed", why)
                failed.this_run = this_run
                failures.append(failed)
                continue
            notes = [f"packet reads by helper calls, plain loads refused: {why}"] if why else []
            if mechanism.via == "netfilter":  # say where the links went, if anywhere
                notes.append(
                    "in " + ", ".join(discover.name_of(n) for n in self.netfilter_namespaces)
                    if self.netfilter_namespaces
                    else "loaded, but no traced namespace has rules to link into"
                )
                if self.nf_distance > 1:  # other runs hold the nearest priorities
                    notes.append(f"up to {self.nf_distance} priorities from the pivots")
            used = status("used", "; ".join(notes))
            used.probe_object = used_object.name
            self.statuses.append(used)
            self.statuses.extend(failures)  # what was tried first, and why not
            return
        self.statuses.extend(failures)
        if family.required and self.watch_flows and any("too long" in f.reason for f in failures):
            # E2BIG from the verifier: the watch's programs (filter, flow keys) are more
            # than this kernel's verifier explores (6.1's did, before PT_SPLIT); runs load.
            raise KernelUnsupported(
                f"watch cannot arm on kernel {os.uname().release}: its verifier finds the "
                f"watch's {family.name} programs too complex (E2BIG); `pathtrace run` works "
                "here, watch needs a newer kernel (tested on 6.1 and 6.18)"
            )
        if family.required:
            raise KernelUnsupported(
                f"cannot trace: {family.name} hooks unavailable ("
                + "; ".join(f"{f.via}: {f.reason}" for f in failures)
                + ")"
            )

    def _load_first(
        self, objects: list[Path], family: hooks.Family, mechanism: hooks.Mechanism
    ) -> tuple[Path | None, str, bool]:
        """Loads and attaches the first of ``objects`` the kernel accepts for
        ``mechanism``: that object (None if none), the last refusal met, and
        whether that refusal was this run's own (not the kernel's to the program)."""
        why = ""
        this_run = False
        for path in objects:
            refused = None if self.ask_kernel_again else self.refusals.get(path, mechanism.via)
            if refused:
                why = f"{refused} (earlier this boot; `pathtrace doctor` asks again)"
                this_run = False
                continue
            try:
                self._load_and_attach(path, family, mechanism)
            except (libbpf.BpfError, OSError) as error:
                why = _first_line(error)
                # The kernel's own refusals (libbpf load or attach) last; a link
                # into a namespace (OSError) depends on the namespace.
                this_run = not isinstance(error, libbpf.BpfError)
                if isinstance(error, libbpf.BpfError):
                    self.refusals.remember(path, mechanism.via, why, error.errno)
                continue
            self.refusals.forget(path, mechanism.via)
            return path, why, False
        return None, why, this_run

    def _load(self, path: Path, mechanism: hooks.Mechanism) -> libbpf.BpfObject:
        """Opens, configures and loads the programs ``mechanism`` uses from ``path``."""
        obj = libbpf.BpfObject(str(path))
        try:
            for prog in obj.programs():
                prog.autoload = prog.name in mechanism.programs
                if mechanism.via == "netfilter" and prog.autoload:
                    prog.set_type(nflink.BPF_PROG_TYPE_NETFILTER, nflink.BPF_NETFILTER)
            obj.set_rodata("pt_run", self.run.to_bytes(4, "little"))
            obj.set_rodata("pt_index_limit", self.index_limit.to_bytes(4, "little"))
            obj.set_rodata("pt_by_flow", bytes([self.by_flow]))
            obj.set_rodata("pt_watch", bytes([self.watch_flows > 0]))
            obj.set_rodata("pt_watch_flows", self.watch_flows.to_bytes(4, "little"))
            for name, fd in self._shared.items():
                obj.reuse_map(name, fd)
            if not self._shared:  # this object makes the maps every other one reuses
                obj.set_max_entries("pt_events", self.ring_bytes)
            obj.load()
        except BaseException:
            obj.close()
            raise
        return obj

    def _load_and_attach(
        self, path: Path, family: hooks.Family, mechanism: hooks.Mechanism
    ) -> None:
        preloaded = self._preloaded.pop(path, None)
        if isinstance(preloaded, BaseException):
            raise preloaded
        obj = preloaded or self._load(path, mechanism)
        links: list[libbpf.Link] = []
        nf_fds: list[int] = []
        try:
            if mechanism.via == "netfilter":
                before, after = obj.program("pt_nf_before").fd, obj.program("pt_nf_after").fd
                for namespace in self.netfilter_namespaces:
                    protos = {4: nflink.NFPROTO_IPV4, 6: nflink.NFPROTO_IPV6}
                    for proto in (protos[v] for v in self.ip_versions):
                        for hook in nflink.PIVOTS:
                            for prog_fd, side in ((before, -1), (after, +1)):
                                fd, step = nflink.create_beside(
                                    namespace, prog_fd, hook, side, proto
                                )
                                nf_fds.append(fd)
                                self.nf_distance = max(self.nf_distance, step)
            else:
                links.extend(obj.program(name).attach() for name in mechanism.programs)
        except BaseException:
            for link in links:
                link.destroy()
            for fd in nf_fds:
                os.close(fd)
            obj.close()
            raise
        self._objects.append(obj)
        self._links.extend(links)
        self._nf_fds.extend(nf_fds)
        if not self._shared:
            self._adopt_shared(obj)

    def _adopt_shared(self, obj: libbpf.BpfObject) -> None:
        """``obj``'s shared maps become the ones every later object reuses: held by
        fds of the tracer's own, as ``obj`` may yet fail to attach and be closed."""
        self._shared = {name: os.dup(obj.map_fd(name)) for name in SHARED_MAPS}
        self.layout = EventLayout.from_btf(obj.btf)
        self._flow_layout = (
            libbpf.struct_members(obj.btf, "pt_flow_key"),
            libbpf.struct_members(obj.btf, "pt_flow"),
        )
        self._tunnel_layout = libbpf.struct_members(obj.btf, "pt_tunnels")
        self._ring = libbpf.RingBuffer(self._shared["pt_events"], self._on_sample)

    def _write_tunnels(self) -> None:
        """The tunnels' ports and kinds, where the programs look them up (pt_tunnels)."""
        fd = self._shared.get("pt_tunnels")
        if fd is None or self._tunnel_layout is None:
            return
        ports = [self.tunnels[i] if i < len(self.tunnels) else (0, "") for i in range(4)]
        value = _pack(
            self._tunnel_layout,
            port=b"".join(struct.pack("!H", p) for p, _ in ports),
            kind=bytes(_ENCAP.get(k, 0) for _, k in ports),
        )
        libbpf.map_update(fd, (0).to_bytes(4, "little"), value)

    def expect_flow(self, src: Address, dst: Address, sport: int, dport: int, index: int) -> None:
        """Makes UDP datagrams ``src:sport -> dst:dport`` probe ``index``'s request: for
        probes that carry no tag (a DNS query is the server's format, not ours)."""
        fd = self._shared.get("pt_flows")
        if fd is None or not self.by_flow:
            raise ValueError("flows are followed only by a started tracer with by_flow")
        assert self._flow_layout is not None
        key_layout, value_layout = self._flow_layout
        key = _pack(
            key_layout,
            addr=dst.packed.ljust(16, b"\0"),
            sport=struct.pack("!H", sport),
            dport=struct.pack("!H", dport),
            family=bytes([dst.version]),
            protocol=bytes([17]),
        )
        value = _pack(
            value_layout,
            index=struct.pack("=I", index),
            kind=bytes([TAG_KIND_NUMBERS[TagKind.REQUEST]]),
        )
        libbpf.map_update(fd, key, value)

    def watch(
        self,
        program: Sequence[tuple[int, int, int, int]],
        namespaces: Sequence[str],
        inside: Sequence[tuple[str, int]] = (),
    ) -> None:
        """`watch`: the classic BPF ``program`` (code, jt, jf, k per instruction, for raw
        IP) the probes run on packets entering ``namespaces`` not yet followed;
        ``inside``: (namespace, ifindex) of devices whose packets come from one of
        ``namespaces`` (filtered there already)."""
        fd, where = self._shared.get("pt_watch_vm"), self._shared.get("pt_watch_ns")
        if fd is None or where is None or not self.watch_flows:
            raise ValueError("only a started tracer made by for_watch watches")
        assert self._objects
        btf = self._objects[0].btf
        vm_size, vm_members = libbpf.struct_members(btf, "pt_filter_vm")
        at = next(offset for name, offset, _ in vm_members if name == "prog")
        size, members = libbpf.struct_members(btf, "pt_watch_filter")
        offsets = {name: at + offset for name, offset, _ in members}
        limit = (size - (offsets["insn"] - at)) // 8
        if len(program) > limit:
            raise ValueError(f"the filter has {len(program)} instructions; the probes run {limit}")
        value = bytearray(vm_size)
        struct.pack_into("=I", value, offsets["len"], len(program))
        for i, (code, jt, jf, k) in enumerate(program):
            struct.pack_into("=HBBI", value, offsets["insn"] + 8 * i, code, jt, jf, k)
        libbpf.map_update_percpu(fd, (0).to_bytes(4, "little"), bytes(value))
        self._write_gate(program)
        for namespace in namespaces:
            inode = netns.inode(namespace)
            libbpf.map_update(where, struct.pack("=I", inode), b"\x01")
        devices = self._shared["pt_watch_inside"]
        for namespace, ifindex in inside:
            key = struct.pack("=II", netns.inode(namespace), ifindex)
            libbpf.map_update(devices, key, b"\x01")

    def _write_gate(self, program: Sequence[tuple[int, int, int, int]]) -> None:
        """What the filter can accept by IP version and protocol (pt_watch_gate)."""
        assert self._objects
        size, members = libbpf.struct_members(self._objects[0].btf, "pt_watch_gate")
        at = {name: offset for name, offset, _ in members}
        scope = reach.reach(list(program), udp_tunnels=bool(self.tunnels))
        value = bytearray(size)
        for name, rows in (("pick", scope.pick), ("keyed", scope.keyed)):
            value[at[name] : at[name] + 512] = rows[0] + rows[1]
        value[at["pick6_extended"]] = scope.pick6_extended
        # As many atoms as the probes hold (their BTF says how many).
        atom_size, fields = libbpf.struct_members(self._objects[0].btf, "pt_watch_atom")
        place = {name: offset for name, offset, _ in fields}
        atoms = needs.needs(list(program), (size - at["atom"]) // atom_size) or ()
        struct.pack_into("=I", value, at["atoms"], len(atoms))
        for i, atom in enumerate(atoms):
            base = at["atom"] + atom_size * i
            struct.pack_into("=H", value, base + place["off"], atom.offset)
            value[base + place["size"]] = atom.size
            value[base + place["base"]] = atom.base
            struct.pack_into("=I", value, base + place["mask"], atom.mask)
            struct.pack_into("=I", value, base + place["value"], atom.value)
        self.watch_atoms = atoms
        self._gate = (value, at["sample_every"])
        self.sample(1)

    def sample(self, every: int) -> None:
        """`watch`: of the new flows the filter matches from now on, follow 1 in
        ``every`` (the others are followed silently and counted: sampled_out)."""
        if self._gate is None:
            raise ValueError("only a watching tracer samples")
        value, at = self._gate
        struct.pack_into("=I", value, at, every)
        libbpf.map_update(self._shared["pt_watch_gate"], (0).to_bytes(4, "little"), bytes(value))

    def note(self, address: int) -> str | None:
        """conntrack's message at ``address`` (a ct_invalid event's location), as the
        conntrack probe kept it (pt_notes); None where it kept none."""
        if address in self._notes:
            return self._notes[address]
        obj = next((o for o in self._objects if Path(o.path).name == "conntrack.bpf.o"), None)
        text = None
        if obj is not None:
            size, _ = libbpf.struct_members(obj.btf, "pt_note")
            raw = libbpf.map_lookup(obj.map_fd("pt_notes"), struct.pack("=Q", address), size)
            if raw is not None:
                text = raw.split(b"\0", 1)[0].decode(errors="replace")
        self._notes[address] = text
        return text

    def watch_stats(self) -> dict[str, int]:
        """What the filter cost and found so far (WATCH_STATS)."""
        fd = self._shared.get("pt_watch_stats")
        if fd is None:
            return {}
        return {name: libbpf.percpu_u64_sum(fd, i) for i, name in enumerate(WATCH_STATS)}

    def stop(self) -> None:
        """Detaches everything; safe to call twice and after a failed start."""
        for attr in ("_preparing", "_beginning"):
            loading = getattr(self, attr)
            if loading is not None and loading is not threading.current_thread():
                loading.join()  # a load under way ends first: what it made is closed below
                setattr(self, attr, None)
        self._stopping.set()
        if self._thread is not None:
            os.write(self._wake[1], b"x")
            self._thread.join()
            self._thread = None
            for fd in self._wake:
                os.close(fd)
        if self._ring is not None:
            self._ring.consume()
        for link in self._links:
            link.destroy()
        self._links.clear()
        for fd in self._nf_fds:
            os.close(fd)
        self._nf_fds.clear()
        if self._ring is not None:
            self._ring.free()
            self._ring = None
        for obj in self._objects:
            obj.close()
        self._objects.clear()
        for preloaded in self._preloaded.values():
            if isinstance(preloaded, libbpf.BpfObject):
                preloaded.close()
        self._preloaded.clear()
        for fd in self._shared.values():
            os.close(fd)
        self._shared.clear()

    def __enter__(self) -> Tracer:
        # A tracer already started (by finish()) is only stopped on leaving.
        return self if self._thread is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- events -------------------------------------------------------------

    def _on_sample(self, data: bytes) -> None:
        with self._lock:
            self._records.append(data)
        if self.on_record is not None:
            self.on_record()

    def _poll(self) -> None:
        assert self._ring is not None
        # The ring's epoll file beside a pipe that stop() writes to: the thread
        # ends at once, not at the end of a poll's timeout.
        with selectors.DefaultSelector() as selector:
            selector.register(self._ring.epoll_fd(), selectors.EVENT_READ)
            selector.register(self._wake[0], selectors.EVENT_READ)
            while not self._stopping.is_set():
                ready = selector.select(timeout=1)
                if any(key.fd == self._wake[0] for key, _ in ready):
                    return
                self._ring.consume()

    def drain(self) -> list[bytes]:
        """The raw records received since the last drain."""
        with self._lock:
            records, self._records = self._records, []
        return records

    def lost(self) -> dict[int, int]:
        """Events lost to a full ring buffer, per hook number."""
        if "pt_lost" not in self._shared:
            return {}
        counts = {h: libbpf.percpu_u64_sum(self._shared["pt_lost"], h) for h in range(HOOK_MAX)}
        return {h: n for h, n in counts.items() if n}

    @property
    def loading(self) -> bool:
        """Begun, and the kernel still verifying (``finish()`` would wait)."""
        return self._beginning is not None and self._beginning.is_alive()

    @property
    def stopped(self) -> bool:
        """Stopped (or failed to start): a tracer is not started again."""
        return self._stopping.is_set()

    @property
    def used(self) -> list[HookStatus]:
        return [s for s in self.statuses if s.state == "used"]


PT_TUNNEL_PORTS = 4  # probes/include/pathtrace.h
_ENCAP = {kind: code for code, kind in ENCAP_CODES.items()}
_Struct = tuple[int, list[tuple[str, int, int]]]  # size; (name, offset, width) each


def _pack(layout: _Struct, **fields: bytes) -> bytes:
    """A struct's bytes, each field at the offset the object's BTF gives it."""
    size, members = layout
    out = bytearray(size)
    for name, offset, width in members:
        if name in fields:
            value = fields.pop(name)
            if len(value) != width:
                raise ValueError(f"{name} is {width} bytes in the probes, not {len(value)}")
            out[offset : offset + width] = value
    if fields:
        raise ValueError(f"the probes' struct has no {', '.join(fields)}")
    return bytes(out)


def _first_line(error: BaseException) -> str:
    text = str(error)
    log = getattr(error, "log", "")
    if log:
        last = [line for line in log.splitlines() if line.strip()][-1:]
        text += f" ({last[0].strip()})" if last else ""
    return text


def _tunnels(tunnels: Iterable[tuple[int, str]]) -> list[tuple[int, str]]:
    """Each (port, kind) once, of the kinds the probes open, as many as they hold."""
    return list(dict.fromkeys(t for t in tunnels if t[1] in _ENCAP))[:PT_TUNNEL_PORTS]
