"""A thin, typed ctypes layer over the system libbpf (libbpf.so.1).

Only what pathtrace uses: open an object, configure it (program types,
autoload, `const volatile` settings), load it (a failure carries the verifier
log), attach, maps, BTF, and ring buffer polling. Everything else about BPF
lives in C under probes/. Each phase fails with its own exception.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import platform
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from pathtrace.errors import EnvironmentProblem

BTF_KIND_STRUCT, BTF_KIND_ENUM, BTF_KIND_TYPEDEF, BTF_KIND_FUNC = 4, 6, 8, 12
BTF_KIND_DATASEC, BTF_KIND_ENUM64 = 15, 19

_vp = ctypes.c_void_p
_cp = ctypes.c_char_p
_int = ctypes.c_int

SampleFn = ctypes.CFUNCTYPE(_int, _vp, _vp, ctypes.c_size_t)
_PrintFn = ctypes.CFUNCTYPE(_int, _int, _cp, _vp)


class BpfError(Exception):
    """A libbpf call failed; ``phase`` is open, load, attach, map or poll."""

    def __init__(self, phase: str, what: str, err: int, log: str = "") -> None:
        detail = os.strerror(err) if err else "failed"
        super().__init__(f"{phase} {what}: {detail}")
        self.phase = phase
        self.errno = err
        self.log = log


def _signatures(lib: ctypes.CDLL) -> None:
    table: dict[str, tuple[object, list[object]]] = {
        "bpf_object__open_file": (_vp, [_cp, _vp]),
        "bpf_object__load": (_int, [_vp]),
        "bpf_object__close": (None, [_vp]),
        "bpf_object__btf": (_vp, [_vp]),
        "bpf_object__next_program": (_vp, [_vp, _vp]),
        "bpf_object__find_map_by_name": (_vp, [_vp, _cp]),
        "bpf_program__name": (_cp, [_vp]),
        "bpf_program__section_name": (_cp, [_vp]),
        "bpf_program__set_autoload": (_int, [_vp, ctypes.c_bool]),
        "bpf_program__autoload": (ctypes.c_bool, [_vp]),
        "bpf_program__set_type": (_int, [_vp, _int]),
        "bpf_program__set_expected_attach_type": (_int, [_vp, _int]),
        "bpf_program__set_log_buf": (_int, [_vp, _vp, ctypes.c_size_t]),
        "bpf_program__set_log_level": (_int, [_vp, ctypes.c_uint32]),
        "bpf_program__fd": (_int, [_vp]),
        "bpf_program__attach": (_vp, [_vp]),
        "bpf_link__destroy": (_int, [_vp]),
        "bpf_map__fd": (_int, [_vp]),
        "bpf_map__reuse_fd": (_int, [_vp, _int]),
        "bpf_map__set_max_entries": (_int, [_vp, ctypes.c_uint32]),
        "bpf_map__initial_value": (_vp, [_vp, ctypes.POINTER(ctypes.c_size_t)]),
        "bpf_map_lookup_elem": (_int, [_int, _vp, _vp]),
        "bpf_map_update_elem": (_int, [_int, _vp, _vp, ctypes.c_uint64]),
        "btf__parse": (_vp, [_cp, _vp]),
        "btf__parse_split": (_vp, [_cp, _vp]),
        "btf__free": (None, [_vp]),
        "btf__find_by_name_kind": (ctypes.c_int32, [_vp, _cp, ctypes.c_uint32]),
        "btf__type_by_id": (_vp, [_vp, ctypes.c_uint32]),
        "btf__name_by_offset": (_cp, [_vp, ctypes.c_uint32]),
        "btf__resolve_size": (ctypes.c_int64, [_vp, ctypes.c_uint32]),
        "btf__type_cnt": (ctypes.c_uint32, [_vp]),
        "ring_buffer__new": (_vp, [_int, SampleFn, _vp, _vp]),
        "ring_buffer__poll": (_int, [_vp, _int]),
        "ring_buffer__consume": (_int, [_vp]),
        "ring_buffer__epoll_fd": (_int, [_vp]),
        "ring_buffer__free": (None, [_vp]),
        "libbpf_set_print": (_vp, [_vp]),
        "libbpf_num_possible_cpus": (_int, []),
        "libbpf_major_version": (ctypes.c_uint32, []),
        "libbpf_minor_version": (ctypes.c_uint32, []),
    }
    for name, (restype, argtypes) in table.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes


_lib: ctypes.CDLL | None = None
_libc = ctypes.CDLL(None, use_errno=True)
_messages: list[str] = []


def _collect(level: int, fmt: bytes | None, args: int | None) -> int:
    # libbpf hands us printf arguments as a va_list; on x86-64 that is a
    # pointer and vsnprintf can take it as is.
    buf = ctypes.create_string_buffer(1024)
    _libc.vsnprintf(buf, ctypes.c_size_t(1024), fmt, _vp(args))
    _messages.append(buf.value.decode(errors="replace").rstrip())
    del _messages[:-200]
    return 0


_print_fn = _PrintFn(_collect)
_lib_lock = threading.Lock()


def lib() -> ctypes.CDLL:
    if _lib is not None:
        return _lib
    with _lib_lock:  # the print callback is process-wide: set it once
        return _load()


def _load() -> ctypes.CDLL:
    global _lib
    if _lib is None:
        name = ctypes.util.find_library("bpf") or "libbpf.so.1"
        try:
            _lib = ctypes.CDLL(name, use_errno=True)
        except OSError:
            raise EnvironmentProblem(
                "libbpf is not installed (libbpf1); run `make setup`"
            ) from None
        _signatures(_lib)
        # Silent by default: a load prints thousands of debug lines, each a call
        # into Python that waits for the interpreter lock while another thread
        # (the scapy import) holds it. Failures are loaded again, printing.
        _lib.libbpf_set_print(None)
    return _lib


@contextmanager
def _printing() -> Iterator[None]:
    """libbpf's messages collected for the duration (x86-64: va_list is a pointer)."""
    if platform.machine() != "x86_64":
        yield
        return
    library = lib()  # loaded before the lock: lib() takes it the first time
    with _lib_lock:
        library.libbpf_set_print(ctypes.cast(_print_fn, _vp))
        try:
            yield
        finally:
            library.libbpf_set_print(None)


