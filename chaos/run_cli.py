"""``chaos test``, ``chaos test-all`` and ``chaos analyze``.

Exit codes (Jepsen's, from :class:`chaos.verdict.Verdict`): 0 valid, 1 invalid, 2 unknown, 255
crashed; bad flags exit 2 with one error line. ``test-all`` and ``--test-count`` exit with the
worst code of their runs (255 over 1 over 2 over 0).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import traceback
from pathlib import Path
from typing import Any, Sequence, TextIO

from chaos import store
from chaos.history import MISSING, HistoryError, load
from chaos.nemesis import NEMESES
from chaos.runner import NEMESIS_NAMES, ConfigError, RunResults, TestConfig, check_history, parse_concurrency, run_test
from chaos.runner.availability import availability
from chaos.runner.checks import faults_check, logs_check
from chaos.runner.results import Stored
from chaos.verdict import EXIT_CRASHED, CheckResult, worst_exit
from chaos.workloads import CONSISTENCIES, PLANNED, WORKLOADS, UnknownWorkload, make_workload

__all__ = ["register", "run_one", "run_all", "analyze", "worst"]

TEST_ALL_TIME_LIMIT = 20.0
RUN_ONLY_CHECKS = ("replicas",)  # made on the live cluster; analyze keeps what the run recorded
worst = worst_exit


def _nemesis_names() -> tuple[str, ...]:
    return tuple(NEMESES)


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
    parts = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [t for t in parts if t not in names]
    if unknown or not parts:
        raise argparse.ArgumentTypeError(f"unknown nemesis {(unknown or [text])[0]!r} (available: {', '.join(names)})")
    if len(parts) > 1 and "none" in parts:
        raise argparse.ArgumentTypeError("'none' cannot be mixed with other nemeses")
    return ",".join(parts)


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


def _groups(text: str) -> int:
    value = _positive(int)(text)
    if value > 16:
        raise argparse.ArgumentTypeError(f"at most 16 groups, not {value}")
    return int(value)


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


def _node_counts(text: str) -> list[int]:
    parse = _positive(int)
    counts = [parse(t.strip()) for t in text.split(",") if t.strip()]
    if not counts:
        raise argparse.ArgumentTypeError("give at least one cluster size")
    return counts


def _common(p: argparse.ArgumentParser, time_limit: float, *, matrix: bool = False) -> None:
    if matrix:
        p.add_argument("--nodes", type=_node_counts, default=[3], metavar="N[,N...]",
                       help="cluster sizes, a comma list: each run once per size (default 3)")
    else:
        p.add_argument("--nodes", type=_positive(int), default=3, help="cluster size (default 3)")
    p.add_argument("--groups", type=_groups, default=1, metavar="G",
                   help="Raft groups (default 1); with G > 1 every node process hosts a member of each group, "
                        "keys are hashed over the groups and faults hit every group on a node at once")
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
    p.add_argument("--read-consistency", choices=CONSISTENCIES, default="linearizable",
                   help="linearizable (default) or stale reads: stale ones may miss writes, and the checker must say so")
    p.add_argument("--test-count", type=_positive(int), default=1, metavar="N",
                   help="run each test N times (seeds SEED, SEED+1...; random without --seed); exit with the worst")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr (run.log still gets them)")


def register(subparsers: Any) -> None:
    """Add ``test``, ``test-all`` and ``analyze``."""
    workloads = ", ".join([*WORKLOADS, *(f"{w} (planned)" for w in PLANNED)])
    p = subparsers.add_parser("test", help="run one Jepsen-style test against a local cluster",
                              description="Run a workload against a fresh local cluster while a nemesis injects "
                                          "faults, then check the history. Exit 0 valid, 1 invalid, 2 unknown, "
                                          "255 crashed.")
    p.add_argument("--workload", "-w", type=_workload, default="register", help=f"one of: {workloads}")
    p.add_argument("--nemesis", "-n", type=_nemesis, default="none",
                   help=f"one of {', '.join(_nemesis_names())}, or a comma list of them (each fault one of them)")
    p.add_argument("--name", default=None, help="test name in the store (default <workload>-<nemesis>)")
    p.add_argument("--leave-db-running", action="store_true",
                   help="after the run, keep the healed cluster up (in the foreground) until Ctrl-C")
    _common(p, 60.0)
    p.set_defaults(func=run_one)

    p = subparsers.add_parser("test-all", help="run a matrix of workloads x nemeses",
                              description="Run every workload with every nemesis (shorter runs) and print a "
                                          "summary table. Exits with the worst code.")
    p.add_argument("--workloads", type=_list_of(_workload), default=list(WORKLOADS), help="comma-separated workloads")
    p.add_argument("--nemeses", type=_list_of(_nemesis), default=None,
                   help=f"comma-separated nemeses (default: {','.join(NEMESIS_NAMES)})")
    _common(p, TEST_ALL_TIME_LIMIT, matrix=True)
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


def _config(args: argparse.Namespace, workload: str, nemesis: str, name: str | None = None,
            seed: int | None = None, nodes: int | None = None) -> TestConfig:
    return TestConfig(workload=workload, nemesis=nemesis, nodes=nodes or args.nodes, groups=args.groups,
                      time_limit=args.time_limit,
                      concurrency=args.concurrency, rate=args.rate, seed=seed, store=args.store,
                      toxiproxy=args.toxiproxy, name=name, op_timeout=args.op_timeout, recovery=args.recovery,
                      checker_timeout=args.checker_timeout, nemesis_interval=args.nemesis_interval,
                      read_consistency=args.read_consistency, leave_db_running=getattr(args, "leave_db_running", False),
                      progress=not args.quiet)


def _seeds(args: argparse.Namespace) -> list[int | None]:
    """Return one seed per repetition: SEED, SEED+1, ... with --seed; else random ones."""
    return [None if args.seed is None else args.seed + i for i in range(args.test_count)]


def _crash_line(command: str, exc: BaseException) -> str:
    where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    at = f" at {Path(where.filename).name}:{where.lineno}" if where else ""
    return f"chaos {command}: crashed: {type(exc).__name__}: {exc}{at}"


def _run(config: TestConfig, out: TextIO, err: TextIO, command: str) -> tuple[int, RunResults | None, Path | None]:
    try:
        result = run_test(config, progress=err)
    except (KeyboardInterrupt, asyncio.CancelledError):
        raise KeyboardInterrupt from None
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - a crash is Jepsen's 255, reported in one line
        print(_crash_line(command, exc), file=err)
        return EXIT_CRASHED, None, None
    print(result.results.summary(result.run_dir), file=out)
    return result.valid.exit_code, result.results, result.run_dir


def run_one(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run ``chaos test`` (``--test-count`` times)."""
    out, err = out or sys.stdout, err or sys.stderr
    codes = []
    try:
        for seed in _seeds(args):
            codes.append(_run(_config(args, args.workload, args.nemesis, args.name, seed), out, err, "test")[0])
    except ConfigError as exc:
        print(f"chaos test: error: {exc}", file=err)
        return 2
    return worst_exit(codes)


