"""The `pathtrace` command: a thin view over the library; each command imports what it needs."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from pathtrace.config import Config
from pathtrace.config import load as load_config
from pathtrace.config import path as config_path
from pathtrace.errors import BundleError, PathtraceError, ProbesMissing, UsageError
from pathtrace.lab import DEFAULT_PREFIX


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, exit code 2, like every usage error
        # main() prefixes "pathtrace: "; a subcommand's own name says where.
        where = self.prog.removeprefix("pathtrace").strip()
        raise UsageError(f"{where + ': ' if where else ''}{message} (see --help)")


class _Version(argparse.Action):
    """--version, worked out only when asked (it looks for the probe objects)."""

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kw: Any) -> None:
        print(_version())
        parser.exit()


def _version() -> str:
    """This pathtrace, whether its probe objects are built, and the running kernel."""
    # lazy: a command loads only its own part (the engine pulls in libbpf)
    from pathtrace import __version__
    from pathtrace.kernel.engine import probes_dir

    objects = sorted(probes_dir().glob("*.bpf.o"))
    if (probes_dir() / "device.bpf.o").exists():
        # The objects' own version: a digest of their bytes (a rebuild with other
        # sources or compiler shows as another).
        import hashlib

        digest = hashlib.sha256()
        for path in objects:
            digest.update(path.name.encode() + path.read_bytes())
        probes = f"probes {digest.hexdigest()[:12]}, {len(objects)} objects"
    else:
        probes = "probes not built (make probes)"
    return f"pathtrace {__version__} ({probes}); kernel {os.uname().release}"


def _build_parser(config: Config | None = None) -> argparse.ArgumentParser:
    """The command line; ``config``: the user's defaults (config file, environment)."""
    config = config or Config()
    parser = _Parser(
        prog="pathtrace",
        description=__doc__,
        epilog=f"defaults: {config_path()} (bundles, from, topology), and PATHTRACE_BUNDLES, "
        "PATHTRACE_FROM, PATHTRACE_TOPOLOGY over it",
    )
    parser.add_argument("--version", action=_Version, nargs=0, help="the versions, and exit")
    commands = parser.add_subparsers(dest="command", parser_class=_Parser)

    lab = commands.add_parser("lab", help="build, inspect and remove the reference lab")
    lab_commands = lab.add_subparsers(dest="lab_command", required=True, parser_class=_Parser)
    for name, help_text in [
        ("up", "create the lab (idempotent)"),
        ("down", "remove everything the lab made"),
        ("status", "compare the live lab with its description"),
        ("show", "draw the topology"),
    ]:
        sub = lab_commands.add_parser(name, help=help_text)
        sub.add_argument(
            "--topology",
            metavar="FILE",
            default=config.topology,
            help="a topology file (default: the running lab's, else the reference)",
        )
        if name in ("status", "show"):
            sub.add_argument("--json", action="store_true", help="machine-readable output")
        sub.set_defaults(handler=_HANDLERS[name])
    brk = lab_commands.add_parser("break", help="break the lab in a known way (see --list)")
    brk.add_argument("scenario", nargs="?", help="what to break")
    brk.add_argument("--list", action="store_true", help="explain every scenario")
    brk.add_argument("--topology", metavar="FILE", default=config.topology, help=argparse.SUPPRESS)
    brk.set_defaults(handler=_lab_break)
    fix = lab_commands.add_parser("fix", help="undo any break: converge to the description")
    fix.add_argument(
        "--topology", metavar="FILE", default=config.topology, help="the lab's topology file"
    )
    fix.set_defaults(handler=_lab_fix)

    run = commands.add_parser("run", help="trace tagged probes hop by hop")
    run.add_argument(
        "kind",
        choices=["ping", "udp", "tcp", "dns"],
        help="the probe: ICMP echo, UDP, TCP SYN, DNS",
    )
    run.add_argument("target", help="ping: ADDRESS; udp, tcp: ADDRESS:PORT; dns: ADDRESS[:PORT]")
    run.add_argument(
        "--from",
        dest="source",
        default=config.source,
        metavar="NODE",
        help="a lab node, a namespace name, host, a pid or a namespace path (default: %(default)s)",
    )
    run.add_argument("-c", "--count", type=int, default=3, help="probes to send (default: 3)")
    run.add_argument("-i", "--interval", type=float, default=0.01, help="seconds between probes")
    run.add_argument("-s", "--size", type=int, default=56, help="payload bytes (tag included)")
    run.add_argument("--ttl", type=int, default=64, help="TTL / hop limit (default: 64)")
    run.add_argument("--df", action="store_true", help="set Don't Fragment")
    run.add_argument(
        "--query", default="example.com", metavar="NAME", help="dns: the name asked (type A)"
    )
    run.add_argument(
        "--timeout",
        type=float,
        default=1.0,
        help="seconds in which no probe is seen anywhere new before the run ends (0-600]",
    )
    _add_format(run)
    run.add_argument(
        "--topology", metavar="FILE", default=config.topology, help="the lab's topology file"
    )
    run.add_argument(
        "--capture",
        choices=["run", "all", "off"],
        default="run",
        help="per-interface capture: the run's packets (default), all, or off",
    )
    run.add_argument(
        "--save",
        nargs="?",
        const="",
        metavar="DIR",
        help=f"save a bundle (default folder: {config.bundles}/<UTC time>-<probe>-<target>)",
    )
    run.set_defaults(handler=_run)

    watch = commands.add_parser(
        "watch", help="follow real packets a pcap filter picks, by flow, hop by hop"
    )
    watch.add_argument("filter", help="a pcap-filter expression, as tcpdump takes: 'udp port 53'")
    where = watch.add_mutually_exclusive_group()
    where.add_argument(
        "--from",
        dest="source",
        metavar="NODE",
        help="pick packets only where they enter this node (default: every traced namespace)",
    )
    where.add_argument(
        "--all",
        dest="everywhere",
        action="store_true",
        help="trace every namespace on the machine, not only the lab's",
    )
    watch.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    watch.add_argument(
        "--count",
        type=int,
        metavar="N",
        help="stop once N flows were seen and 2 s passed without a packet of them",
    )
    watch.add_argument(
        "--max-flows",
        type=int,
        default=1000,
        metavar="N",
        help="follow at most N flows; packets that would start more are counted (default: 1000)",
    )
    watch.add_argument(
        "--packets-kept",
        type=int,
        default=200,
        metavar="N",
        help="per flow, keep the events of the first N packets; later ones are counted "
        "(default: 200)",
    )
    watch.add_argument(
        "--sample",
        type=int,
        metavar="N",
        help="follow 1 in N of the new flows the filter matches, the others counted "
        "(default: every flow, and 1 in 2, 4, ... while the reader loses events, said in "
        "the report; --sample 1: never sample)",
    )
    _add_format(watch, ("text", "json", "markdown"))  # a flow has no one path to draw
    watch.add_argument(
        "--save",
        nargs="?",
        const="",
        metavar="DIR",
        help="save a bundle: the report, the events, and what the filter matched on each "
        f"traced interface as pcapng (default folder: {config.bundles}/<UTC time>-watch-<filter>)",
    )
    watch.add_argument(
        "--topology", metavar="FILE", default=config.topology, help="the lab's topology file"
    )
    watch.set_defaults(handler=_watch)

    bundle = commands.add_parser("bundle", help="saved runs: list, show, diff (no root needed)")
    bundle_commands = bundle.add_subparsers(
        dest="bundle_command", required=True, parser_class=_Parser
    )
    listing = bundle_commands.add_parser("list", help="the bundles under a folder")
    listing.add_argument(
        "folder",
        nargs="?",
        default=str(config.bundles),
        help="where to look (default: %(default)s)",
    )
    listing.add_argument(
        "-v", "--verbose", action="store_true", help="say what was skipped, and why"
    )
    listing.set_defaults(handler=_bundle_list)
    show = bundle_commands.add_parser("show", help="a saved run's (or watch's) report")
    show.add_argument("path", help="a bundle's folder")
    _add_format(show)
    show.set_defaults(handler=_bundle_show)
    compare = bundle_commands.add_parser("diff", help="where two runs' paths part ways")
    compare.add_argument("a", help="a bundle's folder")
    compare.add_argument("b", help="another bundle's folder")
    compare.set_defaults(handler=_bundle_diff)

    tui = commands.add_parser("tui", help="the interactive view (default on a terminal)")
    tui.add_argument(
        "bundle_path", nargs="?", metavar="BUNDLE", help="a saved run to open (as --bundle)"
    )
    tui.add_argument("--bundle", metavar="PATH", help="open a saved run (no root, no lab)")
    tui.add_argument(
        "--watch", metavar="FILTER", help="open in watch mode, following what FILTER picks"
    )
    tui.add_argument(
        "--topology", metavar="FILE", default=config.topology, help="the lab's topology file"
    )
    tui.set_defaults(handler=_tui)

    doctor = commands.add_parser("doctor", help="what this machine lets pathtrace trace, and why")
    doctor.add_argument("--json", action="store_true", help="machine-readable output")
    doctor.set_defaults(handler=_doctor)

    completion = commands.add_parser("completion", help="a shell completion script")
    completion.add_argument("shell", choices=["bash", "zsh", "tcsh"], help="for which shell")
    completion.set_defaults(handler=_completion)
    parser.set_defaults(config=config)
    return parser


