"""The event layout: one source of truth (pathtrace.h), read back from each object's BTF."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from pathtrace.kernel import libbpf
from pathtrace.kernel.engine import probes_dir
from pathtrace.kernel.layout import FIELDS, EventLayout, LayoutError

HEADER = Path(__file__).resolve().parents[2] / "probes" / "include" / "pathtrace.h"
OBJECTS = ["device", "drop", "netfilter", "veth", "bridge", "nat", "conntrack"]


def _c_layout(tmp_path: Path) -> dict[str, tuple[int, int]]:
    """offsetof and sizeof of each field, as gcc lays out the same header."""
    lines = [
        f'printf("{name} %zu %zu\\n", offsetof(struct pt_event, {name}), '
        f"sizeof(((struct pt_event *)0)->{name}));"
        for name in FIELDS
    ]
    source = tmp_path / "layout.c"
    source.write_text(
        "#include <stdio.h>\n#include <stddef.h>\n#include <linux/types.h>\n"
        f'#include "{HEADER}"\nint main(void) {{\n'
        'printf("size %zu 0\\n", sizeof(struct pt_event));\n' + "\n".join(lines) + "\nreturn 0;}\n"
    )
    binary = tmp_path / "layout"
    subprocess.run(["cc", "-o", str(binary), str(source)], check=True)
    out = subprocess.run([str(binary)], capture_output=True, text=True, check=True).stdout
    return {n: (int(o), int(s)) for n, o, s in (line.split() for line in out.splitlines())}


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
@pytest.mark.parametrize("family", OBJECTS)
def test_btf_layout_matches_the_c_compiler(family: str, tmp_path: Path) -> None:
    path = probes_dir() / f"{family}.bpf.o"
    if not path.exists():
        pytest.skip("probes not built")
    obj = libbpf.BpfObject(str(path))
    try:
        size, members = libbpf.struct_members(obj.btf, "pt_event")
        layout = EventLayout.from_btf(obj.btf)
    finally:
        obj.close()
    c = _c_layout(tmp_path)
    assert size == c["size"][0] == layout.size == layout.codec.size
    btf = {name: (offset, width) for name, offset, width in members}
    for name in FIELDS:
        assert btf[name] == c[name], name


def test_a_changed_field_size_is_refused() -> None:
    members = [(name, i * 16, width) for i, (name, width) in enumerate(FIELDS.items())]
    EventLayout.from_members(len(FIELDS) * 16, members)  # well-formed: accepted
    broken = [(n, o, 2 if n == "saddr" else w) for n, o, w in members]
    with pytest.raises(LayoutError, match="saddr is 2 bytes"):
        EventLayout.from_members(len(FIELDS) * 16, broken)
    with pytest.raises(LayoutError, match="no field hook"):
        EventLayout.from_members(len(FIELDS) * 16, [m for m in members if m[0] != "hook"])


def test_network_order_fields_decode_big_endian() -> None:
    members = [(name, i * 16, width) for i, (name, width) in enumerate(FIELDS.items())]
    layout = EventLayout.from_members(len(FIELDS) * 16, members)
    raw = bytearray(layout.size)
    saddr_at = dict((n, o) for n, o, _ in members)["saddr"]
    raw[saddr_at : saddr_at + 4] = bytes([192, 168, 100, 2])  # as the kernel stores it
    assert layout.unpack(bytes(raw))["saddr"] == 0xC0A86402


def _c_values(tmp_path: Path, names: list[str], header: Path | None = None) -> dict[str, int]:
    """What the C compiler makes of ``names`` (enumerators, macros) in pathtrace.h."""
    source = tmp_path / "values.c"
    source.write_text(
        "#include <stdio.h>\n#include <linux/types.h>\n"
        f'#include "{header or HEADER}"\nint main(void) {{\n'
        + "\n".join(f'printf("{n} %lld\\n", (long long)({n}));' for n in names)
        + "\nreturn 0;}\n"
    )
    binary = tmp_path / "values"
    subprocess.run(["cc", "-o", str(binary), str(source)], check=True)
    out = subprocess.run([str(binary)], capture_output=True, text=True, check=True).stdout
    return {n: int(v) for n, v in (line.split() for line in out.splitlines())}


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_hook_via_and_tag_enums_match_the_header(tmp_path: Path) -> None:
    import re

    from pathtrace.model import tag
    from pathtrace.model.event import HOOK_CODES, HOOK_MAX, TAG_KIND_CODES, VIA_CODES

    header = HEADER.read_text()
    tables = {"PT_HOOK_": HOOK_CODES, "PT_VIA_": VIA_CODES, "PT_TAG_": TAG_KIND_CODES}
    expected: dict[str, int] = {"PT_HOOK_MAX": HOOK_MAX}
    for prefix, codes in tables.items():
        for code, member in codes.items():
            expected[prefix + member.name] = code
    expected |= {"PT_TAG_MAGIC": tag.MAGIC, "PT_TAG_MAGIC_REPLY": tag.MAGIC_REPLY}
    assert _c_values(tmp_path, sorted(expected)) == expected
    # ... and the header has no enumerator the Python side lacks.
    declared = set(re.findall(r"^\s*(PT_(?:HOOK|VIA|TAG)_\w+)\s*=", header, re.M))
    assert declared <= set(expected), declared - set(expected)


def test_the_responder_echoes_the_tag_format() -> None:
    """The lab's responder runs without pathtrace (python -I -S): its copy must agree."""
    from pathtrace.lab import responder
    from pathtrace.model import tag

    assert (responder.MAGIC, responder.MAGIC_REPLY) == (tag.MAGIC, tag.MAGIC_REPLY)


