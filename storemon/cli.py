"""The `storemon` command: a thin layer over the library (ingest, report, generate, bench, serve, console)."""

from __future__ import annotations

import argparse
import sqlite3
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from storemon import __version__

DEFAULT_DB = "storemon.db"
DEFAULT_DATA_DIR = "data"
DEFAULT_LOG = "storemon.log"


class CommandError(Exception):
    """A failure to report to the user as one line, with a non-zero exit."""


def _add_db(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", default=DEFAULT_DB, help=f"SQLite database file (default: {DEFAULT_DB})")


def _add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR,
                        help=f"directory with the CSV files (default: {DEFAULT_DATA_DIR})")


def _add_service_options(parser: argparse.ArgumentParser) -> None:
    _add_data_dir(parser)
    _add_db(parser)
    from storemon.alerts import DEFAULT_ALERT_AFTER_MINUTES
    from storemon.api import DEFAULT_TRIGGERS_PER_MINUTE
    from storemon.jobs import DEFAULT_KEEP_REPORTS, DEFAULT_WORKERS
    from storemon.refresh import DEFAULT_INTERVAL_S
    from storemon.server import DEFAULT_HOST, DEFAULT_PORT

    parser.add_argument("--host", default=DEFAULT_HOST, help=f"address the API listens on (default: {DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"API port (default: {DEFAULT_PORT})")
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS,
                        help=f"report worker processes (default: {DEFAULT_WORKERS})")
    parser.add_argument("--refresh-interval", type=float, default=DEFAULT_INTERVAL_S, metavar="SECONDS",
                        help=f"seconds between data refreshes (default: {DEFAULT_INTERVAL_S:g})")
    parser.add_argument("--log-file", default=DEFAULT_LOG, help=f"log file (default: {DEFAULT_LOG})")
    _add_retain_days(parser)

    parser.add_argument("--trigger-limit", type=int, default=DEFAULT_TRIGGERS_PER_MINUTE, metavar="N",
                        help="reports a client may trigger a minute, in bursts of up to N; 0: no limit "
                             f"(default: {DEFAULT_TRIGGERS_PER_MINUTE})")
    parser.add_argument("--keep-reports", type=int, default=DEFAULT_KEEP_REPORTS, metavar="N",
                        help="finished reports kept in the database, newest first; 0 keeps all "
                             f"(default: {DEFAULT_KEEP_REPORTS})")
    parser.add_argument("--dask", metavar="ADDRESS",
                        help="run report jobs on the Dask cluster whose scheduler is at ADDRESS (tcp://host:8786), "
                             "from the data directory's files (needs storemon[dask])")
    parser.add_argument("--dask-data-dir", metavar="PATH_OR_URL",
                        help="with --dask: the data directory as the workers reach it (default: --data-dir)")
    parser.add_argument("--notify", action="append", default=[], metavar="URL",
                        help="send a message when a store is down during business hours, and when it is back, to "
                             "this apprise URL (Slack, Teams, e-mail, ntfy, json://host/path...); repeatable")
    parser.add_argument("--alert-after", type=float, default=DEFAULT_ALERT_AFTER_MINUTES, metavar="MINUTES",
                        help="notify once an incident has lasted this long, in data time "
                             f"(default: {DEFAULT_ALERT_AFTER_MINUTES})")


def _check_retain_days(days: int) -> None:
    from storemon.ingest import MIN_RETAIN_DAYS

    if days < 0 or 0 < days < MIN_RETAIN_DAYS:
        raise CommandError(f"--retain-days must be 0 (keep everything) or at least {MIN_RETAIN_DAYS} (a report "
                           "needs a week and the day it starts in)")