def _add_format(
    parser: argparse.ArgumentParser,
    forms: tuple[str, ...] = ("text", "json", "markdown", "mermaid"),
) -> None:
    """--format and its --json shorthand, alike wherever a report is printed."""
    parser.add_argument(
        "--format",
        choices=list(forms),
        default="text",
        help="the report's form (default: text)",
    )
    parser.add_argument(
        "--json", action="store_const", const="json", dest="format", help="--format json"
    )


def _completion(args: argparse.Namespace) -> int:
    """Printed for the shell to source: `source <(pathtrace completion bash)`."""
    # lazy: a command loads only its own part (`lab status` needs no libbpf, scapy)
    import shtab

    print(shtab.complete(_build_parser(args.config), shell=args.shell))
    return 0


def _lab_break(args: argparse.Namespace) -> int:
    # lazy: a command loads only its own part (`lab status` needs no libbpf, scapy)
    from pathtrace.lab import scenarios

    if args.list or not args.scenario:
        for s in scenarios.SCENARIOS.values():
            print(f"{s.name:<28} {s.explains}\n{'':<28} try: pathtrace {s.try_it}")
        return 0
    topo, _ = _topology_for(args)
    scenario = scenarios.apply(topo, args.scenario)
    print(
        f"broke the lab: {scenario.explains}\ntry: pathtrace {scenario.try_it}; "
        "undo: pathtrace lab fix"
    )
    return 0


