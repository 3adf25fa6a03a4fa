"""Argument parsing and exit codes only; every command is a thin driver over the library.

Exit codes (DESIGN.md section 3): 0 success, 1 some items rejected or undelivered,
2 usage or configuration error. An AudsyncError becomes its message; anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from . import config as config_module
from . import logs
from .redact import redact
from .runtime import tune_gc_for_streaming
from .errors import AudsyncError, UsageError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse exits 2 on usage errors, as the contract wants
        self.print_usage(sys.stderr)
        self.exit(2, f"audsync: error: {message}\n")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, metavar="FILE", help="audsync TOML config")
    parser.add_argument("--log-format", choices=("plain", "json"), default="plain",
                        help="log lines on stderr as plain text (default) or JSON")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="audsync", description="Segment-spec data and audiences into Amplitude")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = commands.add_parser("translate", help="Segment messages (JSON lines) -> Amplitude operations")
    _common(p)
    p.add_argument("input", nargs="?", default="-", help="JSON-lines file (default: stdin)")
    p.set_defaults(handler=_translate)

    p = commands.add_parser("send", help="translate and deliver Segment messages (JSON lines) to Amplitude")
    _common(p)
    p.add_argument("input", nargs="?", default="-", help="JSON-lines file (default: stdin)")
    p.add_argument("--rejects", metavar="FILE",
                   help="write rejected and undelivered messages here, with their reasons")
    p.set_defaults(handler=_send)

    p = commands.add_parser("delete-users", help="ask Amplitude to delete users (needs secret_key)")
    _common(p)
    p.add_argument("user_ids", nargs="*", metavar="USER_ID")
    p.add_argument("--from-file", metavar="F", help="user ids, one per line")
    p.set_defaults(handler=_delete_users)

    p = commands.add_parser("run", help="one sync pass over all (or the named) audiences")
    _common(p)
    p.add_argument("--audience", action="append", metavar="NAME", help="only this audience (repeatable)")
    p.add_argument("--dry-run", action="store_true", help="show counts and a sample; send and change nothing")
    p.add_argument("--skip-backfill", action="store_true",
                   help="on a first sync, record the current members as synced without sending them")
    p.add_argument("--allow-mass-exit", action="store_true",
                   help="let this run remove more than max_exit_fraction of an audience, or follow a source "
                        "with no rows (without it such an audience plans nothing and the run exits 2)")
    p.set_defaults(handler=_run)

    p = commands.add_parser("backfill", help="resend the current value to every current member")
    _common(p)
    p.add_argument("--audience", required=True, metavar="NAME")
    p.add_argument("--dry-run", action="store_true", help="show counts and a sample; send and change nothing")
    p.set_defaults(handler=_backfill)

    p = commands.add_parser("status", help="members, last runs, pending and rejected users per audience")
    _common(p)
    p.add_argument("--json", action="store_true", help="one JSON document on stdout")
    p.set_defaults(handler=_status)

    p = commands.add_parser("daemon", help="run every audience on its schedule until SIGTERM/SIGINT")
    _common(p)
    p.add_argument("--metrics-port", type=int, metavar="N",
                   help="serve Prometheus /metrics and /healthz on this port")
    p.add_argument("--metrics-host", default="127.0.0.1", metavar="H",
                   help="address the metrics port listens on (default 127.0.0.1, this machine only; "
                        "0.0.0.0 for every interface)")
    p.set_defaults(handler=_daemon)

    p = commands.add_parser("db", help="state database maintenance")
    db_commands = p.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    p = db_commands.add_parser("upgrade", help="apply pending migrations to the state database")
    _common(p)
    p.set_defaults(handler=_db_upgrade)

    return parser


def _translate(args: argparse.Namespace) -> int:
    from .translate_stream import translate_stream

    cfg = config_module.load(args.config)
    return translate_stream(cfg.amplitude, args.input, sys.stdout, sys.stderr)


def _say_migrations(applied: list[str]) -> None:
    for revision in applied:
        print(f"state database: applied migration {revision}", file=sys.stderr)


def _progress():
    """A progress bar on a terminal (stderr), nothing otherwise."""
    if not sys.stderr.isatty():
        return None
    from .progress import Progress

    return Progress(sys.stderr)


def _report_run(report, dry_run: bool) -> int:
    import json

    _say_migrations(report.migrations)
    for audience in report.audiences:
        print(redact(audience.summary_line()))
        if dry_run and audience.sample:
            for change in audience.sample:
                print("  " + json.dumps(change, default=str, ensure_ascii=False))
        for note in audience.notes:
            print(redact(f"  note: {note}"))
    return report.exit_code


def _run(args: argparse.Namespace) -> int:
    from .sync import run_once

    cfg = config_module.load(args.config)
    report = run_once(cfg, audiences=args.audience, dry_run=args.dry_run, skip_backfill=args.skip_backfill,
                      allow_mass_exit=args.allow_mass_exit, progress=_progress())
    return _report_run(report, args.dry_run)


def _backfill(args: argparse.Namespace) -> int:
    from .sync import backfill

    cfg = config_module.load(args.config)
    report = backfill(cfg, args.audience, dry_run=args.dry_run, progress=_progress())
    return _report_run(report, args.dry_run)


def _status(args: argparse.Namespace) -> int:
    import json

    from .sync import format_status, status

    cfg = config_module.load(args.config)
    entries = status(cfg)
    if args.json:
        print(redact(json.dumps({"audiences": entries}, indent=2, default=str)))
    else:
        print(redact(format_status(entries)))
    return 0


def _daemon(args: argparse.Namespace) -> int:
    from .scheduler import run_daemon

    cfg = config_module.load(args.config)
    return run_daemon(cfg, metrics_port=args.metrics_port, metrics_host=args.metrics_host)


def _db_upgrade(args: argparse.Namespace) -> int:
    from .state import migrate

    cfg = config_module.load(args.config)
    applied = migrate.upgrade(cfg.state.url)
    _say_migrations(applied)
    if not applied:
        print("state database: already up to date", file=sys.stderr)
    return 0


def _send(args: argparse.Namespace) -> int:
    import signal
    import threading

    from .forward import send

    cfg = config_module.load(args.config)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    from .progress import Progress

    rejects = None
    if args.rejects:
        try:
            rejects = open(args.rejects, "wb")
        except OSError as exc:
            raise UsageError(f"{args.rejects}: cannot write the rejects file ({exc.strerror})") from None
    try:
        summary = send(cfg, args.input, rejects=rejects, progress=Progress(sys.stderr), stop_event=stop)
    finally:
        if rejects is not None:
            rejects.close()
    print(redact(summary.render()))
    return summary.exit_code


def _delete_users(args: argparse.Namespace) -> int:
    from itertools import chain

    from .deletion import delete_users, read_ids

    if not args.user_ids and not args.from_file:
        raise UsageError("delete-users needs USER_ID arguments or --from-file F")
    cfg = config_module.load(args.config)
    ids = chain(args.user_ids, read_ids(args.from_file) if args.from_file else ())
    report = delete_users(cfg.amplitude, cfg.delivery, ids)
    print(redact(report.render()))
    return report.exit_code


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.setup(args.log_format)
    tune_gc_for_streaming()
    try:
        return args.handler(args)
    except AudsyncError as exc:
        print(redact(f"audsync: {exc}"), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("audsync: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
