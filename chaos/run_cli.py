"""``chaos test``, ``chaos test-all`` and ``chaos analyze``.

Exit codes (Jepsen's): 0 valid, 1 invalid, 2 unknown, 255 crashed; bad flags exit 2 with
argparse's one-line error. ``test-all`` exits with the worst code of its runs (255 over 1 over 2).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import traceback
from pathlib import Path
from typing import Any, Sequence, TextIO

from chaos import store
from chaos.history import HistoryError, load
from chaos.runner import CRASHED, NEMESIS_NAMES, TestConfig, check_history, exit_code, parse_concurrency, run_test
from chaos.workloads import PLANNED, WORKLOADS, UnknownWorkload, make_workload

__all__ = ["register", "run_one", "run_all", "analyze", "summary", "worst"]

TEST_ALL_TIME_LIMIT = 20.0
_SEVERITY = {CRASHED: 3, 1: 2, 2: 1, 0: 0}


def _nemesis_names() -> tuple[str, ...]:
    try:
        from chaos.nemesis import NEMESES
    except ImportError:
        return NEMESIS_NAMES
    return tuple(NEMESES) if "none" in NEMESES else ("none", *NEMESES)


def _workload(text: str) -> str:
    if text in WORKLOADS:
        return text
    try:
        make_workload(text)
    except UnknownWorkload as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _nemesis(text: str) -> str:
    names = _nemesis_names()
    if text not in names:
        raise argparse.ArgumentTypeError(f"unknown nemesis {text!r} (available: {', '.join(names)})")
    return text


def _list_of(kind: Any) -> Any:
    def parse(text: str) -> list[str]:
        items = [t.strip() for t in text.split(",") if t.strip()]
        if not items:
            raise argparse.ArgumentTypeError("give at least one name")
        return [kind(t) for t in items]

    return parse


def _concurrency(text: str) -> str:
    try:
        parse_concurrency(text, 1)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _positive(kind: Any) -> Any:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, not {text}")
        return value

    return parse


def _interval(text: str) -> tuple[float, float]:
    try:
        parts = [float(x) for x in text.split(",")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts = [parts[0], parts[0]]
    if len(parts) != 2 or not 0 < parts[0] <= parts[1]:
        raise argparse.ArgumentTypeError(f"give seconds as LO,HI (0 < LO <= HI) or one number, not {text!r}")
    return parts[0], parts[1]


def _common(p: argparse.ArgumentParser, time_limit: float) -> None:
    p.add_argument("--nodes", type=_positive(int), default=3, help="cluster size (default 3)")
    p.add_argument("--time-limit", type=_positive(float), default=time_limit, metavar="S",
                   help=f"seconds of client load (default {time_limit:g})")
    p.add_argument("--concurrency", type=_concurrency, default="2n", help="client processes: an int or '2n' (default 2n)")
    p.add_argument("--rate", type=_positive(float), default=50.0, help="ops per second over all clients (default 50)")
    p.add_argument("--seed", type=int, default=None, help="seed for generators and nemesis (default: random, stored)")
    p.add_argument("--store", default="store", help="store directory (default store/)")
    p.add_argument("--toxiproxy", metavar="URL", default=None,
                   help="an external Toxiproxy server (default: the embedded one)")
    p.add_argument("--op-timeout", type=_positive(float), default=5.0, metavar="S", help="each op's deadline (default 5)")
    p.add_argument("--nemesis-interval", type=_interval, default=(5.0, 10.0), metavar="LO,HI",
                   help="seconds each fault lasts and each quiet period between faults, drawn from [LO, HI] (default 5,10)")
    p.add_argument("--recovery", type=float, default=5.0, metavar="S", help="quiet seconds after the final heal (default 5)")
    p.add_argument("--checker-timeout", type=_positive(float), default=120.0, metavar="S",
                   help="linearizability search budget, then 'unknown' (default 120)")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def register(subparsers: Any) -> None:
    """Add ``test``, ``test-all`` and ``analyze``."""
    workloads = ", ".join([*WORKLOADS, *(f"{w} (planned)" for w in PLANNED)])
    p = subparsers.add_parser("test", help="run one Jepsen-style test against a local cluster",
                              description="Run a workload against a fresh local cluster while a nemesis injects "
                                          "faults, then check the history. Exit 0 valid, 1 invalid, 2 unknown, "
                                          "255 crashed.")
    p.add_argument("--workload", "-w", type=_workload, default="register", help=f"one of: {workloads}")
    p.add_argument("--nemesis", "-n", type=_nemesis, default="none", help=f"one of: {', '.join(_nemesis_names())}")
    p.add_argument("--name", default=None, help="test name in the store (default <workload>-<nemesis>)")
    _common(p, 60.0)
    p.set_defaults(func=run_one)

    p = subparsers.add_parser("test-all", help="run a matrix of workloads x nemeses",
                              description="Run every workload with every nemesis (shorter runs) and print a "
                                          "summary table. Exits with the worst code.")
    p.add_argument("--workloads", type=_list_of(_workload), default=list(WORKLOADS), help="comma-separated workloads")
    p.add_argument("--nemeses", type=_list_of(_nemesis), default=None,
                   help=f"comma-separated nemeses (default: {','.join(NEMESIS_NAMES)})")
    _common(p, TEST_ALL_TIME_LIMIT)
    p.set_defaults(func=run_all)

    p = subparsers.add_parser("analyze", help="re-check a stored run",
                              description="Re-run the checkers on a stored run's history and rewrite its "
                                          "results and report. Exit 0 valid, 1 invalid, 2 unknown, 255 crashed.")
    p.add_argument("run_dir", nargs="?", default=None, metavar="RUN_DIR", help="default: <store>/latest")
    p.add_argument("--store", default="store", help="store directory (default store/)")
    p.add_argument("--checker-timeout", type=_positive(float), default=None, metavar="S",
                   help="linearizability search budget (default: the run's)")
    p.add_argument("--no-report", action="store_true", help="do not redraw the plots and timeline")
    p.set_defaults(func=analyze)


def _config(args: argparse.Namespace, workload: str, nemesis: str, name: str | None = None) -> TestConfig:
    return TestConfig(workload=workload, nemesis=nemesis, nodes=args.nodes, time_limit=args.time_limit,
                      concurrency=args.concurrency, rate=args.rate, seed=args.seed, store=args.store,
                      toxiproxy=args.toxiproxy, name=name, op_timeout=args.op_timeout, recovery=args.recovery,
                      checker_timeout=args.checker_timeout, nemesis_interval=args.nemesis_interval,
                      progress=not args.quiet)


def _verdict(valid: Any) -> str:
    return {True: "VALID", False: "INVALID"}.get(valid, "UNKNOWN") if isinstance(valid, bool) or valid == "unknown" \
        else "UNKNOWN"


def _checker_line(name: str, result: dict[str, Any]) -> str:
    text = f"{name}: {_verdict(result.get('valid')).lower()}"
    if name == "linear":
        text += f" ({result.get('model')}, {result.get('ops')} ops, {result.get('partitions')} keys, " \
                f"{result.get('elapsed_ms')} ms)"
        if "failing_op" in result:
            op, done = result["failing_op"], result.get("failing_completion") or {}
            text += (f"\n    cannot linearize key {result.get('failing_key')!r}: process {op.get('process')} "
                     f"{op.get('f')} {json.dumps(op.get('value'))} -> {json.dumps(done.get('value'))} "
                     f"(history line {result.get('failing_line')})")
    elif name == "counter":
        text += f" ({result.get('reads')} reads"
        errors = result.get("errors") or []
        text += f", {len(errors)} out of bounds)" if errors else ")"
        for e in errors[:3]:
            text += f"\n    read {e.get('value')} outside [{e.get('lower')}, {e.get('upper')}]"
    elif name == "stats" and result.get("valid") is not True:
        never = [f for f, c in (result.get("by_f") or {}).items() if not c.get("ok")]
        text += f" (never succeeded: {', '.join(never)})"
    return text


def summary(results: dict[str, Any], run_dir: Path | None) -> str:
    """Return the end-of-run summary: verdict, ops by type and f, checkers, where the report is."""
    ops = results.get("ops", {})
    t = ops.get("by_type", {})
    lines = [f"{results.get('test')}: {_verdict(results.get('valid'))}  (seed {results.get('seed')})",
             f"  ops: {ops.get('invokes', 0)} invoked; ok {t.get('ok', 0)}, fail {t.get('fail', 0)}, "
             f"info {t.get('info', 0)}; nemesis ops {ops.get('nemesis_ops', 0)}"]
    for f, c in sorted((ops.get("by_f") or {}).items()):
        lines.append(f"    {f:<6} ok {c.get('ok', 0):>5}  fail {c.get('fail', 0):>5}  info {c.get('info', 0):>5}")
    for name, result in (results.get("checkers") or {}).items():
        lines.append("  " + _checker_line(name, result))
    if run_dir is not None:
        lines.append(f"  report: {run_dir}/ (results.json, timeline.html, latency-raw.png, rate.png)")
    return "\n".join(lines)


def _crash_line(command: str, exc: BaseException) -> str:
    where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    at = f" at {Path(where.filename).name}:{where.lineno}" if where else ""
    return f"chaos {command}: crashed: {type(exc).__name__}: {exc}{at}"


def _run(config: TestConfig, out: TextIO, err: TextIO, command: str) -> tuple[int, dict[str, Any] | None, Path | None]:
    try:
        result = run_test(config, progress=err)
    except (KeyboardInterrupt, asyncio.CancelledError):
        raise KeyboardInterrupt from None
    except Exception as exc:  # noqa: BLE001 - a crash is Jepsen's 255, reported in one line
        print(_crash_line(command, exc), file=err)
        return CRASHED, None, None
    print(summary(result.results, result.run_dir), file=out)
    return exit_code(result.valid), result.results, result.run_dir


def run_one(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run ``chaos test``."""
    out, err = out or sys.stdout, err or sys.stderr
    code, _, _ = _run(_config(args, args.workload, args.nemesis, args.name), out, err, "test")
    return code