def _lab_fix(args: argparse.Namespace) -> int:
    # lazy: a command loads only its own part (`lab status` needs no libbpf, scapy)
    from pathtrace.lab import build
    from pathtrace.system import privileges

    privileges.require("CAP_SYS_ADMIN", "CAP_NET_ADMIN", doing="pathtrace lab fix")
    topo, text = _topology_for(args)
    result = build.up(topo, text, progress=_progress)
    print(f"lab {topo.prefix!r} restored to its description ({len(result.changes)} changes)")
    return 0


def _run(args: argparse.Namespace) -> int:
    # lazy: a command loads only its own part (`lab status` needs no libbpf, scapy)
    from pathtrace.model.options import RunOptions
    from pathtrace.system import privileges

    if not args.source.strip():  # the library's "" means the default: here, a slip
        raise UsageError("--from needs a node, a namespace, a pid or a path")
    options = RunOptions.parse(
        args.kind,
        args.target,
        source=args.source,
        count=args.count,
        interval=args.interval,
        size=args.size,
        ttl=args.ttl,
        dont_fragment=args.df,
        timeout=args.timeout,
        capture=args.capture,
        query=args.query,
    )
    topo, text = _topology_for(args)
    privileges.require("CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_BPF", doing="pathtrace run")
    folder = None
    if args.save is not None:
        from pathlib import Path

        # lazy: a command loads only its own part (`lab status` needs no libbpf, scapy)
        from pathtrace.output import bundle

        # Checked (and made ready) before anything is armed: a run is never
        # lost to a save path that could not work.
        folder = bundle.destination(
            options, Path(args.save) if args.save else None, root=args.config.bundles
        )
    # lazy: a command loads only its own part (`lab status` needs no libbpf, scapy)
    from pathtrace.kernel.engine import for_probes
    from pathtrace.model.tag import new_run

    # The kernel verifies the probes while the rest of the library is imported
    # and the namespaces are read: a third of a short run, hidden.
    tracer = for_probes(options, new_run())
    tracer.begin()
    try:
        # lazy: a command loads only its own part (`lab status` needs no libbpf, scapy)
        from pathtrace.session import Run

        run = Run(options, topo, text, progress=_progress, tracer=tracer)
        run.while_loading = lambda: _import_report(args.format)
        result = run.execute()
    except BaseException:
        tracer.stop()
        if folder is not None:
            folder.abandon()
        raise
    for warning in result.degraded:
        print(f"pathtrace: warning: {warning}", file=sys.stderr)
    _print_result(result, args.format)
    if folder is not None:
        saved = bundle.save(result, folder, text)
        print(f"saved: {saved}", file=sys.stderr)
    if result.interrupted:
        return 130
    return 0 if result.delivered else 1


