"""Run the ``chaos`` command line.

Each subcommand lives beside the code it drives and registers itself here through a
``register(subparsers)`` function that adds one parser whose default ``func(args) -> int``
runs it. Exit codes follow Jepsen: 0 valid, 1 invalid, 2 unknown, 255 crashed; 2 is also
argparse's code for misuse.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from consensus.cli import build_subcommand_parser

# Modules that provide a ``register(subparsers)`` function, in help order.
SUBCOMMAND_MODULES: tuple[str, ...] = ("chaos.run_cli", "chaos.serve", "chaos.checker.cli", "chaos.toxiproxy.cli",
                                       "chaos.toxiproxy.cli_client")


def build_parser() -> argparse.ArgumentParser:
    return build_subcommand_parser("chaos", "Jepsen-style testing for raftwork clusters.", SUBCOMMAND_MODULES)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        print("chaos: error: a command is required (see chaos --help)", file=sys.stderr)
        return 2
    try:
        return int(func(args))
    except KeyboardInterrupt:
        print("chaos: interrupted", file=sys.stderr)
        return 130