def version() -> str:
    return f"{lib().libbpf_major_version()}.{lib().libbpf_minor_version()}"


def recent_messages(count: int = 20) -> list[str]:
    """libbpf's own last messages: the why behind a failure."""
    return _messages[-count:]


def _errno() -> int:
    return ctypes.get_errno() or errno.EINVAL


@dataclass
class Program:
    obj: BpfObject
    ptr: int

    @property
    def name(self) -> str:
        return (lib().bpf_program__name(self.ptr) or b"").decode()

    @property
    def section(self) -> str:
        return (lib().bpf_program__section_name(self.ptr) or b"").decode()

    @property
    def autoload(self) -> bool:
        return bool(lib().bpf_program__autoload(self.ptr))

    @autoload.setter
    def autoload(self, value: bool) -> None:
        lib().bpf_program__set_autoload(self.ptr, value)

    def set_type(self, prog_type: int, attach_type: int) -> None:
        lib().bpf_program__set_type(self.ptr, prog_type)
        lib().bpf_program__set_expected_attach_type(self.ptr, attach_type)

    @property
    def fd(self) -> int:
        return int(lib().bpf_program__fd(self.ptr))

    def attach(self) -> Link:
        ctypes.set_errno(0)
        link = lib().bpf_program__attach(self.ptr)
        if not link:
            raise BpfError("attach", self.name, _errno())
        return Link(link)


class Link:
    """An attached program; destroying it (or exiting) detaches it."""

    def __init__(self, ptr: int) -> None:
        self.ptr: int | None = ptr

    def destroy(self) -> None:
        if self.ptr:
            lib().bpf_link__destroy(self.ptr)
            self.ptr = None


