"""Hostile bundles: random mutations of real ones never give a traceback, a hang or a blow-up.

The example bundles (made by the tool) are mutated - truncated, bytes flipped,
JSON values swapped for other types, huge numbers and strings, deep nesting,
files replaced by symlinks (to /dev/zero, out of the bundle), FIFOs, folders -
and each is shown as `pathtrace bundle show` shows it, in one worker process
with a memory limit and a per-case alarm. Each case must end in exit 0 or 1
(the mutation did not matter) or 8 (one line: a bad bundle). No root needed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "captures" / "examples"
CASES = 400
MEMORY = 3 << 30  # address space the worker may use (Python and scapy take ~1 GiB of it)
SECONDS = 20  # per case

WORKER = textwrap.dedent(
    """
    import contextlib, io, json, os, random, resource, shutil, signal, sys, traceback
    from pathlib import Path

    from pathtrace import cli

    examples, work, cases, memory, seconds = (
        Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    )
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    rng = random.Random(20261129)
    sources = sorted(p for p in examples.iterdir() if (p / "bundle.json").exists())
    HUGE = [None, True, -1, 0, 1e308, -1e308, 10**30, "", "x" * 2_000_000, [], {}, [1] * 100_000,
            {"a": 1}, "192.168.0.1", "ff" * 40]

    def deep(n):
        return "[" * n + "]" * n

    def json_paths(value, path=()):
        yield path
        if isinstance(value, dict):
            for k, v in value.items():
                yield from json_paths(v, path + (k,))
        elif isinstance(value, list):
            for i, v in enumerate(value[:20]):
                yield from json_paths(v, path + (i,))

    def set_at(value, path, new):
        if not path:
            return new
        inner = value
        for key in path[:-1]:
            inner = inner[key]
        inner[path[-1]] = new
        return value

    def mutate_json(text):
        data = json.loads(text)
        paths = list(json_paths(data))
        path = rng.choice(paths)
        choice = rng.random()
        if choice < 0.1:
            return deep(rng.choice([1000, 100_000])).encode()
        new = rng.choice(HUGE)
        return json.dumps(set_at(data, path, new)).encode()

    def mutate(folder):
        files = sorted(p for p in folder.iterdir() if p.is_file() and not p.is_symlink())
        if not files:
            return "nothing left to mutate"
        target = rng.choice(files)
        kind = rng.choice(["truncate", "flip", "json", "json", "json", "link", "fifo",
                           "folder", "remove", "empty", "escape"])
        data = target.read_bytes()
        if kind == "truncate":
            target.write_bytes(data[: rng.randrange(len(data) + 1)])
        elif kind == "flip" and data:
            buf = bytearray(data)
            for _ in range(rng.randint(1, 8)):
                buf[rng.randrange(len(buf))] = rng.randrange(256)
            target.write_bytes(bytes(buf))
        elif kind == "json" and target.suffix in (".json", ".jsonl"):
            try:  # an earlier mutation may have left it no JSON: then left as it is
                text = data.decode()
                lines = text.splitlines() if target.suffix == ".jsonl" else [text]
                if lines:
                    i = rng.randrange(len(lines))
                    lines[i] = mutate_json(lines[i]).decode()
                target.write_text("\\n".join(lines) + "\\n")
            except (ValueError, RecursionError):
                return f"json (not JSON any more) {target.name}"
        elif kind == "link":
            target.unlink()
            target.symlink_to(rng.choice(["/dev/zero", "/dev/urandom", "/etc/passwd", "../x"]))
        elif kind == "fifo":
            target.unlink()
            os.mkfifo(target)
        elif kind == "folder":
            target.unlink()
            target.mkdir()
        elif kind == "remove":
            target.unlink()
        elif kind == "empty":
            target.write_bytes(b"")
        elif kind == "escape":
            target.unlink()
            target.symlink_to(examples / rng.choice(sources).name / target.name)
        return f"{kind} {target.name}"

    class Alarm(Exception):
        pass

    def on_alarm(*_):
        raise Alarm()

    signal.signal(signal.SIGALRM, on_alarm)
    failures, outcomes = [], {}
    for n in range(cases):
        source = rng.choice(sources)
        folder = work / f"case{n}"
        shutil.copytree(source, folder)
        what = [mutate(folder) for _ in range(rng.choice([1, 1, 2, 3]))]
        out, err = io.StringIO(), io.StringIO()
        signal.alarm(seconds)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = cli.main(["bundle", "show", str(folder), "--format",
                                 rng.choice(["text", "json", "markdown", "mermaid"])])
        except BaseException as error:
            code = None
            failures.append(f"case {n} ({source.name}: {what}): {type(error).__name__}: "
                            + traceback.format_exc()[-600:])
        finally:
            signal.alarm(0)
        outcomes[str(code)] = outcomes.get(str(code), 0) + 1
        lines = err.getvalue().strip().splitlines()
        if code not in (0, 1, 8, None):
            failures.append(f"case {n} ({source.name}: {what}): exit {code}")
        if code == 8 and len(lines) != 1:
            failures.append(f"case {n} ({source.name}: {what}): {len(lines)} lines on stderr")
    # bundle list over all of it: no traceback, every listed line a real bundle's.
    out, err = io.StringIO(), io.StringIO()
    signal.alarm(seconds * 3)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            listed = cli.main(["bundle", "list", "-v", str(work)])
    except BaseException as error:
        failures.append(f"bundle list: {type(error).__name__}: {traceback.format_exc()[-600:]}")
        listed = None
    finally:
        signal.alarm(0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"failures": failures, "outcomes": outcomes, "list": listed, "peak": peak}))
    """
)


def test_mutated_bundles_are_refused_in_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", WORKER, str(EXAMPLES), str(tmp_path), str(CASES), str(MEMORY),
         str(SECONDS)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=ROOT,
    )  # fmt: skip
    lines = done.stdout.strip().splitlines()
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    report = json.loads(lines[-1])
    assert not report["failures"], "\n".join(report["failures"][:10])
    assert report["list"] == 0
    assert report["peak"] < 1 << 20, f"peak RSS {report['peak']} KiB"  # under 1 GiB
    # Both kinds were met: mutations that did not matter, and refused bundles.
    assert report["outcomes"].get("8", 0) > CASES // 4, report["outcomes"]