def _add_retain_days(parser: argparse.ArgumentParser) -> None:
    from storemon.ingest import DEFAULT_RETAIN_DAYS

    parser.add_argument("--retain-days", type=int, default=DEFAULT_RETAIN_DAYS, metavar="N",
                        help="keep the polls of the last N days before the newest poll; 0 keeps everything "
                             f"(default: {DEFAULT_RETAIN_DAYS})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="storemon", description="Store uptime and downtime during business hours.")
    parser.add_argument("--version", action="version", version=f"storemon {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    ingest = commands.add_parser("ingest", help="load the CSV files of a data directory into the database")
    _add_data_dir(ingest)
    _add_db(ingest)
    ingest.add_argument("--history", type=int, nargs="?", const=10, metavar="N",
                        help="show the last N ingests and refreshes (default 10) instead of ingesting")
    _add_retain_days(ingest)

    report = commands.add_parser("report", help="write the uptime/downtime report as CSV")
    _add_db(report)
    report.add_argument("--dask", metavar="ADDRESS",
                        help="compute on the Dask cluster whose scheduler is at ADDRESS (tcp://host:8786), from the "
                             "source files of --data-dir instead of the database (needs storemon[dask])")
    report.add_argument("--data-dir", metavar="PATH_OR_URL",
                        help="with --dask: the data directory, as the workers reach it (a path or an fsspec URL "
                             "such as s3://bucket/loop/)")
    report.add_argument("--as-of", help="ISO-8601 instant the report is computed at (default: the latest poll)")
    report.add_argument("--interpolation", choices=["previous", "nearest"], default="previous",
                        help="status between polls (default: previous)")
    report.add_argument("-o", "--output", help="write the CSV to this file (default: standard output)")

    export = commands.add_parser("export", help="write the database as a Parquet data set for the Dask engine")
    _add_db(export)
    export.add_argument("--parquet", required=True, metavar="DIR",
                        help="directory to write polls/, menu_hours.parquet and timezones.parquet to")

    generate = commands.add_parser("generate", help="write a Loop-shaped sample data set")
    generate.add_argument("--out", required=True, help="directory to write the three CSV files to")
    generate.add_argument("--stores", type=int, default=200, help="number of stores (default: 200)")
    generate.add_argument("--days", type=int, default=8, help="days of polls, ending at the as_of (default: 8)")
    generate.add_argument("--seed", type=int, default=1, help="random seed: the same seed, the same files "
                                                               "(default: 1)")

    serve = commands.add_parser("serve", help="run the service headless: refresh, report workers and the HTTP API")
    _add_service_options(serve)

    console = commands.add_parser("console", help="the operator's console (the default command)")
    _add_service_options(console)
    console.add_argument("--export-dir", default="reports", help="where `e` writes reports (default: ./reports)")

    bench = commands.add_parser("bench", help="measure ingest and report on a Loop-sized generated data set")
    bench.add_argument("--work-dir", default="bench-data", help="where to keep the data set (default: bench-data)")
    bench.add_argument("--scale", type=int, default=1, metavar="K",
                       help="also measure a fleet of K x 14,000 stores (default: 1, only the Loop-sized fleet)")
    bench.add_argument("--weeks", type=int, default=1, metavar="W",
                       help="also measure the Loop-sized fleet with W weeks of history (default: 1)")
    bench.add_argument("--dask-data", metavar="DIR",
                       help="instead, measure the report on DIR by the embedded engine and on a local Dask cluster of "
                            "1 and 2 workers (needs storemon[dask])")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version")):
        argv = ["console", *argv]  # `storemon [serve's options]` opens the console
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except CommandError as exc:
        print(f"storemon: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("storemon: interrupted", file=sys.stderr)
        return 130
    except sqlite3.Error as exc:
        print(f"storemon: error: database error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        print(f"storemon: error: {exc.strerror or str(exc) or type(exc).__name__}{where}", file=sys.stderr)
        return 1
    except Exception as exc:  # a bug of storemon's own: still one line, never a traceback
        print(f"storemon: error: internal error ({type(exc).__name__}: {exc}); please report it", file=sys.stderr)
        return 1


@contextmanager
def _progress(what: str) -> Iterator[Callable[[str, int, int], None]]:
    """A `progress(step, done, total)` callback: rich progress bars on stderr when it is a terminal, else one
    plain line on stdout as each step starts (stderr keeps only the one-line error, if any)."""
    if not sys.stderr.isatty():
        started: set[str] = set()

        def plain(step: str, done: int, total: int) -> None:
            if step not in started:
                started.add(step)
                print(f"{what}: {step} ...", flush=True)

        yield plain
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

    columns = (TextColumn(f"{what}: {{task.description}}"), BarColumn(), TaskProgressColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bars:
        tasks: dict[str, object] = {}

        def update(step: str, done: int, total: int) -> None:
            if step not in tasks:
                tasks[step] = bars.add_task(step, total=total)
            bars.update(tasks[step], completed=done, total=total)

        yield update


def _remove_database(path: Path) -> None:
    """Remove a database file this command created (and its WAL files)."""
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)


def cmd_ingest(args: argparse.Namespace) -> int:
    from storemon.ingest import ingest
    from storemon.summary import ingest_summary

    if args.history is not None:
        from storemon.summary import history

        if args.history < 1:
            raise CommandError("--history must be at least 1")
        if not Path(args.db).exists():
            raise CommandError(f"database not found: {args.db}")
        print(history(_open_db(args.db), args.history))
        return 0
    data_dir = Path(args.data_dir)
    if not data_dir.is_dir():
        raise CommandError(f"data directory not found: {data_dir}")
    _check_retain_days(args.retain_days)
    created = not Path(args.db).exists()
    db = _open_db(args.db)
    ok = False
    try:
        with _progress("ingest") as progress:
            result = ingest(db, data_dir, strict=True, retain_days=args.retain_days, progress=progress)
        ok = result.ok
    finally:
        db.close()
        if created and not ok:  # a failed ingest leaves no empty database behind
            _remove_database(Path(args.db))
    print(ingest_summary(result))
    if not result.ok:
        unchanged = "no database was created" if created else "the database is unchanged"
        print(f"storemon: error: {'; '.join(result.errors)}; {unchanged}", file=sys.stderr)
        return 1
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from storemon.compute import report_from_db
    from storemon.parse import parse_as_of
    from storemon.snapshot import BeforeRetainedData

    as_of = None
    if args.as_of is not None:
        try:
            as_of = parse_as_of(args.as_of)
        except ValueError as exc:
            raise CommandError(f"--as-of: {exc}") from None
    if args.dask is not None:
        report = _dask_report(args, as_of)
    elif args.data_dir is not None:
        raise CommandError("--data-dir is read with --dask; without it the report comes from --db")
    else:
        if not Path(args.db).exists():
            raise CommandError(f"database not found: {args.db} (run `storemon ingest` first)")
        db = _open_db(args.db)
        try:
            report, _ = report_from_db(db, as_of, args.interpolation)
        except BeforeRetainedData as exc:
            raise CommandError(str(exc)) from None
        if report.as_of_us is None:
            raise CommandError(f"the database {args.db} has no polls yet: run `storemon ingest` first")
    text = report.to_csv()
    if args.output:
        try:
            Path(args.output).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"cannot write {args.output}: {exc.strerror or exc}") from None
        count = len(report.store_ids)
        print(f"wrote {count} store{'s' if count != 1 else ''} to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _dask_report(args: argparse.Namespace, as_of: int | None):
    """The report computed on the Dask cluster of `--dask`; each file that could not be used is a warning line."""
    from storemon.cluster import ClusterError, cluster_report, connect

    if args.data_dir is None:
        raise CommandError("--dask needs --data-dir: the data directory as the workers reach it")
    try:
        client = connect(args.dask)
        try:
            run = cluster_report(client, args.data_dir, as_of, args.interpolation)
        finally:
            client.close()
    except ClusterError as exc:
        raise CommandError(str(exc)) from None
    for error in run.errors:
        print(f"storemon: warning: {error} (not used)", file=sys.stderr)
    if run.report.as_of_us is None:
        raise CommandError(f"no polls in {args.data_dir}")
    skipped = sum(f.rows_skipped for f in run.files)
    if skipped:
        print(f"storemon: {skipped} bad rows skipped", file=sys.stderr)
    return run.report


def cmd_generate(args: argparse.Namespace) -> int:
    from storemon.generate import generate

    if args.stores < 1 or args.days < 1:
        raise CommandError("--stores and --days must be at least 1")
    try:
        with _progress("generate") as progress:
            counts = generate(Path(args.out), stores=args.stores, days=args.days, seed=args.seed,
                              progress=lambda step, fraction: progress(step, round(fraction * 1000), 1000))
    except OSError as exc:
        raise CommandError(f"cannot write to {args.out}: {exc.strerror or exc}") from None
    print(", ".join(f"{name}: {count} rows" for name, count in counts.items()))
    return 0


def _open_db(path: str):
    import sqlite3

    from storemon.db import SchemaError, open_db

    try:
        return open_db(path)
    except (sqlite3.Error, OSError, SchemaError) as exc:
        raise CommandError(f"cannot open database {path}: {exc}") from None


def cmd_export(args: argparse.Namespace) -> int:
    from storemon.export import export_parquet

    if not Path(args.db).exists():
        raise CommandError(f"database not found: {args.db}")
    db = _open_db(args.db)
    try:
        with _progress("export") as progress:
            written = export_parquet(db, args.parquet, progress=progress)
    except OSError as exc:
        raise CommandError(f"cannot write to {args.parquet}: {exc.strerror or exc}") from None
    finally:
        db.close()
    print(f"wrote {written['polls']} polls, {written['hours']} business-hours rows and {written['zones']} zones "
          f"to {args.parquet}")
    return 0


COMMANDS = {"ingest": cmd_ingest, "report": cmd_report, "generate": cmd_generate, "export": cmd_export}


def cmd_bench(args: argparse.Namespace) -> int:
    from storemon.bench import main as bench_main

    if args.scale < 1 or args.weeks < 1:
        raise CommandError("--scale and --weeks must be at least 1")
    if args.dask_data is not None and not Path(args.dask_data).is_dir():
        raise CommandError(f"data directory not found: {args.dask_data}")
    bench_main(args.work_dir, args.scale, args.weeks, args.dask_data)
    return 0


COMMANDS["bench"] = cmd_bench


def _log_to(path: str) -> Path:
    from storemon.logs import log_to_file

    try:
        return log_to_file(path)
    except OSError as exc:
        raise CommandError(f"cannot write the log file {path}: {exc.strerror or exc}") from None


def _service_config(args: argparse.Namespace):
    from storemon.service import ServiceConfig

    if not Path(args.data_dir).is_dir():
        raise CommandError(f"data directory not found: {args.data_dir}")
    if not 0 <= args.port <= 65535:
        raise CommandError(f"--port must be between 0 and 65535, not {args.port}")
    if args.workers < 1:
        raise CommandError("--workers must be at least 1")
    if args.refresh_interval <= 0:
        raise CommandError("--refresh-interval must be a positive number of seconds")
    _check_retain_days(args.retain_days)
    if args.trigger_limit < 0 or args.keep_reports < 0:
        raise CommandError("--trigger-limit and --keep-reports must be 0 or more")
    if not args.alert_after >= 0:
        raise CommandError("--alert-after must be 0 or more minutes")
    from storemon.alerts import BadNotifyUrl, check_url

    try:
        urls = tuple(check_url(url) for url in args.notify)
    except BadNotifyUrl as exc:
        raise CommandError(str(exc)) from None
    _open_db(args.db).close()  # a database that cannot be opened is a one-line error, before anything starts
    dask = None
    if args.dask is not None:
        from storemon.cluster import ClusterError, connect
        from storemon.jobs import DaskTarget

        try:
            connect(args.dask).close()  # an unreachable scheduler is a one-line error, before anything starts
        except ClusterError as exc:
            raise CommandError(str(exc)) from None
        dask = DaskTarget(args.dask, args.dask_data_dir or str(Path(args.data_dir).resolve()))
    elif args.dask_data_dir is not None:
        raise CommandError("--dask-data-dir is used with --dask")
    return ServiceConfig(Path(args.data_dir), Path(args.db), args.host, args.port, args.workers,
                         args.refresh_interval, retain_days=args.retain_days,
                         triggers_per_minute=args.trigger_limit, keep_reports=args.keep_reports,
                         notify_urls=urls, alert_after_minutes=args.alert_after, dask=dask)


def cmd_serve(args: argparse.Namespace) -> int:
    import signal
    import threading

    from storemon.server import PortUnavailable
    from storemon.service import Service

    config = _service_config(args)
    log_path = _log_to(args.log_file)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    service = Service(config)
    try:
        service.start()
    except PortUnavailable as exc:
        raise CommandError(str(exc)) from None
    print(f"storemon: serving {service.api_address} (data {config.data_dir}, database {config.db_path}, "
          f"log {log_path}); Ctrl-C stops", file=sys.stderr, flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        service.stop()
    print("storemon: stopped", file=sys.stderr)
    return 0


COMMANDS["serve"] = cmd_serve


def cmd_console(args: argparse.Namespace) -> int:
    from storemon.console.app import StoremonApp
    from storemon.service import Service

    config = _service_config(args)
    log_path = _log_to(args.log_file)
    app = StoremonApp(Service(config), export_dir=Path(args.export_dir), log_path=log_path)
    app.run()
    return 0


COMMANDS["console"] = cmd_console