class BpfObject:
    """One CO-RE object: open -> configure -> load; then attach and maps."""

    LOG_SIZE = 1 << 20

    def __init__(self, path: str) -> None:
        self.path = path
        ctypes.set_errno(0)
        ptr = lib().bpf_object__open_file(path.encode(), None)
        if not ptr:
            raise BpfError("open", path, _errno())
        self.ptr: int | None = ptr
        self._log_bufs: dict[str, ctypes.Array[ctypes.c_char]] = {}

    def programs(self) -> Iterator[Program]:
        prog = lib().bpf_object__next_program(self.ptr, None)
        while prog:
            yield Program(self, prog)
            prog = lib().bpf_object__next_program(self.ptr, prog)

    def program(self, name: str) -> Program:
        for prog in self.programs():
            if prog.name == name:
                return prog
        raise KeyError(name)

    def map_ptr(self, name: str) -> int:
        ptr = lib().bpf_object__find_map_by_name(self.ptr, name.encode())
        if not ptr:
            raise BpfError("map", f"{name} in {self.path}", errno.ENOENT)
        return int(ptr)

    def map_fd(self, name: str) -> int:
        return int(lib().bpf_map__fd(self.map_ptr(name)))

    def reuse_map(self, name: str, fd: int) -> None:
        """Shares a map already made by another object (before load)."""
        err = lib().bpf_map__reuse_fd(self.map_ptr(name), fd)
        if err:
            raise BpfError("map", f"reuse {name}", -err)

    def set_max_entries(self, name: str, entries: int) -> None:
        err = lib().bpf_map__set_max_entries(self.map_ptr(name), entries)
        if err:
            raise BpfError("resize", f"{name} in {self.path}", -err)

    def set_rodata(self, variable: str, value: bytes) -> None:
        """Sets a `const volatile` global before load."""
        size = ctypes.c_size_t()
        data = lib().bpf_map__initial_value(self.map_ptr(".rodata"), ctypes.byref(size))
        offset = datasec_offset(self.btf, ".rodata", variable)
        if not data or offset is None or offset + len(value) > size.value:
            raise BpfError("load", f"no setting {variable} in {self.path}", errno.ENOENT)
        ctypes.memmove(data + offset, value, len(value))

    @property
    def btf(self) -> int:
        return int(lib().bpf_object__btf(self.ptr) or 0)

    def load(self) -> None:
        for prog in self.programs():
            if prog.autoload:
                buf = ctypes.create_string_buffer(self.LOG_SIZE)
                self._log_bufs[prog.name] = buf
                lib().bpf_program__set_log_buf(prog.ptr, buf, self.LOG_SIZE)
        ctypes.set_errno(0)
        err = lib().bpf_object__load(self.ptr)
        if err:
            logs = "\n".join(
                f"-- {name}\n{buf.value.decode(errors='replace')}"
                for name, buf in self._log_bufs.items()
                if buf.value
            )
            # A refusal (EPERM) needs no second load: errno says it all.
            libbpf_says = "" if -err == errno.EPERM else "\n".join(self._libbpf_words())
            raise BpfError(
                "load", os.path.basename(self.path), -err, log=(logs + "\n" + libbpf_says).strip()
            )
        self._log_bufs.clear()

    def _libbpf_words(self) -> list[str]:
        """libbpf's own account of this object's failed load: the same file opened
        and loaded again (same programs on) with its messages collected."""
        wanted = {prog.name: prog.autoload for prog in self.programs()}
        again = BpfObject(self.path)
        try:
            for prog in again.programs():
                prog.autoload = wanted.get(prog.name, prog.autoload)
            _messages.clear()
            with _printing():
                lib().bpf_object__load(again.ptr)
            return recent_messages()
        finally:
            again.close()

    def close(self) -> None:
        if self.ptr:
            lib().bpf_object__close(self.ptr)
            self.ptr = None


