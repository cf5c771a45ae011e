"""``chaos check``: check history files for linearizability against a model.

A run's ``history.jsonl`` starts with a header that states its model and the initial value of
every key; without ``--model`` / ``--init`` those are used, so ``chaos check`` on a stored run
gives the run's verdict. Other formats imply their own initial value (see ``chaos.history``).

Exit codes (Jepsen's): 0 every file valid, 1 any invalid, 2 any unknown (timed out) and none
invalid, 255 crashed or bad input (unreadable file, unpaired ops, unknown model, bad --init).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from ..history import MISSING, HistoryError, load, pair
from .linear import LinearizabilityResult, check_calls
from .models import ModelError, make_model, model_names
from ..verdict import EXIT_CRASHED, worst_exit

__all__ = ["register", "run", "summarise"]



def register(subparsers: Any) -> None:
    """Add the ``check`` subcommand."""
    parser = subparsers.add_parser(
        "check", help="check histories for linearizability",
        description="Check history files (JSON Lines, Jepsen/Knossos EDN, Porcupine etcd or kv logs; "
                    "detected from the content) against a model. Exit 0 valid, 1 invalid, 2 unknown, 255 error.")
    parser.add_argument("--model", "-m", help=f"one of: {', '.join(model_names())} (default: the one the history's "
                                               "header names)")
    parser.add_argument("--init", metavar="JSON",
                        help="initial value as JSON (default: what the history's header states, else the format's)")
    parser.add_argument("--timeout", type=float, default=None, metavar="S", help="seconds per file; then 'unknown'")
    parser.add_argument("--json", action="store_true", help="print one JSON object a line per file")
    parser.add_argument("--html", metavar="DIR", help="write an HTML view per file into DIR")
    parser.add_argument("files", nargs="+", metavar="FILE")
    parser.set_defaults(func=run)


def summarise(name: str, result: LinearizabilityResult) -> str:
    """Return the human summary of one file's result (a few lines)."""
    return f"{name}: {result.summary()}"


def _parse_init(text: str | None) -> Any:
    if text is None:
        return MISSING
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelError(f"--init is not JSON: {exc.msg}") from None


def _check_file(path: str, args: argparse.Namespace, init: Any) -> LinearizabilityResult:
    loaded = load(path)
    start = loaded.init if init is MISSING else init
    name = args.model or loaded.model
    if name is None:
        raise HistoryError("the history names no model (it has no header): give --model", file=path)
    model = make_model(name, None if start is MISSING else start)
    try:
        calls = pair(loaded.ops, file=path)
        return check_calls(calls, model, timeout=args.timeout)
    except ModelError as exc:
        raise HistoryError(exc.reason, file=path, line=exc.line) from None


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Check every file in ``args.files``; return the exit code."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        init = _parse_init(args.init)
        if args.model is not None:
            make_model(args.model, None)
    except ModelError as exc:
        print(f"chaos check: {exc}", file=err)
        return EXIT_CRASHED
    codes = []
    for path in args.files:
        try:
            result = _check_file(path, args, init)
        except (HistoryError, ModelError) as exc:
            print(f"chaos check: {exc}", file=err)
            codes.append(EXIT_CRASHED)
            continue
        except Exception as exc:  # a checker bug must still end in Jepsen's "crashed" code
            print(f"chaos check: {path}: crashed: {type(exc).__name__}: {exc}", file=err)
            codes.append(EXIT_CRASHED)
            continue
        if args.html:
            from .html import write_view

            write_view(result, Path(args.html), source=path)
        if args.json:
            record = {"file": path, **result.to_dict()}
            print(json.dumps(record, default=str), file=out)
        else:
            print(summarise(path, result), file=out)
        codes.append(result.valid.exit_code)
    return worst_exit(codes)