def _watch(args: argparse.Namespace) -> int:
    # lazy: a command loads only its own part (`lab status` needs no libbpf, scapy)
    from pathtrace.system import privileges
    from pathtrace.watch import Watch, WatchOptions

    options = WatchOptions(
        args.filter,
        source=args.source,
        everywhere=args.everywhere,
        duration=args.duration,
        count=args.count,
        max_flows=args.max_flows,
        packets_kept=args.packets_kept,
        capture=args.save is not None,
        sample=args.sample,
    )
    privileges.require("CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_BPF", doing="pathtrace watch")
    topo, _ = _topology_for(args)
    folder = None
    if args.save is not None:
        from pathlib import Path

        # lazy: a command loads only its own part (`lab status` needs no libbpf, scapy)
        from pathtrace.output import watch_bundle

        # Checked (and made ready) before anything is armed, as for `run`.
        folder = watch_bundle.destination(
            args.filter, Path(args.save) if args.save else None, root=args.config.bundles
        )
    watch = Watch(options, topo, progress=_progress)
    # Said always, as tcpdump says "listening on": what is watched, from when.
    watch.on_armed = lambda nodes: print(
        f"pathtrace: watching {args.filter!r} entering {', '.join(nodes)}; Ctrl-C ends it",
        file=sys.stderr,
        flush=True,
    )
    if sys.stderr.isatty():
        watch.on_flow = lambda e: print(
            f"  flow {e.index + 1}: {e.protocol} {e.src}:{e.sport} > {e.dst}:{e.dport} "
            f"at {e.namespace}",
            file=sys.stderr,
        )
    try:
        result = watch.execute()
    except BaseException:
        if folder is not None:
            folder.abandon()
        raise
    # lazy: a command loads only its own part (`lab status` needs no libbpf, scapy)
    from pathtrace.output import watch_report

    for note in result.notes:
        print(f"pathtrace: warning: {note}", file=sys.stderr)
    if args.format == "json":
        watch_report.write_json(result, sys.stdout)
        print()
    elif args.format == "markdown":
        print(watch_report.markdown(result))
    else:
        print(watch_report.text(result))
    if folder is not None:
        saved = watch_bundle.save(result, folder)
        print(f"saved: {saved}", file=sys.stderr)
    if result.ended == "interrupted":
        return 130
    failed = [f for f in result.flows if f.verdict.outcome in ("dropped", "lost", "rejected")]
    return 1 if failed else 0


def _import_report(form: str) -> None:
    """The report's modules, imported while the kernel verifies the probes."""
    if form == "json":
        import pathtrace.output.json_report  # noqa: F401  # lazy: imported early, on purpose
    elif form in ("markdown", "mermaid"):
        import pathtrace.output.markdown  # noqa: F401  # lazy: imported early, on purpose
    else:
        import rich.console  # noqa: F401
        import rich.table  # noqa: F401

        import pathtrace.output.text  # noqa: F401  # lazy: imported early, on purpose


