"""The command line: argument parsing and exit codes here, every command a thin driver over the
library; `send`, `translate_stream` and `deletion` hold what only the commands of those names do,
`logs` the stderr formats.

An AudsyncError becomes its message and exit code (EXIT_CODES); anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import textwrap
import threading
from datetime import datetime, timezone
from typing import Sequence

from .. import config as config_module
from . import logs
from .._redact import redact
from .._runtime import tune_gc_for_streaming
from ..errors import CRASHED, AudsyncError, UsageError

EXIT_CODES = f"""exit codes:
  0   done
  1   some items rejected, or undelivered by `send`, or stopped (SIGTERM) with work pending
  2   something to fix: usage, config, API key, a source, the state database's URL or schema
  3   temporary trouble, retry later: the state database unreachable, the audience busy with
      another run, Amplitude unreachable after every retry (the work stays pending)
  {CRASHED}  audsync crashed (a bug: the traceback tells where; please report it)
"""

log = logging.getLogger("audsync.cli")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse exits 2 on usage errors, as the contract wants
        if logs.json_lines():
            logs.last_words(f"error: {message} (see audsync --help)")
            self.exit(2)
        self.print_usage(sys.stderr)
        self.exit(2, f"audsync: error: {message}\n")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, metavar="FILE", help="audsync TOML config")
    parser.add_argument("--log-format", choices=("plain", "json"), default="plain",
                        help="log lines on stderr as plain text (default) or JSON")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("audsync")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def _epilog(exits: str, examples: str) -> str:
    return (f"exit codes:\n{textwrap.indent(textwrap.dedent(exits).strip(), '  ')}\n"
            f"  {CRASHED}  audsync crashed (a bug: please report it with the traceback)\n\n"
            f"example:\n{textwrap.indent(textwrap.dedent(examples).strip(), '  ')}\n")


_RUN_EXITS = """
    0   every change delivered (or, with --dry-run, planned)
    1   some users rejected by Amplitude (status lists them), or stopped by a signal with work pending
    2   something to fix: config, API key, a source, the state database's URL or schema, or a
        guarded audience (the mass-exit guard: see --allow-mass-exit)
    3   temporary trouble, retry later: the state database unreachable, the audience busy with
        another run, Amplitude unreachable after every retry (the work stays pending)
