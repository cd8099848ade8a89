"""The `refconv` command line: a thin dispatcher over refconv/commands/<name>.py.

Each command module defines HELP, `add_arguments(parser)` and `main(args) -> int`, and imports
nothing heavy at module level, so `refconv --help` answers fast. Bad input (any RefconvError)
prints one line and exits with code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from refconv import __version__
from refconv.errors import RefconvError

COMMANDS = ("run", "hunt", "check", "audit", "report", "compare", "cases", "adapters", "explain", "demo", "envs",
            "bisect")


def one_line(text: str) -> str:
    """An error message as one printable line: newlines, control characters and undecodable bytes escaped."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in str(text).strip())


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse's usage dump becomes one line and exit 2
        self.exit(2, f"{self.prog}: error: {one_line(message)}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="refconv", description="Hold a float64 reference conv2d against framework conv2d.")
    parser.add_argument("--version", action="version", version=f"refconv {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"refconv.commands.{name}")
        except ModuleNotFoundError:
            continue
        p = sub.add_parser(name, help=module.HELP, description=module.__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        p.set_defaults(_main=module.main)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._main(args))
    except RefconvError as exc:
        print(f"refconv {args.command}: error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `refconv cases | head`: the reader left, nothing to report
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        return 0
    except KeyboardInterrupt:
        print(f"refconv {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
