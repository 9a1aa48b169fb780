"""Bad input, the kinds a careless or hostile user types: one line, its exit code, nothing made.

Each case runs the command line in this process (``cli.main``: a traceback
would be an exception escaping it), and a sample runs as a real process. For
every case: the documented exit code, exactly one line on stderr, no
traceback, /run/netns unchanged and nothing armed (the root namespace's
fingerprint is checked by the session's guard).
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pathtrace import cli
from pathtrace.system import netns
from tests.conftest import pathtrace

pytestmark = pytest.mark.root

USAGE, TOPOLOGY, BUNDLE = 2, 4, 8
PING = ["run", "ping", "8.8.8.8"]


def _run(*extra: str) -> list[str]:
    return [*PING, *extra]


CASES: list[tuple[str, list[str], int]] = []


def case(name: str, argv: list[str], code: int) -> None:
    CASES.append((name, argv, code))


# --- the command line itself
for argv in (
    ["nosuch"],
    ["--nope"],
    ["lab"],
    ["lab", "sideways"],
    ["bundle"],
    ["bundle", "show"],
    ["bundle", "diff", "a"],
    ["run"],
    ["run", "ping"],
    ["run", "trace", "8.8.8.8"],
    ["run", "ping", "8.8.8.8", "extra"],
    _run("--format", "xml"),
    _run("--capture", "some"),
    _run("--json", "--format", "yaml"),
    ["doctor", "--verbose"],
    ["lab", "break", "melt-everything"],
):
    case(f"argv {' '.join(argv)}", argv, USAGE)

# --- targets
for target in (
    "", "x", "8.8.8", "8.8.8.8.8", "256.1.1.1", "example.com", "0.0.0.0", "::",
    "255.255.255.255", "224.0.0.1", "ff02::1", "fe80::1", "fe80::1%eth0", "8.8.8.8:53",
    "[8.8.8.8]", "-1", "8.8.8.8\n", " 8.8.8.8", "١.١.١.١", "8.8.8.8/32", "::ffff:",
    "1.2.3.4%x", "8.8.8.8\x00", "🙂",
):  # fmt: skip
    case(f"ping {target!r}", ["run", "ping", target], USAGE)
for kind in ("udp", "tcp"):
    for target in (
        "8.8.8.8", "8.8.8.8:", "8.8.8.8:0", "8.8.8.8:65536", "8.8.8.8:-1", "8.8.8.8:²",
        "8.8.8.8:x", ":53", "2001:db8::1:53", "[2001:db8::1]", "[2001:db8::1]:",
        "[2001:db8::1]:99999", "host:53", "8.8.8.8:53:53", "8.8.8.8:٥٣", "0.0.0.0:53",
        "[ff02::1]:53", "8.8.8.8: 53",
    ):  # fmt: skip
        case(f"{kind} {target!r}", ["run", kind, target], USAGE)

# --- numbers
for option, values in {
    "-c": ["0", "-1", "1001", "1e3", "x", "", "99999999999999999999"],
    "-i": ["-1", "nan", "inf", "-inf", "61", "x", "", "1e308"],
    "-s": ["-1", "0", "7", "70000", "2000000000", "65508", "x", "1.5"],
    "--ttl": ["0", "256", "-1", "x", "64.5"],
    "--timeout": ["-5", "0", "nan", "inf", "1e308", "601", "x", "-inf"],
}.items():
    for value in values:
        case(f"{option} {value!r}", _run(option, value), USAGE)
case("-s 65500 over IPv6 tcp", ["run", "tcp", "[2001:4860:4860::8888]:80", "-s", "65516"], USAGE)

# --- watch
for argv in (
    ["watch"],
    ["watch", ""],
    ["watch", "udp prt 53"],
    ["watch", "arp"],  # not IP: the probes cannot pick it
    ["watch", " or ".join(f"port {p}" for p in range(60))],  # more than the probes hold
    ["watch", "udp", "--duration", "0"],
    ["watch", "udp", "--duration", "x"],
    ["watch", "udp", "--count", "0"],
    ["watch", "udp", "--max-flows", "0"],
    ["watch", "udp", "--packets-kept", "0"],
    ["watch", "udp", "--from", "nosuchnode"],
    ["watch", "udp", "--from", "container1", "--all"],
    ["watch", "udp", "--format", "mermaid"],
    ["tui", "--watch", "udp prt 53"],  # said before the screen opens
    ["tui", "captures/examples/ping-answered", "--bundle", "captures/examples/forward-drop"],
):
    case(f"argv {' '.join(argv)}", argv, USAGE)

# --- --from
for source in (
    "", " ", "nosuchnode", "/etc/passwd", "/tmp", "/dev/null", "/nonexistent", "999999999",
    "lab:nosuch", "netns:nosuch", "container1\n", "a\x01b", "/proc/self/ns/mnt",
    "/proc/1/ns/net", "/proc/self/ns/uts", "../container1", "lab:", "netns:",
):  # fmt: skip
    case(f"--from {source!r}", _run("--from", source), USAGE)


def _files(root: Path) -> dict[str, Path]:
    """Things on disk the path cases point at, made once per test."""
    other = root / "theirs"  # a folder another user owns, with planted links
    other.mkdir()
    os.chown(other, 65534, 65534)
    wide = root / "wide"  # anyone can write in it, no sticky bit
    wide.mkdir()
    wide.chmod(0o777)
    full = root / "full"
    full.mkdir()
    (full / "x").write_text("x")
    regular = root / "file"
    regular.write_text("x")
    link = root / "link-to-theirs"
    link.symlink_to(other)
    os.lchown(link, 65534, 65534)
    fifo = root / "fifo"
    os.mkfifo(fifo)
    binary = root / "binary.toml"
    binary.write_bytes(bytes(range(256)) * 4)
    latin = root / "latin.toml"
    latin.write_bytes('prefix = "caf\xe9-"\n'.encode("latin-1"))
    huge = root / "huge.toml"
    huge.write_bytes(b"# " + b"x" * (2 << 20) + b"\n")
    return {
        "theirs": other,
        "wide": wide,
        "full": full,
        "file": regular,
        "link": link,
        "fifo": fifo,
        "binary": binary,
        "latin": latin,
        "huge": huge,
        "dir": root,
    }


def _topology(root: Path, name: str, text: str) -> str:
    path = root / name
    path.write_text(text)
    return str(path)


BASE = '[nodes.a]\n[nodes.a.interfaces.e0]\nkind = "bridge"\n'
TOPOLOGY_TEXTS = {
    "not TOML": "this is = = not toml",
    "unknown field": 'colour = "blue"\n' + BASE,
    "node name with a newline": '[nodes."a\\n"]\n',
    "interface name with a newline": '[nodes.a.interfaces."e0\\n"]\nkind = "bridge"\n',
    "interface name too long": '[nodes.a.interfaces.abcdefghijklmnopq]\nkind = "bridge"\n',
    "prefix with a slash": 'prefix = "../x"\n' + BASE,
    "prefix with a newline": 'prefix = "p\\n"\n' + BASE,
    "host-only sysctl": BASE + '[nodes.a.sysctls]\n"net.core.bpf_jit_enable" = "1"\n',
    "unknown sysctl": BASE + '[nodes.a.sysctls]\n"net.ipv4.no_such_thing" = "1"\n',
    "non-net sysctl": BASE + '[nodes.a.sysctls]\n"kernel.panic" = "1"\n',
    "sysctl with a slash": BASE + '[nodes.a.sysctls]\n"net/ipv4/ip_forward" = "1"\n',
    "rule with a newline": BASE
    + '[[nodes.a.rules]]\nname = "r"\nchain = "filter FORWARD"\n'
    + 'rule = "accept\\nflush ruleset"\n',
    "route to nowhere": BASE + '[nodes.a]\nroutes = [{ to = "default", via = "x" }]\n',
    "address not an address": '[nodes.a.interfaces.e0]\nkind = "bridge"\naddresses = ["x/24"]\n',
    "mtu a string": '[nodes.a.interfaces.e0]\nkind = "bridge"\nmtu = "big"\n',
    "peer to nothing": '[nodes.a.interfaces.e0]\npeer = "b:e1"\n',
    "unknown kind": '[nodes.a.interfaces.e0]\nkind = "wormhole"\n',
}
TOPOLOGY_FILES = ["/nonexistent.toml", "dir", "fifo", "/dev/null", "binary", "latin", "huge"]
SAVE_PLACES = [
    "theirs/bundle",  # inside another user's folder
    "theirs",  # another user's folder itself
    "wide/bundle",  # inside a folder anyone can write in
    "full",  # an existing folder that is not empty
    "file",  # a regular file
    "file/bundle",  # under a regular file
    "link/bundle",  # through another user's symlink
    "fifo",
    "/proc/pathtrace-bundle",
    "/proc/self/bundle",
    "/",
    ".",
    "..",
    "/dev/null",
]
BUNDLE_PLACES = ["/nonexistent", "file", "dir", "fifo", "/dev/null", "theirs", "/proc/self"]


@pytest.fixture(scope="module")
def places(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    root = tmp_path_factory.mktemp("bad-input")
    root.chmod(0o755)
    yield _files(root)


def _resolve(text: str, places: dict[str, Path]) -> str:
    head, _, rest = text.partition("/")
    if head in places:
        return str(places[head] / rest) if rest else str(places[head])
    return text


def _all_cases(places: dict[str, Path]) -> list[tuple[str, list[str], int]]:
    cases = list(CASES)
    root = places["dir"]
    for name, text in TOPOLOGY_TEXTS.items():
        path = _topology(root, f"{name.replace(' ', '-')}.toml", text)
        cases.append((f"lab up --topology ({name})", ["lab", "up", "--topology", path], TOPOLOGY))
        if "sysctl" not in name or "non-net" in name or "slash" in name:  # `show` reads no kernel
            cases.append((f"lab show --topology ({name})", ["lab", "show", "--topology", path], 4))
    for where in TOPOLOGY_FILES:
        path = _resolve(where, places)
        cases.append((f"lab up --topology {where}", ["lab", "up", "--topology", path], TOPOLOGY))
        cases.append((f"run --topology {where}", _run("--topology", path), TOPOLOGY))
    for where in SAVE_PLACES:
        cases.append((f"--save {where}", _run("--save", _resolve(where, places)), USAGE))
    for where in BUNDLE_PLACES:
        path = _resolve(where, places)
        cases.append((f"bundle show {where}", ["bundle", "show", path], BUNDLE))
        cases.append((f"bundle diff {where}", ["bundle", "diff", path, path], BUNDLE))
        cases.append((f"tui {where}", ["tui", path], BUNDLE))  # before the screen opens
    return cases


def _check(argv: list[str], code: int, capsys: pytest.CaptureFixture[str]) -> str:
    before = sorted(netns.names())
    try:
        got = cli.main(argv)
    except SystemExit as exit_:  # argparse's --help path: not expected here
        got = int(exit_.code or 0)
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert "Traceback" not in err
    assert got == code, f"exit {got}, wanted {code}: {err.strip()}"
    assert len(lines) == 1 and lines[0].startswith("pathtrace: "), err
    assert sorted(netns.names()) == before, "a bad input made or removed namespaces"
    return lines[0]


def test_at_least_150_bad_inputs_each_one_line_and_its_exit_code(
    places: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    cases = _all_cases(places)
    assert len(cases) >= 150
    failures = []
    for name, argv, code in cases:
        try:
            _check(argv, code, capsys)
        except AssertionError as error:
            failures.append(f"{name}: {error}")
    assert not failures, f"{len(failures)} of {len(cases)} failed:\n" + "\n".join(failures)
    # Nothing was made where a refused save pointed.
    theirs = places["theirs"]
    assert sorted(p.name for p in theirs.iterdir()) == []
    assert sorted(p.name for p in places["wide"].iterdir()) == []
    assert not any(".partial-" in p.name for p in places["dir"].iterdir())


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "udp", "8.8.8.8:²"],
        ["run", "ping", "8.8.8.8", "-i", "nan"],
        ["run", "ping", "8.8.8.8", "-s", "70000"],
        ["run", "ping", "8.8.8.8", "--from", "/dev/null"],
        ["bundle", "show", "/dev/null"],
    ],
)
def test_a_sample_as_a_real_process(argv: list[str]) -> None:
    done = pathtrace(*argv)
    assert done.returncode in (2, 8), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_bundle_list_into_a_closed_pipe_is_quiet(tmp_path: Path) -> None:
    examples = Path(__file__).resolve().parents[2] / "captures" / "examples"
    done = subprocess.run(
        f"{sys.executable} -m pathtrace bundle list {examples} | head -c 1",
        shell=True,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr


def test_the_places_are_what_the_cases_say(places: dict[str, Path]) -> None:
    assert places["theirs"].stat().st_uid == 65534
    assert stat.S_ISFIFO(places["fifo"].stat().st_mode)
    assert places["link"].is_symlink()


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "ping", "8.8.8.8"],
        ["lab", "up"],
        ["lab", "down"],
        ["lab", "status"],
        ["lab", "break", "no-masquerade"],
        ["lab", "fix"],
        ["watch", "udp port 53"],
    ],
)
def test_every_root_only_command_as_another_user_is_exit_3(argv: list[str]) -> None:
    done = _as_nobody(argv)
    assert done.returncode == 3, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "CAP_" in lines[0] and "Traceback" not in done.stderr


def test_doctor_as_another_user_says_what_it_cannot_know() -> None:
    done = _as_nobody(["doctor"])
    assert done.returncode == 3 and "Traceback" not in done.stderr, done.stderr
    assert "not known: reading the host's tables needs root" in done.stdout
    assert "without root: `bundle list|show|diff`" in done.stdout
    examples = Path(__file__).resolve().parents[2] / "captures" / "examples"
    shown = _as_nobody(["bundle", "show", str(examples / "ping-answered")])
    assert shown.returncode == 0 and "answered" in shown.stdout, shown.stderr


def _as_nobody(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--",
         sys.executable, "-m", "pathtrace", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd="/",
    )  # fmt: skip
