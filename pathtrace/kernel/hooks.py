"""Hook families, and which of their mechanisms this kernel allows, with reasons.

Each family is one probe object. A family lists its mechanisms best first
(fentry, then kprobe; or the one tracepoint or netfilter way); ``plan`` says
for each one whether it can run here and, if not, why, before anything is
loaded. Loading is the final judge: the engine falls back to the next
mechanism when the kernel refuses one, and records the refusal.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pathtrace.kernel.libbpf import BTF_KIND_FUNC, BTF_KIND_STRUCT, BTF_KIND_TYPEDEF, KernelBtf
from pathtrace.kernel.refusals import boot_id

# KernelFacts of this boot and set of loaded modules (gone at reboot, like refusals).
FACTS_PATH = Path("/run/pathtrace/kernel-facts.json")


@dataclass(frozen=True)
class Mechanism:
    via: str  # tp_btf, netfilter, fentry, kprobe
    programs: tuple[str, ...]
    attach_points: tuple[str, ...]  # what a report names


@dataclass(frozen=True)
class Family:
    name: str
    purpose: str
    mechanisms: tuple[Mechanism, ...]
    required: bool  # without it there is no trace at all


FAMILIES: tuple[Family, ...] = (
    Family(
        "device",
        "transmit and receive on every device",
        (
            Mechanism(
                "tp_btf",
                ("pt_dev_xmit", "pt_dev_recv"),
                ("tp_btf/net_dev_start_xmit", "tp_btf/netif_receive_skb"),
            ),
        ),
        required=True,
    ),
    Family(
        "drop",
        "drops with their reason, and normal frees",
        (
            Mechanism(
                "tp_btf", ("pt_drop", "pt_consume"), ("tp_btf/kfree_skb", "tp_btf/consume_skb")
            ),
        ),
        required=False,
    ),
    Family(
        "netfilter",
        "each packet just before and after NAT and the FORWARD filter",
        (
            Mechanism(
                "netfilter",
                ("pt_nf_before", "pt_nf_after"),
                (
                    "netfilter link: PREROUTING/OUTPUT -101/-99, FORWARD -1/+1, "
                    "POSTROUTING/INPUT 99/101 (or the nearest free priorities)",
                ),
            ),
        ),
        required=False,
    ),
    Family(
        "veth",
        "the moment a packet crosses a veth pair",
        (
            Mechanism("fentry", ("pt_veth_fentry",), ("fentry/veth_xmit",)),
            Mechanism("kprobe", ("pt_veth_kprobe",), ("kprobe/veth_xmit",)),
        ),
        required=False,
    ),
    Family(
        "bridge",
        "the bridge's receive and forwarding decisions",
        (
            Mechanism(
                "fentry",
                ("pt_br_handle_frame_fentry", "pt_br_forward_fentry"),
                ("fentry/br_handle_frame", "fentry/br_forward"),
            ),
            Mechanism(
                "kprobe",
                ("pt_br_handle_frame_kprobe", "pt_br_forward_kprobe"),
                ("kprobe/br_handle_frame", "kprobe/br_forward"),
            ),
        ),
        required=False,
    ),
    Family(
        "nat",
        "the NAT function itself, before and after translation",
        (
            Mechanism(
                "fentry",
                ("pt_nat_fentry", "pt_nat_fexit"),
                ("fentry/nf_nat_manip_pkt", "fexit/nf_nat_manip_pkt"),
            ),
            Mechanism(
                "kprobe",
                ("pt_nat_kprobe", "pt_nat_kretprobe"),
                ("kprobe/nf_nat_manip_pkt", "kretprobe/nf_nat_manip_pkt"),
            ),
        ),
        required=False,
    ),
    Family(
        "conntrack",
        "conntrack's own message on a packet it refuses (INVALID)",
        (
            # Variadic functions: fentry cannot attach to them.
            Mechanism(
                "kprobe",
                ("pt_ct_log_invalid", "pt_ct_entry_log_invalid"),
                ("kprobe/nf_l4proto_log_invalid", "kprobe/nf_ct_l4proto_log_invalid"),
            ),
        ),
        required=False,
    ),
)

_FUNCTIONS = {
    "veth": "veth_xmit",
    "bridge": "br_forward",
    "nat": "nf_nat_manip_pkt",
    "conntrack": "nf_l4proto_log_invalid",
}


@dataclass
class KernelFacts:
    """What decides which mechanisms can run: read once per process."""

    release: str
    btf: bool
    config: dict[str, str]
    symbols: set[str] = field(default_factory=set)
    btf_types: dict[str, bool] = field(default_factory=dict)
    drop_reasons: dict[int, str] = field(default_factory=dict)  # enum skb_drop_reason

    @classmethod
    def read(cls) -> KernelFacts:
        release = os.uname().release
        config: dict[str, str] = {}
        try:
            with gzip.open("/proc/config.gz", "rt") as f:
                for line in f:
                    if line.startswith("CONFIG_"):
                        key, _, value = line.strip().partition("=")
                        config[key] = value
        except OSError:
            pass
        symbols: set[str] = set()
        btf_types: dict[str, bool] = {}
        drop_reasons: dict[int, str] = {}
        has_btf = os.path.exists(KernelBtf.PATH)
        if has_btf:
            kbtf = KernelBtf()
            try:
                # A function with BTF is one fentry and kprobes can name; modules
                # (veth, bridge, nf_nat on distribution kernels) have BTF of their own.
                symbols = {f for f in _FUNCTIONS.values() if kbtf.has(f, BTF_KIND_FUNC)}
                symbols |= _module_functions(set(_FUNCTIONS.values()) - symbols)
                for name in (
                    "btf_trace_net_dev_start_xmit",
                    "btf_trace_netif_receive_skb",
                    "btf_trace_kfree_skb",
                    "btf_trace_consume_skb",
                ):
                    btf_types[name] = kbtf.has(name, BTF_KIND_TYPEDEF)
                btf_types["bpf_nf_ctx"] = kbtf.has("bpf_nf_ctx", BTF_KIND_STRUCT)
                btf_types["BPF_NETFILTER"] = (
                    "BPF_NETFILTER" in kbtf.enum("bpf_attach_type").values()
                )
                # Read here, where the kernel's BTF is open anyway, for the decoder.
                drop_reasons = {
                    value: name.removeprefix("SKB_DROP_REASON_")
                    for value, name in kbtf.enum("skb_drop_reason").items()
                }
            finally:
                kbtf.close()
        return cls(release, has_btf, config, symbols, btf_types, drop_reasons)

    @classmethod
    def remembered(cls, path: Path = FACTS_PATH) -> KernelFacts:
        """``read()``'s answers, kept for this boot and this set of loaded modules
        (what they depend on: a module loaded later brings its functions' BTF):
        not parsing /proc/config.gz and the kernel's BTF on every run (~35 ms of a
        run's arming, measured). Unreadable or stale: read afresh and kept."""
        key = _facts_key()
        try:
            data = json.loads(path.read_text())
            if isinstance(data, dict) and key and data.get("key") == key:
                return cls._from_json(data["facts"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass
        facts = cls.read()
        if key:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(f".{path.name}.{os.getpid()}")
                tmp.write_text(json.dumps({"key": key, "facts": facts._to_json()}))
                tmp.replace(path)
            except OSError:
                pass  # costs only speed
        return facts

    def _to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["symbols"] = sorted(self.symbols)
        return data

    @classmethod
    def _from_json(cls, data: dict[str, object]) -> KernelFacts:
        def mapping(value: object) -> dict[str, object]:
            if not isinstance(value, dict):
                raise TypeError("not a mapping")
            return value

        return cls(
            release=str(data["release"]),
            btf=bool(data["btf"]),
            config={str(k): str(v) for k, v in mapping(data["config"]).items()},
            symbols={str(s) for s in data["symbols"]},  # type: ignore[attr-defined]
            btf_types={str(k): bool(v) for k, v in mapping(data["btf_types"]).items()},
            drop_reasons={int(k): str(v) for k, v in mapping(data["drop_reasons"]).items()},
        )

    def configured(self, option: str) -> bool | None:
        """True or False when /proc/config.gz says; None when the kernel does not say."""
        if not self.config:
            return None
        return self.config.get(option) in ("y", "m")


def _facts_key() -> str:
    """This boot, this kernel, these modules: what KernelFacts depend on ("" unknown)."""
    boot = boot_id()
    try:
        with open("/proc/modules") as f:
            modules = sorted(line.split(" ", 1)[0] for line in f)
    except FileNotFoundError:
        modules = []  # a kernel without modules: its set never changes
    except OSError:
        return ""
    try:  # the kernel's BTF as this process sees it (a mount may hide it)
        st = os.stat(KernelBtf.PATH)
        btf = f"{st.st_size}:{st.st_mtime_ns}"
    except OSError:
        btf = "none"
    # What read() asks of the kernel is part of the key: a pathtrace asking about
    # another function must not take an older one's answers.
    asked = sorted(_FUNCTIONS.values())
    digest = hashlib.sha256("\n".join(modules + asked).encode()).hexdigest()[:16]
    return f"{boot}:{os.uname().release}:{btf}:{digest}" if boot else ""


_MODULES = {
    "veth_xmit": "veth",
    "br_forward": "bridge",
    "nf_nat_manip_pkt": "nf_nat",
    "nf_l4proto_log_invalid": "nf_conntrack",
}


def _module_functions(functions: set[str]) -> set[str]:
    found = set()
    for function in functions:
        path = f"/sys/kernel/btf/{_MODULES[function]}"
        if os.path.exists(path):
            btf = KernelBtf.split(path)
            try:
                if btf.has(function, BTF_KIND_FUNC):
                    found.add(function)
            finally:
                btf.close()
    return found


def reason_unavailable(family: Family, mechanism: Mechanism, facts: KernelFacts) -> str | None:
    """Why ``mechanism`` cannot run on this kernel, or None if it may."""
    if not facts.btf:
        return "the kernel has no BTF (/sys/kernel/btf/vmlinux)"
    if mechanism.via == "tp_btf":
        missing = [
            p
            for p in mechanism.attach_points
            if not facts.btf_types.get("btf_trace_" + p.split("/", 1)[1], False)
        ]
        return f"the kernel has no tracepoint {', '.join(missing)}" if missing else None
    if mechanism.via == "netfilter":
        if not facts.btf_types.get("BPF_NETFILTER"):
            return f"BPF netfilter links need kernel >= 6.4 (this is {facts.release})"
        if facts.configured("CONFIG_NETFILTER_BPF_LINK") is False:
            return "CONFIG_NETFILTER_BPF_LINK is not set"
        return None
    function = _FUNCTIONS[family.name]
    if function not in facts.symbols:
        return f"the kernel has no function {function} (module not loaded?)"
    if mechanism.via == "kprobe":
        if facts.configured("CONFIG_KPROBES") is False:
            return "kprobes unavailable: CONFIG_KPROBES is not set"
        if not os.path.exists("/sys/bus/event_source/devices/kprobe"):
            return "kprobes unavailable: no kprobe PMU (CONFIG_KPROBE_EVENTS)"
        return None
    if mechanism.via == "fentry":
        if facts.configured("CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS") is False:
            return "fentry unavailable: CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS is not set"
        return None
    return f"unknown mechanism {mechanism.via}"
