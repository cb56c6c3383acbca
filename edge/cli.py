"""The ``edge`` command line.

Exit statuses follow sysexits where systemd can act on them:

* 0  — clean stop (SIGINT/SIGTERM included)
* 1  — the service failed at run time (e.g. a supervisor escalated)
* 2  — wrong command-line usage
* 78 — EX_CONFIG: the config is invalid, or the state directory cannot be used;
  the unit file's ``RestartPreventExitStatus=78`` stops systemd from restarting
  in a loop.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from edge import __version__
from edge.config import DEFAULT_CONFIG, LineConfig, load_config
from edge.errors import ConfigError, EdgeError, StateDirError
from edge.ingest.args import add_arguments as add_ingest_arguments
from edge.logs import configure_logging
from edge.tail_args import add_arguments as add_tail_arguments

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_CONFIG = 78

log = logging.getLogger("edge.cli")

_DESCRIPTION = """\
Edge line controller: reads a production line's PLCs, computes counts, stops,
micro-stops and OEE at the edge, and serves them to SCADA (OPC UA), Prometheus
and the MES (MQTT).

Start with `edge run`: without --config it runs the demo line, a simulated
bottling line that needs no PLC.
"""


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"edge {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="run the line service (the demo line when no --config is given)",
        description=(
            "Run the line service until SIGINT/SIGTERM. It polls the PLCs, keeps every "
            "machine's state, and serves OPC UA, /metrics and MQTT as the config says. "
            f"Without --config it runs the demo line ({DEFAULT_CONFIG.name}), which starts "
            "a simulated PLC in-process."
        ),
    )
    run.add_argument("--config", type=Path, default=None, metavar="PATH", help="line config (TOML)")
    run.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default=None,
        help="override the config's [logging] level",
    )

    check = commands.add_parser(
        "check-config",
        help="validate line config files and report every problem",
        description=(
            "Validate one or more line config files (and the plc_maps they name) without "
            "starting anything. Prints every problem with its key path. Exit status 0 when "
            "all are valid, 78 otherwise. Secrets are read only for enabled sections; systemd "
            "credentials ({ credential = NAME }) are read from $CREDENTIALS_DIRECTORY and, "
            "where it is not set (at a shell), listed as not read instead of failing."
        ),
    )
    check.add_argument("configs", type=Path, nargs="+", metavar="PATH")

    replay = commands.add_parser(
        "replay",
        help="compute the OEE report of a recorded trace (JSON lines)",
        description=(
            "Feed a hot-log trace (one JSON sample per line, '-' for standard input) through "
            "the OEE engine and print the per-machine, per-shift report as one JSON document "
            "(docs/OEE.md section 7). Malformed lines are skipped and reported on stderr; a "
            "trace with no usable line at all prints no report and exits 65."
        ),
    )
    replay.add_argument("trace", metavar="TRACE.jsonl", help="trace file, or - for stdin")
    replay.add_argument(
        "--config", type=Path, required=True, metavar="LINE.toml", help="line config (TOML)"
    )

    simulate = commands.add_parser(
        "simulate",
        help="run only the simulated line (a Modbus TCP server playing the PLCs)",
        description=(
            "Run the line simulator standalone: a Modbus TCP server at the config's "
            "[simulator] host/port playing every machine bound to it. Point another "
            "`edge run` (or any Modbus client) at it. SIGUSR1 holds simulated time (the "
            "registers keep their values), SIGUSR2 lets it run again."
        ),
    )
    simulate.add_argument("--config", type=Path, default=None, metavar="PATH")
    simulate.add_argument(
        "--paused",
        action="store_true",
        help="start with simulated time held (counters at counter_start) until SIGUSR2",
    )

    tail = commands.add_parser(
        "tail",
        help="follow the line's MQTT event batches (decode, check sequence continuity)",
        description=(
            "Subscribe to a line's event batches on its MQTT broker, decode them, check the "
            "sequence for gaps and resends, and print the events. Exit status 3 when a gap "
            "was seen."
        ),
    )
    add_tail_arguments(tail)

    ingest = commands.add_parser(
        "ingest",
        help="load every line's MQTT event batches into PostgreSQL, exactly once",
        description=(
            "The plant's central store: subscribe to every line's event batches with an "
            "MQTT 5 shared subscription ($share/<group>/<prefix>/+/+/events), write each "
            "batch in one transaction, acknowledge it only after the commit. Run several "
            "with distinct --client-id values to spread the lines. See docs/central-store.md."
        ),
    )
    add_ingest_arguments(ingest)

    prepare = commands.add_parser(
        "prepare",
        help="build, once per installation, what every line's first start would build",
        description=(
            "Build the cache of asyncua's standard OPC UA nodes beside the installation "
            "(make install-runtime runs it), so that even a line's first start reads it "
            "instead of building ~6,200 nodes. Without it a first start builds them itself "
            "and caches them for the line. Default DIR: $EDGE_INSTALLED_CACHE_DIR, else "
            "<prefix>/var/cache/edge (docs/state-and-recovery.md)."
        ),
    )
    prepare.add_argument("--cache-dir", type=Path, default=None, metavar="DIR")

    bench = commands.add_parser(
        "bench",
        help="run the performance benchmarks and print their figures",
        description=(
            "Run the benchmarks of docs/performance.md; each measures its in-run baseline "
            "and prints the ratio. Prints a table and one JSON document."
        ),
    )
    bench.add_argument("names", nargs="*", metavar="NAME", help="benchmarks to run (default: all)")
    bench.add_argument("--json", type=Path, default=None, help="also write the JSON document here")
    return parser


def _load(path: Path | None) -> LineConfig:
    return load_config(path or DEFAULT_CONFIG)


def _cmd_check_config(paths: Sequence[Path]) -> int:
    status = EXIT_OK
    for path in paths:
        try:
            config = load_config(path, defer_credentials=True)
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            status = EXIT_CONFIG
        else:
            machines = len(config.machines)
            print(f"{path}: ok ({machines} machines, {len(config.plcs)} plcs)")
            if config.unread_secrets:
                # Outside the unit there is no $CREDENTIALS_DIRECTORY: say what was not read.
                print(
                    "  not read, no $CREDENTIALS_DIRECTORY (systemd sets it for the unit; set it "
                    "to the folder of the credential files to check them): "
                    + ", ".join(config.unread_secrets)
                )
    return status


def _cmd_run(config_path: Path | None, log_level: str | None) -> int:
    configure_logging(log_level or "info")
    try:
        config = _load(config_path)
    except ConfigError as exc:
        log.error("invalid config, not starting:\n%s", exc)
        return EXIT_CONFIG
    configure_logging(log_level or config.logging.level)
    from edge.runtime.service import run_service  # noqa: PLC0415 - keep `edge --help` fast

    try:
        return run_service(config)
    except StateDirError as exc:
        # Like a bad config: restarting will not help until someone fixes the directory.
        log.error("state directory not usable, not starting: %s", exc)
        return EXIT_CONFIG


def _cmd_replay(trace: str, config_path: Path) -> int:
    configure_logging("warning")
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    from edge.replay import run_replay  # noqa: PLC0415

    return run_replay(trace, config, sys.stdout, sys.stderr)


def _cmd_simulate(config_path: Path | None, paused: bool) -> int:
    configure_logging("info")
    try:
        config = _load(config_path)
    except ConfigError as exc:
        log.error("invalid config, not starting:\n%s", exc)
        return EXIT_CONFIG
    from edge.runtime.service import run_simulator_only  # noqa: PLC0415

    return run_simulator_only(config, paused=paused)


def _cmd_prepare(cache_dir: Path | None) -> int:
    from edge.serve.opcua.standard_nodes import (  # noqa: PLC0415 - asyncua only here
        INSTALLED_CACHE_ENV,
        build_and_report,
        installed_cache_dir,
    )

    target = cache_dir or installed_cache_dir()
    if target is None:
        print(
            f"${INSTALLED_CACHE_ENV} is empty (no installation cache): give --cache-dir",
            file=sys.stderr,
        )
        return EXIT_USAGE
    return build_and_report(target)


def _cmd_bench(names: Sequence[str], json_path: Path | None) -> int:
    configure_logging("warning")
    from edge.bench import run_benchmarks  # noqa: PLC0415

    return run_benchmarks(list(names), json_path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        match args.command:
            case "run":
                return _cmd_run(args.config, args.log_level)
            case "check-config":
                return _cmd_check_config(args.configs)
            case "replay":
                return _cmd_replay(args.trace, args.config)
            case "simulate":
                return _cmd_simulate(args.config, args.paused)
            case "prepare":
                return _cmd_prepare(args.cache_dir)
            case "bench":
                return _cmd_bench(args.names, args.json)
            case "ingest":
                from edge.ingest.command import ingest_main  # noqa: PLC0415

                return ingest_main(args)
            case "tail":
                from edge.tail import tail_main  # noqa: PLC0415

                return tail_main(args)
            case _:
                parser.print_help()
                return EXIT_USAGE
    except EdgeError as exc:
        log.error("%s", exc)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