"""

# name -> (one-line help, exit codes, examples)
_COMMANDS = {
    "translate": ("Segment messages (JSON lines) -> Amplitude operations", """
        0   every line translated (or dropped by the settings)
        1   some lines rejected: each on stderr as {"line": N, "error": "..."}
        2   something to fix: usage, config, an unreadable input file
    """, """
        audsync translate --config audsync.toml events.jsonl > operations.jsonl
        echo '{"type": "identify", "userId": "user-0001", "traits": {"plan": "pro"}}' | \\
            audsync translate --config audsync.toml
    """),
    "send": ("translate and deliver Segment messages (JSON lines) to Amplitude", """
        0   every message delivered (or dropped by the settings)
        1   some messages rejected, or undelivered after every retry, or stopped by SIGTERM
            (--rejects FILE keeps them all, with their reasons)
        2   something to fix: usage, config, API key (Amplitude refused it)
    """, """
        audsync send --config audsync.toml events.jsonl --rejects rejects.jsonl
        audsync send --config audsync.toml rejects.jsonl     # the fixed rejects, as they are
    """),
    "delete-users": ("ask Amplitude to delete users (needs secret_key)", """
        0   every deletion request accepted by Amplitude
        1   some requests failed after every retry (the summary names the users)
        2   something to fix: usage, config, API key or secret key (Amplitude refused them)
    """, """
        audsync delete-users --config audsync.toml user-0001 user-0002
        audsync delete-users --config audsync.toml --from-file ids.txt
    """),
    "run": ("one sync pass over all (or the named) audiences", _RUN_EXITS, """
        audsync run --config audsync.toml --dry-run          # what would be sent; changes nothing
        audsync run --config audsync.toml
        audsync run --config audsync.toml --audience "Newsletter Subscribers"
        audsync run --config audsync.toml --dry-run --as-of 2026-12-01T00:00:00Z  # rules as of then
    """),
    "backfill": ("resend the current value to every current member", _RUN_EXITS, """
        audsync backfill --config audsync.toml --audience "Newsletter Subscribers"
    """),
    "status": ("members, last runs, pending and rejected users per audience; the ingest of `audsync serve`", """
        0   done
        2   something to fix: config, the state database's URL or schema
        3   the state database unreachable: retry later
    """, """
        audsync status --config audsync.toml
        audsync status --config audsync.toml --json | jq '.audiences[].pending'
        audsync status --config audsync.toml --json | jq '.ingest.pending'    # the serve backlog
    """),
    "daemon": ("run every audience on its schedule until SIGTERM/SIGINT", """
        0   stopped cleanly by SIGTERM/SIGINT
        1   a run outlasted daemon.stop_timeout_s and was abandoned (its work stays pending)
        2   something to fix: config, the state database's URL or schema, a second daemon on
            one SQLite state
    """, """
        audsync daemon --config audsync.toml --metrics-port 9464
    """),
    "serve": ("accept Segment library calls over HTTP, store them durably, forward them to Amplitude", """
        0   stopped cleanly by SIGTERM/SIGINT (the requests in flight answered, what they sent
            committed, the forwarder's batch in flight settled; the rest is forwarded on the next start)
        2   something to fix: config (no write keys, no amplitude.api_key with forward = true; set
            forward = false to store only), the port taken, the state database's URL or schema
        3   the state database unreachable: retry later
    """, """
        audsync serve --config audsync.toml       # [ingest] write_keys = ["my-write-key"]
        AUDSYNC_WRITE_KEYS=key-1,key-2 audsync serve --config audsync.toml --host 0.0.0.0 --port 8088
        # then, in a Python service: analytics.write_key = "my-write-key"
        #                            analytics.host = "http://127.0.0.1:8088"
    """),
    "explain": ("print a rule audience's compiled SQL for its database, with its parameters", """
        0   done
        2   something to fix: config (a rule with a mistake), an unknown audience or one whose
            source is not a rule, a missing database driver
    """, """
        audsync explain --config audsync.toml --audience "Frequent Big Spenders"
    """),
    "db upgrade": ("apply pending migrations to the state database", """
        0   done (or already up to date)
        2   something to fix: config, the state database's URL or schema
        3   the state database unreachable: retry later
    """, """
        audsync db upgrade --config audsync.toml
    """),
}


def _add_command(commands, name: str) -> argparse.ArgumentParser:  # noqa: ANN001
    summary, exits, examples = _COMMANDS[name]
    return commands.add_parser(name.split()[-1], help=summary, description=summary[:1].upper() + summary[1:] + ".",
                               epilog=_epilog(exits, examples),
                               formatter_class=argparse.RawDescriptionHelpFormatter)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="audsync", description="Segment-spec data and audiences into Amplitude",
                     epilog=EXIT_CODES + "\n`audsync COMMAND --help` gives each command's exit codes and examples.\n",
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"audsync {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = _add_command(commands, "translate")
    _common(p)
    p.add_argument("input", nargs="?", default="-", help="JSON-lines file (default: stdin)")
    p.set_defaults(handler=_translate)

    p = _add_command(commands, "send")
    _common(p)
    p.add_argument("input", nargs="?", default="-", help="JSON-lines file (default: stdin)")
    p.add_argument("--rejects", metavar="FILE",
                   help="write rejected and undelivered messages here, with their reasons")
    p.set_defaults(handler=_send)

    p = _add_command(commands, "delete-users")
    _common(p)
    p.add_argument("user_ids", nargs="*", metavar="USER_ID")
    p.add_argument("--from-file", metavar="F", help="user ids, one per line")
    p.set_defaults(handler=_delete_users)

    p = _add_command(commands, "run")
    _common(p)
    p.add_argument("--audience", action="append", metavar="NAME", help="only this audience (repeatable)")
    p.add_argument("--dry-run", action="store_true", help="show counts and a sample; send and change nothing")
    p.add_argument("--skip-backfill", action="store_true",
                   help="on a first sync, record the current members as synced without sending them")
    p.add_argument("--allow-mass-exit", action="store_true",
                   help="let this run remove more than max_exit_fraction of an audience, or follow a source "
                        "with no rows (without it such an audience plans nothing and the run exits 2)")
    p.add_argument("--as-of", type=_instant, metavar="ISO_TIME",
                   help="with --dry-run: evaluate rules as of this instant instead of now (ISO 8601; UTC when "
                        "it names no zone), as in 2026-12-01T00:00:00Z")
    p.set_defaults(handler=_run)

    p = _add_command(commands, "backfill")
    _common(p)
    p.add_argument("--audience", required=True, metavar="NAME")
    p.add_argument("--dry-run", action="store_true", help="show counts and a sample; send and change nothing")
    p.set_defaults(handler=_backfill)

    p = _add_command(commands, "status")
    _common(p)
    p.add_argument("--json", action="store_true", help="one JSON document on stdout")
    p.set_defaults(handler=_status)

    p = _add_command(commands, "explain")
    _common(p)
    p.add_argument("--audience", required=True, metavar="NAME", help="the rule audience (its name or key)")
    p.set_defaults(handler=_explain)

    p = _add_command(commands, "daemon")
    _common(p)
    p.add_argument("--metrics-port", type=int, metavar="N",
                   help="serve Prometheus /metrics and /healthz on this port")
    p.add_argument("--metrics-host", default="127.0.0.1", metavar="H",
                   help="address the metrics port listens on (default 127.0.0.1, this machine only; "
                        "0.0.0.0 for every interface)")
    p.set_defaults(handler=_daemon)

    p = _add_command(commands, "serve")
    _common(p)
    p.add_argument("--host", metavar="H", help="address to listen on (default: ingest.host, 127.0.0.1)")
    p.add_argument("--port", type=int, metavar="P", help="port to listen on (default: ingest.port, 8088)")
    p.set_defaults(handler=_serve)

    p = commands.add_parser("db", help="state database maintenance", description="State database maintenance.",
                            epilog="example:\n  audsync db upgrade --config audsync.toml\n",
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    db_commands = p.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    p = _add_command(db_commands, "db upgrade")
    _common(p)
    p.set_defaults(handler=_db_upgrade)

    return parser


def _instant(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time such as 2026-12-01T00:00:00Z") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


def _translate(args: argparse.Namespace) -> int:
    from .translate_stream import translate_stream

    cfg = config_module.load(args.config)
    return translate_stream(cfg.amplitude, args.input, sys.stdout, sys.stderr)


def _say_migrations(applied: list[str]) -> None:
    for revision in applied:
        log.info("state database: applied migration %s", revision)


def _progress(args: argparse.Namespace, always: bool = False):
    """A progress bar on a terminal (stderr), periodic lines (`always`) or nothing otherwise; log
    records with --log-format json."""
    from ..progress import Progress

    if args.log_format == "json":
        return Progress(sys.stderr, tty=False, log=logging.getLogger("audsync.progress")) if always else None
    if not (always or sys.stderr.isatty()):
        return None
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


def _stop_on_signals() -> threading.Event:
    """The first SIGTERM/SIGINT asks the run to stop as the daemon's runs do (the in-flight batch
    finishes, what was acknowledged is recorded, the run is marked stopped); a second one exits
    at once: the plan is in the outbox, and the next run delivers it first."""
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():
            log.warning("%s again: exiting at once; the next run delivers what is left pending", name)
            for handler in logging.getLogger("audsync").handlers:
                handler.flush()
            os._exit(128 + signum)
        log.info("%s: stopping after the in-flight batch (a second signal exits at once)", name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return stop


def _run(args: argparse.Namespace) -> int:
    from ..sync import run_once

    if args.as_of is not None and not args.dry_run:
        raise UsageError("--as-of goes with --dry-run only: a run records what it sends as the state of now")
    cfg = config_module.load(args.config)
    report = run_once(cfg, audiences=args.audience, dry_run=args.dry_run, skip_backfill=args.skip_backfill,
                      allow_mass_exit=args.allow_mass_exit, progress=_progress(args),
                      stop_event=_stop_on_signals(), as_of=args.as_of)
    return _report_run(report, args.dry_run)


def _explain(args: argparse.Namespace) -> int:
    from ..sources.rule import explain

    cfg = config_module.load(args.config)
    print(redact(explain(cfg, args.audience, datetime.now(timezone.utc)).render()))
    return 0


def _backfill(args: argparse.Namespace) -> int:
    from ..sync import backfill

    cfg = config_module.load(args.config)
    report = backfill(cfg, args.audience, dry_run=args.dry_run, progress=_progress(args),
                      stop_event=_stop_on_signals())
    return _report_run(report, args.dry_run)


def _status(args: argparse.Namespace) -> int:
    import json

    from ..status_report import format_ingest, format_status, ingest_status, status

    cfg = config_module.load(args.config)
    entries = status(cfg)
    ingest = ingest_status(cfg)  # None unless `audsync serve` is configured or was used
    if args.json:
        print(redact(json.dumps({"audiences": entries, "ingest": ingest}, indent=2, default=str)))
    else:
        print(redact("\n".join(part for part in (format_status(entries), ingest and format_ingest(ingest)) if part)))
    return 0


def _daemon(args: argparse.Namespace) -> int:
    from ..daemon.scheduler import run_daemon

    cfg = config_module.load(args.config)
    return run_daemon(cfg, metrics_port=args.metrics_port, metrics_host=args.metrics_host)


def _serve(args: argparse.Namespace) -> int:
    from ..ingest.server import serve

    if args.port is not None and not 0 <= args.port <= 65535:
        raise UsageError(f"--port: must be from 0 to 65535, not {args.port}")
    cfg = config_module.load(args.config)
    return serve(cfg, host=args.host, port=args.port)


def _db_upgrade(args: argparse.Namespace) -> int:
    from ..state import migrate

    cfg = config_module.load(args.config)
    applied = migrate.upgrade(cfg.state.url)
    _say_migrations(applied)
    if not applied:
        log.info("state database: already up to date")
    return 0


def _send(args: argparse.Namespace) -> int:
    from .send import send

    cfg = config_module.load(args.config)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    rejects = None
    if args.rejects:
        try:
            rejects = open(args.rejects, "wb")
        except OSError as exc:
            raise UsageError(f"{args.rejects}: cannot write the rejects file ({exc.strerror})") from None
    try:
        summary = send(cfg, args.input, rejects=rejects, progress=_progress(args, always=True),
                       stop_event=stop)
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
    argv = sys.argv[1:] if argv is None else list(argv)
    # Before parsing, so that a usage error is a JSON line too when JSON was asked for.
    asked = next((b for a, b in zip(argv, argv[1:]) if a == "--log-format"), None)
    logs.setup("json" if asked == "json" or "--log-format=json" in argv else "plain")
    args = build_parser().parse_args(argv)
    logs.setup(args.log_format)
    tune_gc_for_streaming()
    try:
        return args.handler(args)
    except AudsyncError as exc:
        logs.last_words(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        logs.last_words("interrupted")
        return 130
    except BrokenPipeError:
        return 0
    except Exception:
        log.critical("crashed: this is a bug in audsync; please report it with the traceback below "
                     "(the state keeps what was acknowledged; pending work is resent by the next run)",
                     exc_info=True)
        return CRASHED


if __name__ == "__main__":
    sys.exit(main())