def run_all(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run ``chaos test-all``: every workload with every nemesis, then a summary table."""
    out, err = out or sys.stdout, err or sys.stderr
    nemeses = args.nemeses or list(NEMESIS_NAMES)
    rows = []
    try:
        for workload in args.workloads:
            for nemesis in nemeses:
                for nodes in args.nodes:
                    for seed in _seeds(args):
                        print(f"=== {workload} x {nemesis} x {nodes} nodes", file=err, flush=True)
                        config = _config(args, workload, nemesis, seed=seed, nodes=nodes)
                        code, results, run_dir = _run(config, out, err, "test-all")
                        rows.append((f"{workload}-{nemesis}", nodes, code, results, run_dir))
    except ConfigError as exc:
        print(f"chaos test-all: error: {exc}", file=err)
        return 2
    print(_table(rows, args.time_limit), file=out)
    return worst_exit([r[2] for r in rows])


def _seconds(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, (int, float)) else "-"


def _table(rows: list[tuple[str, int, int, RunResults | None, Path | None]], time_limit: float) -> str:
    """Return test-all's summary: per run its verdict, op counts and rate, share of info ops,
    median client stall per leader loss (with how many losses) and seconds until the cluster
    served again after the final heal."""
    header = ["TEST", "NODES", "VERDICT", "OPS", "OPS/S", "OK", "FAIL", "INFO", "INFO%", "STALL-S", "LOSSES", "RECOVER-S", "RUN"]
    body = []
    for name, nodes, code, results, run_dir in rows:
        counts = results.counts if results is not None else {}
        avail = (results.extra.get("availability") if results is not None else None) or {}
        t = counts.get("by_type", {})
        done = sum(t.values())
        verdict = "CRASHED" if code == EXIT_CRASHED or results is None else str(results.valid)
        body.append([name, str(nodes), verdict, str(counts.get("invokes", "-")), f"{done / time_limit:.1f}" if done else "-",
                     str(t.get("ok", "-")), str(t.get("fail", "-")), str(t.get("info", "-")),
                     f"{100 * t.get('info', 0) / done:.1f}" if done else "-", _seconds(avail.get("median_stall_s")),
                     str(avail.get("leader_losses", "-")), _seconds(avail.get("recovery_s")), str(run_dir or "-")])
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [header, *body])


def analyze(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run ``chaos analyze``: re-check a stored run; rewrite ``results.json`` and the report.

    The history's header states the model and every key's initial value; the checks the run
    made on the live cluster (replica agreement) and an "interrupted" or "crashed" mark are kept
    from the stored ``results.json``.
    """
    out, err = out or sys.stdout, err or sys.stderr
    try:
        run_dir = store.resolve_run(args.run_dir, args.store)
        config = TestConfig.from_dict(store.load_test(run_dir))
        if args.checker_timeout is not None:
            config.checker_timeout = args.checker_timeout
        workload = make_workload(config.workload, read_consistency=config.read_consistency, **config.workload_options)
        loaded = load(run_dir / store.HISTORY, "jsonl")
        if loaded.init is not MISSING and loaded.init != workload.init:
            workload.init = loaded.init  # the run's stated initial value wins over today's default
        stored = store.load_results(run_dir) or {}
        checks: dict[str, CheckResult] = {name: Stored(data) for name, data in (stored.get("checkers") or {}).items()
                                          if name in RUN_ONLY_CHECKS and isinstance(data, dict)}
        checks["faults"] = faults_check(loaded.ops)
        checks["logs"] = logs_check(store.node_logs(run_dir))
        crashed = stored.get("crashed") if isinstance(stored.get("crashed"), str) else None
        results = check_history(workload, loaded.ops, test=config.test_name, nemesis=config.nemesis, seed=config.seed,
                                timeout=config.checker_timeout, run_checks=checks, crashed=crashed)
        recovery = (stored.get("availability") or {}).get("recovery_s")  # measured on the live cluster
        results.extra["availability"] = availability(loaded.ops, recovery).to_dict()
    except (store.StoreError, HistoryError, UnknownWorkload) as exc:
        print(f"chaos analyze: {exc}", file=err)
        return EXIT_CRASHED
    except Exception as exc:  # noqa: BLE001 - bad input or a checker bug: Jepsen's 255
        print(_crash_line("analyze", exc), file=err)
        return EXIT_CRASHED
    store.write_json(run_dir / store.RESULTS, results.to_dict())
    if not args.no_report:
        from chaos import report

        report.write_report(run_dir, loaded.ops, title=f"{config.test_name} {run_dir.name}")
    print(results.summary(run_dir), file=out)
    return results.valid.exit_code
