"""Run the ``consensus`` command line.

Each subcommand lives beside the code it drives and registers itself here through a
``register(subparsers)`` function that adds one parser whose default ``func(args) -> int``
runs it. Misuse (bad flags or values) exits 2 with one line; a failure (a port in use, an
unreachable endpoint) exits 1 with one line; never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import NoReturn, Sequence

# Modules that provide a ``register(subparsers)`` function, in help order.
SUBCOMMAND_MODULES: tuple[str, ...] = (
    "consensus.server.serve",
    "consensus.server.local_cluster",
    "consensus.client.commands",
    "consensus.bench",
    "apps.kv.cli",  # imported when the parser is built, never by `import consensus`
)


class UsageError(Exception):
    """The command line is wrong (exit 2)."""


class CommandError(Exception):
    """The command could not do its job (exit 1)."""


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, with the subcommand's name (exit 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_subcommand_parser(prog: str, description: str, modules: Sequence[str]) -> argparse.ArgumentParser:
    """Build a parser whose subcommands come from ``modules`` (each has ``register(subparsers)``)."""
    parser = OneLineParser(prog=prog, description=description)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    for name in modules:
        importlib.import_module(name).register(subparsers)
    return parser


def build_parser() -> argparse.ArgumentParser:
    return build_subcommand_parser("consensus", "Run and operate raftwork nodes and clusters.", SUBCOMMAND_MODULES)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        print("consensus: error: a command is required (see consensus --help)", file=sys.stderr)
        return 2
    try:
        return int(func(args))
    except UsageError as exc:
        print(f"consensus {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except CommandError as exc:
        print(f"consensus {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("consensus: interrupted", file=sys.stderr)
        return 130