class RingBuffer:
    """Calls ``on_sample(bytes)`` for each record, from the thread that polls."""

    def __init__(self, map_fd: int, on_sample: Callable[[bytes], None]) -> None:
        def sample(_ctx: int | None, data: int | None, size: int) -> int:
            on_sample(ctypes.string_at(data or 0, size))
            return 0

        self._callback = SampleFn(sample)  # kept alive as long as the ring buffer
        ctypes.set_errno(0)
        ptr = lib().ring_buffer__new(map_fd, self._callback, None, None)
        if not ptr:
            raise BpfError("poll", "ring buffer", _errno())
        self.ptr: int | None = ptr

    def poll(self, timeout_ms: int) -> int:
        n = int(lib().ring_buffer__poll(self.ptr, timeout_ms))
        if n < 0 and -n != errno.EINTR:
            raise BpfError("poll", "ring buffer", -n)
        return max(n, 0)

    def consume(self) -> int:
        return max(int(lib().ring_buffer__consume(self.ptr)), 0)

    def epoll_fd(self) -> int:
        """Readable when a record waits (to wait on it beside other files)."""
        return int(lib().ring_buffer__epoll_fd(self.ptr))

    def free(self) -> None:
        if self.ptr:
            lib().ring_buffer__free(self.ptr)
            self.ptr = None


def map_update(map_fd: int, key: bytes, value: bytes) -> None:
    """Writes one entry of a map (any flags: BPF_ANY)."""
    k = ctypes.create_string_buffer(key, len(key))
    v = ctypes.create_string_buffer(value, len(value))
    if lib().bpf_map_update_elem(map_fd, k, v, 0) != 0:
        raise BpfError("map", "update", _errno())


def map_lookup(map_fd: int, key: bytes, size: int) -> bytes | None:
    """One entry's value (``size`` bytes), or None where the map has no such key."""
    k = ctypes.create_string_buffer(key, len(key))
    v = ctypes.create_string_buffer(size)
    if lib().bpf_map_lookup_elem(map_fd, k, v) != 0:
        return None
    return v.raw


