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
from .errors import AudsyncError


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

    return parser


def _translate(args: argparse.Namespace) -> int:
    from .translate_stream import translate_stream

    cfg = config_module.load(args.config)
    return translate_stream(cfg.amplitude, args.input, sys.stdout, sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.setup(args.log_format)
    try:
        return args.handler(args)
    except AudsyncError as exc:
        print(f"audsync: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("audsync: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