@pytest.mark.root
def test_a_failed_load_carries_libbpfs_own_words() -> None:
    """libbpf is silent while loads succeed (thousands of debug lines otherwise);
    a load that fails is loaded again with its messages on, so the error says why:
    here the netfilter programs, loaded without the program type set by hand."""
    path = probes_dir() / "netfilter.bpf.o"
    if not path.exists():
        pytest.skip("probes not built")
    obj = libbpf.BpfObject(str(path))
    try:
        with pytest.raises(libbpf.BpfError) as failed:
            obj.load()
    finally:
        obj.close()
    assert "Invalid argument" in str(failed.value)
    assert "missing BPF prog type" in failed.value.log


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_watch_stats_and_filter_sizes_match_the_header(tmp_path: Path) -> None:
    from pathtrace.kernel.decode import CT_INFO
    from pathtrace.kernel.engine import WATCH_STATS

    names = ["PT_WATCH_RUNS", "PT_WATCH_MATCHED", "PT_WATCH_OVER", "PT_WATCH_UNDECIDED"]
    names += ["PT_WATCH_SAMPLED_OUT", "PT_WATCH_BEHIND", "PT_WATCH_RULED_OUT", "PT_WATCH_STATS"]
    names += ["PT_WATCH_INSN_SIZE", "PT_CT_NONE", "PT_FLOW_SILENT"]
    source = HEADER.read_text() + "\n#define PT_WATCH_INSN_SIZE sizeof(struct pt_watch_insn)\n"
    header = tmp_path / "pathtrace.h"
    header.write_text(source)
    values = _c_values(tmp_path, names, header)
    assert [values[n] for n in names[:7]] == list(range(len(WATCH_STATS)))
    assert values["PT_WATCH_STATS"] == len(WATCH_STATS)
    assert values["PT_WATCH_INSN_SIZE"] == 8  # engine.Tracer.watch packs "=HBBI"
    assert CT_INFO[values["PT_CT_NONE"]] == "none"  # decode's name for "no entry"
    assert values["PT_FLOW_SILENT"] == 0xFFFFFFFE  # never an event's index: never sent


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_tunnel_port_count_matches_the_header(tmp_path: Path) -> None:
    from pathtrace.kernel.engine import PT_TUNNEL_PORTS

    values = _c_values(tmp_path, ["PT_TUNNEL_PORTS"], HEADER)
    assert values["PT_TUNNEL_PORTS"] == PT_TUNNEL_PORTS