def map_update_percpu(map_fd: int, key: bytes, value: bytes) -> None:
    """Writes ``value`` as one entry's value on every possible CPU (a per-CPU map)."""
    cpus = int(lib().libbpf_num_possible_cpus())
    each = value.ljust((len(value) + 7) // 8 * 8, b"\0")  # per-CPU values are 8-aligned
    map_update(map_fd, key, each * cpus)


def percpu_u64_sum(map_fd: int, key: int) -> int:
    cpus = int(lib().libbpf_num_possible_cpus())
    values = (ctypes.c_uint64 * cpus)()
    k = ctypes.c_uint32(key)
    if lib().bpf_map_lookup_elem(map_fd, ctypes.byref(k), values) != 0:
        return 0
    return sum(values)


# --- BTF ---------------------------------------------------------------------


class _BtfType(ctypes.Structure):
    _fields_ = [
        ("name_off", ctypes.c_uint32),
        ("info", ctypes.c_uint32),
        ("size_or_type", ctypes.c_uint32),
    ]


class _BtfMember(ctypes.Structure):
    _fields_ = [
        ("name_off", ctypes.c_uint32),
        ("type", ctypes.c_uint32),
        ("offset", ctypes.c_uint32),
    ]


class _BtfVarSecinfo(ctypes.Structure):
    _fields_ = [("type", ctypes.c_uint32), ("offset", ctypes.c_uint32), ("size", ctypes.c_uint32)]


class _BtfEnum(ctypes.Structure):
    _fields_ = [("name_off", ctypes.c_uint32), ("val", ctypes.c_int32)]


class _BtfEnum64(ctypes.Structure):
    _fields_ = [("name_off", ctypes.c_uint32), ("lo", ctypes.c_uint32), ("hi", ctypes.c_uint32)]


def _type(btf: int, type_id: int) -> _BtfType:
    return _BtfType.from_address(lib().btf__type_by_id(btf, type_id))


def _name(btf: int, offset: int) -> str:
    return (lib().btf__name_by_offset(btf, offset) or b"").decode()


def find_type(btf: int, name: str, kind: int) -> int | None:
    type_id = int(lib().btf__find_by_name_kind(btf, name.encode(), kind))
    return type_id if type_id > 0 else None


def struct_members(btf: int, name: str) -> tuple[int, list[tuple[str, int, int]]]:
    """(size, [(member, byte offset, byte size)]) of ``struct name``."""
    type_id = find_type(btf, name, BTF_KIND_STRUCT)
    if type_id is None:
        raise KeyError(f"struct {name}")
    t = _type(btf, type_id)
    vlen = t.info & 0xFFFF
    base = ctypes.addressof(t) + ctypes.sizeof(_BtfType)
    members = []
    for i in range(vlen):
        m = _BtfMember.from_address(base + i * ctypes.sizeof(_BtfMember))
        bit_offset = m.offset & 0xFFFFFF if t.info >> 31 else m.offset
        members.append(
            (_name(btf, m.name_off), bit_offset // 8, int(lib().btf__resolve_size(btf, m.type)))
        )
    return int(t.size_or_type), members


def enum_values(btf: int, name: str) -> dict[int, str]:
    for kind in (BTF_KIND_ENUM, BTF_KIND_ENUM64):
        type_id = find_type(btf, name, kind)
        if type_id is None:
            continue
        t = _type(btf, type_id)
        base = ctypes.addressof(t) + ctypes.sizeof(_BtfType)
        values = {}
        for i in range(t.info & 0xFFFF):
            if kind == BTF_KIND_ENUM:
                e = _BtfEnum.from_address(base + i * ctypes.sizeof(_BtfEnum))
                values[e.val] = _name(btf, e.name_off)
            else:
                e64 = _BtfEnum64.from_address(base + i * ctypes.sizeof(_BtfEnum64))
                values[e64.hi << 32 | e64.lo] = _name(btf, e64.name_off)
        return values
    return {}


def datasec_offset(btf: int, section: str, variable: str) -> int | None:
    type_id = find_type(btf, section, BTF_KIND_DATASEC)
    if type_id is None:
        return None
    t = _type(btf, type_id)
    base = ctypes.addressof(t) + ctypes.sizeof(_BtfType)
    for i in range(t.info & 0xFFFF):
        entry = _BtfVarSecinfo.from_address(base + i * ctypes.sizeof(_BtfVarSecinfo))
        if _name(btf, _type(btf, entry.type).name_off) == variable:
            return int(entry.offset)
    return None


class KernelBtf:
    """The running kernel's BTF (/sys/kernel/btf/vmlinux), parsed once."""

    PATH = "/sys/kernel/btf/vmlinux"

    def __init__(self, ptr: int | None = None) -> None:
        if ptr is None:
            ctypes.set_errno(0)
            ptr = lib().btf__parse(self.PATH.encode(), None)
        if not ptr:
            raise EnvironmentProblem(
                f"this kernel has no BTF ({self.PATH}): CO-RE probes cannot run here; "
                "use a kernel built with CONFIG_DEBUG_INFO_BTF=y"
            )
        self.ptr = int(ptr)
        self._base: KernelBtf | None = None

    @classmethod
    def split(cls, path: str) -> KernelBtf:
        """A module's BTF, which builds on vmlinux's."""
        base = cls()
        module = cls(lib().btf__parse_split(path.encode(), base.ptr))
        module._base = base
        return module

    def has(self, name: str, kind: int) -> bool:
        return find_type(self.ptr, name, kind) is not None

    def enum(self, name: str) -> dict[int, str]:
        return enum_values(self.ptr, name)

    def close(self) -> None:
        if self.ptr:
            lib().btf__free(self.ptr)
            self.ptr = 0
        if self._base is not None:
            self._base.close()