def _print_result(result: Any, form: str) -> None:
    if form == "json":
        # lazy: a command loads only its own part (`lab status` needs no libbpf, scapy)
        from pathtrace.output.json_report import to_json

        # Streamed: with -c 1000 the report's text would be hundreds of megabytes.
        json.dump(to_json(result), sys.stdout, indent=1)
        print()
    elif form == "markdown":
        # lazy: a command loads only its own part (`lab status` needs no libbpf, scapy)
        from pathtrace.output.markdown import markdown

        print(markdown(result))
    elif form == "mermaid":
        # lazy: a command loads only its own part (`lab status` needs no libbpf, scapy)
        from pathtrace.output.markdown import mermaid

        print(mermaid(result))
    else:
        # lazy: a command loads only its own part (`lab status` needs no libbpf, scapy)
        from pathtrace.output.text import render

        render(result)


def _bundle_list(args: argparse.Namespace) -> int:
    from pathlib import Path

    # lazy: a command loads only its own part (`lab status` needs no libbpf, scapy)
    from pathtrace.output import bundle

    listed = 0
    for path in bundle.find(Path(args.folder)):
        try:
            line = bundle.summary(path)
        except BundleError as error:
            if args.verbose:
                print(f"skipped: {error}", file=sys.stderr)
            continue
        except OSError as error:
            if args.verbose:
                print(f"skipped: {path}: {error.strerror}", file=sys.stderr)
            continue
        print(line)
        listed += 1
    if not listed:
        print(f"no bundles under {args.folder}")
    return 0


def _bundle_show(args: argparse.Namespace) -> int:
    from pathlib import Path

    # lazy: a command loads only its own part (`lab status` needs no libbpf, scapy)
    from pathtrace.output import bundle

    watched = bundle.watch_report(Path(args.path), args.format)
    if watched is not None:  # a watch's bundle: its report as it was saved
        text, fine = watched
        print(text, end="" if text.endswith("\n") else "\n")
        return 0 if fine else 1
    result, _ = bundle.load(Path(args.path))
    _print_result(result, args.format)
    return 0 if result.delivered else 1


def _bundle_diff(args: argparse.Namespace) -> int:
    from pathlib import Path

    # lazy: a command loads only its own part (`lab status` needs no libbpf, scapy)
    from pathtrace.output import bundle
    from pathtrace.output.diff import diff

    a, _ = bundle.load(Path(args.a))
    b, _ = bundle.load(Path(args.b))
    print("\n".join(diff(a, b)))
    return 0


def _tui(args: argparse.Namespace) -> int:
    from pathlib import Path

    # lazy: a command loads only its own part (`lab status` needs no libbpf, scapy)
    from pathtrace.tui import make_app

    if args.bundle and args.bundle_path and args.bundle != args.bundle_path:
        raise UsageError("tui: give the bundle once (BUNDLE or --bundle)")
    opened = args.bundle or args.bundle_path
    if opened:
        # lazy: a command loads only its own part (`lab status` needs no libbpf, scapy)
        from pathtrace.output import bundle

        bundle.load(Path(opened))  # a bad bundle: one line, before the screen opens
        make_app(bundle=Path(opened), bundles_dir=args.config.bundles).run()
        return 0
    topo, text = _topology_for(args)
    if args.watch is not None:
        # lazy: a command loads only its own part (`lab status` needs no libbpf, scapy)
        from pathtrace.capture.filter import compile_watch_filter

        compile_watch_filter(args.watch)  # a bad filter: one line, before the screen opens
    make_app(topo, text, bundles_dir=args.config.bundles, watch=args.watch).run()
    return 0


def _doctor(args: argparse.Namespace) -> int:
    # lazy: a command loads only its own part (`lab status` needs no libbpf, scapy)
    from pathtrace import doctor

    diagnosis = doctor.diagnose()
    if args.json:
        print(json.dumps(diagnosis.to_json(), indent=2))
    else:
        doctor.print_diagnosis(diagnosis)
    if not diagnosis.probes_built:
        return ProbesMissing.exit_code  # as a run without probes exits
    usable = any(h["state"] == "used" and h["family"] == "device" for h in diagnosis.hooks)
    return 0 if usable else 3