def worst(codes: Sequence[int]) -> int:
    """Return the worst exit code: crashed over invalid over unknown over valid."""
    return max(codes, key=lambda c: _SEVERITY.get(c, 3), default=0)


def run_all(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run ``chaos test-all``: every workload with every nemesis, then a summary table."""
    out, err = out or sys.stdout, err or sys.stderr
    nemeses = args.nemeses or [n for n in NEMESIS_NAMES if n in _nemesis_names()]
    rows = []
    for workload in args.workloads:
        for nemesis in nemeses:
            print(f"=== {workload} x {nemesis}", file=err, flush=True)
            code, results, run_dir = _run(_config(args, workload, nemesis), out, err, "test-all")
            rows.append((f"{workload}-{nemesis}", code, results, run_dir))
    print(_table(rows), file=out)
    return worst([r[1] for r in rows])


def _table(rows: list[tuple[str, int, dict[str, Any] | None, Path | None]]) -> str:
    header = ["TEST", "VERDICT", "OPS", "OK", "FAIL", "INFO", "RUN"]
    body = []
    for name, code, results, run_dir in rows:
        t = (results or {}).get("ops", {}).get("by_type", {})
        verdict = "CRASHED" if code == CRASHED else _verdict((results or {}).get("valid"))
        body.append([name, verdict, str((results or {}).get("ops", {}).get("invokes", "-")), str(t.get("ok", "-")),
                     str(t.get("fail", "-")), str(t.get("info", "-")), str(run_dir or "-")])
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [header, *body])


def analyze(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run ``chaos analyze``: re-check a stored run; rewrite ``results.json`` and the report."""
    out, err = out or sys.stdout, err or sys.stderr
    try:
        run_dir = store.resolve_run(args.run_dir, args.store)
        config = TestConfig.from_dict(store.load_test(run_dir))
        if args.checker_timeout is not None:
            config.checker_timeout = args.checker_timeout
        workload = make_workload(config.workload, **config.workload_options)
        history = [op.to_dict() for op in load(run_dir / store.HISTORY, "jsonl").ops]
        results = check_history(workload, history, config)
    except (store.StoreError, HistoryError, UnknownWorkload) as exc:
        print(f"chaos analyze: {exc}", file=err)
        return CRASHED
    except Exception as exc:  # noqa: BLE001 - bad input or a checker bug: Jepsen's 255
        print(_crash_line("analyze", exc), file=err)
        return CRASHED
    store.write_json(run_dir / store.RESULTS, results)
    if not args.no_report:
        store.write_report(run_dir, history, config)
    print(summary(results, run_dir), file=out)
    return exit_code(results["valid"])