def _topology_for(args: argparse.Namespace) -> tuple[Any, str | None]:
    """The topology named by --topology, else that of the running lab, else the reference."""
    # lazy: a command loads only its own part (`lab status` needs no libbpf, scapy)
    from pathtrace.lab import record, topology

    if args.topology:
        text = topology.read_file(args.topology)
        return topology.parse(text, source=args.topology), text
    running = record.read_record(DEFAULT_PREFIX)
    prefixes = record.recorded_prefixes()
    if running is None and len(prefixes) == 1:
        running = record.read_record(prefixes[0])
    if running is not None:
        return topology.parse(running.topology_text, source=running.source), running.topology_text
    # The reference itself, with its text: a bundle saved from it carries its topology.
    text = topology.reference_text()
    return topology.parse(text, source="reference"), text


def _progress(message: str) -> None:
    if sys.stderr.isatty():
        print(f"  {message}", file=sys.stderr)


def _lab_up(args: argparse.Namespace) -> int:
    # lazy: a command loads only its own part (`lab status` needs no libbpf, scapy)
    from pathtrace.lab import build

    topo, text = _topology_for(args)
    result = build.up(topo, text, progress=_progress)
    what = f"{len(result.changes)} changes" if result.changes else "nothing to change"
    print(f"lab {topo.prefix!r} is up ({topo.source}): {len(topo.nodes)} nodes, {what}")
    return 0


def _lab_down(args: argparse.Namespace) -> int:
    # lazy: a command loads only its own part (`lab status` needs no libbpf, scapy)
    from pathtrace.lab import build

    topo = _topology_for(args)[0] if args.topology else None
    result = build.down(topo, progress=_progress)
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if result.removed:
        print(f"removed {len(result.removed)} namespaces: {' '.join(result.removed)}")
    else:
        print("no lab to remove")
    return 0


def _lab_status(args: argparse.Namespace) -> int:
    # lazy: a command loads only its own part (`lab status` needs no libbpf, scapy)
    from pathtrace.lab import status

    topo, _ = _topology_for(args)
    report = status.observe(topo)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        status.print_report(report)
    return 0 if report.healthy else 1


def _lab_show(args: argparse.Namespace) -> int:
    # lazy: a command loads only its own part (`lab status` needs no libbpf, scapy)
    from pathtrace.lab import show

    topo, _ = _topology_for(args)
    if args.json:
        print(json.dumps(show.to_json(topo), indent=2))
    else:
        show.print_topology(topo)
    return 0


_HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "up": _lab_up,
    "down": _lab_down,
    "status": _lab_status,
    "show": _lab_show,
}


def _one_line(text: str) -> str:
    """What the user typed may hold newlines and escapes: shown as escapes, on one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def entry() -> NoReturn:
    """The command line as a process (the `pathtrace` script, `python -m pathtrace`):
    ``main()``, then out without tearing the interpreter down (~40 ms of a 0.45 s
    run, measured). What the command made is closed by then or by the kernel
    as the process ends (BPF links and programs, sockets, locks); the output is
    flushed first."""
    code = main()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a reader gone (`| head`), a stream closed
            pass
    os._exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    # lazy: a command loads only its own part (`lab status` needs no libbpf, scapy)
    from pathtrace.lab import lock

    lock.announce = lambda text: print(f"pathtrace: {text}", file=sys.stderr, flush=True)
    try:
        parser = _build_parser(load_config())
        args = parser.parse_args(argv)
        if args.command is None:  # bare `pathtrace`: the TUI on a terminal, else usage
            if sys.stdout.isatty() and sys.stdin.isatty():
                args = parser.parse_args(["tui"])
            else:  # piped or scripted: what there is to run, and a usage exit
                parser.print_help()
                return UsageError.exit_code
        handler: Callable[[argparse.Namespace], int] = args.handler
        return handler(args)
    except PathtraceError as error:
        print(f"pathtrace: {_one_line(str(error))}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("pathtrace: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`): nothing more to say, and no one to say it to.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
