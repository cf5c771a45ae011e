"""``consensus bench``: raftwork side by side with etcd and raw pysyncobj, on this machine.

::

    consensus bench                                   # every default scenario (about 40 minutes)
    consensus bench --scenario http,failover --concurrency 1,8,32 --duration 3 --out results/
    consensus bench --scenario kv,locks --lock-clients 8 --repeats 5
    python -m consensus.bench --scenario embedded --embedded-concurrency 64

Every system runs as real processes on 127.0.0.1 with its own ports and data dirs; the load
client runs in a process of its own and is measured against a do-nothing server first (its
ceiling). Each point runs raftwork and its baseline interleaved (A, B, A, B, ...) and reports
medians and the ratio raftwork/baseline. Everything started is stopped by PID at the end.
See docs/benchmarks.md for every flag and docs/capacity.md for how to read the figures.
"""

from __future__ import annotations

import argparse
import datetime
import json
import signal
import sys
from typing import Any, Sequence

from consensus.bench.settings import DEFAULT_SCENARIOS, SCENARIOS, BenchSettings

__all__ = ["BenchSettings", "SCENARIOS", "register", "main", "settings_from_args"]


def _ints(low: int, high: int) -> Any:
    def parse(text: str) -> list[int]:
        try:
            values = [int(x) for x in text.split(",") if x.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {text!r}") from None
        if not values or any(not low <= v <= high for v in values):
            raise argparse.ArgumentTypeError(f"each value must be from {low} to {high}, not {text!r}")
        return values

    return parse


def _scenarios(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if names == ["all"]:
        return list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown scenario {unknown[0] if unknown else text!r} (choose from {', '.join(SCENARIOS)} or all)")
    return names


def _targets(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names or any(n not in ("leader", "follower") for n in names):
        raise argparse.ArgumentTypeError(f"--targets takes leader, follower or both, not {text!r}")
    return names


def _positive(kind: type) -> Any:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, not {text!r}")
        return value

    return parse


def _add_arguments(p: argparse.ArgumentParser) -> None:
    d = BenchSettings()
    p.add_argument("--scenario", type=_scenarios, default=list(DEFAULT_SCENARIOS), metavar="NAME[,NAME]",
                   help=f"what to measure: {', '.join(SCENARIOS)}, or all (default: all but profile)")
    p.add_argument("--concurrency", type=_ints(1, 4096), default=d.concurrency, metavar="C[,C]",
                   help="concurrent clients for the http, kv, payload and sizes scenarios (default 32)")
    p.add_argument("--embedded-concurrency", type=_ints(1, 4096), default=d.embedded_concurrency, metavar="C[,C]",
                   help="concurrent callers for the embedded scenario; the last one for embedded payloads (default 1,64)")
    p.add_argument("--sweep", type=_ints(1, 4096), default=d.sweep, metavar="C[,C]", help="concurrency levels of the sweep scenario (default 1,8,32,128)")
    p.add_argument("--payloads", type=_ints(1, 60_000), default=d.payloads, metavar="BYTES[,BYTES]", help="value sizes of the payload scenario (default 16,1024,16384)")
    p.add_argument("--sizes", type=_ints(1, 7), default=d.sizes, metavar="N[,N]", help="cluster sizes of the sizes scenario (default 1,3,5)")
    p.add_argument("--targets", type=_targets, default=d.targets, metavar="leader,follower",
                   help="where the http, kv and locks scenarios send requests (default both)")
    p.add_argument("--lock-clients", type=_positive(int), default=d.lock_clients, metavar="N",
                   help="clients of the locks scenario, each with its own session (etcd: lease): all on one lock, then on N locks (default 8)")
    p.add_argument("--duration", type=_positive(float), default=d.duration, metavar="S", help="seconds measured per repeat (default 5)")
    p.add_argument("--warmup", type=float, default=d.warmup, metavar="S", help="seconds of load before measuring, not counted (default 1)")
    p.add_argument("--repeats", type=_positive(int), default=d.repeats, metavar="N", help="interleaved repeats per point; rows are medians (default 3)")
    p.add_argument("--failovers", type=_positive(int), default=d.failovers, metavar="N", help="leader kills per system (default 5)")
    p.add_argument("--failover-writers", type=_positive(int), default=d.failover_writers, metavar="N", help="writers during a failover (default 8)")
    p.add_argument("--failover-window", type=_positive(float), default=d.failover_window, metavar="S",
                   help="seconds after a kill to wait for a successful write (default 8)")
    p.add_argument("--catchup-entries", type=_positive(int), default=d.catchup_entries, metavar="N", help="log entries a restarted follower misses (default 10000)")
    p.add_argument("--pause-seconds", type=_positive(float), default=d.pause_seconds, metavar="S", help="how long a follower is SIGSTOPped (default 5)")
    p.add_argument("--profile-seconds", type=_positive(float), default=d.profile_seconds, metavar="S", help="py-spy sampling time of the profile scenario (default 10)")
    p.add_argument("--memory-items", type=_positive(int), default=d.memory_items, metavar="N",
                   help="keys, records or sessions the memory scenario creates per row (default 20000)")
    p.add_argument("--fsync", choices=["always", "never"], default=d.fsync,
                   help="raftwork's fsync policy, once nodes support it (default always; etcd 3.4 always fsyncs)")
    p.add_argument("--no-etcd", action="store_true", help="skip the etcd baseline")
    p.add_argument("--no-pysyncobj", action="store_true", help="skip the raw pysyncobj baseline")
    p.add_argument("--out", metavar="DIR", help="results directory (default bench-results/YYYYmmdd-HHMMSS)")
    p.add_argument("--no-plots", action="store_true", help="write no PNG plots")
    p.add_argument("--json", action="store_true", help="print results.json instead of the table")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def settings_from_args(args: argparse.Namespace) -> BenchSettings:
    from consensus.cli import UsageError

    if args.warmup < 0:
        raise UsageError("--warmup must not be negative")
    out = args.out or f"bench-results/{datetime.datetime.now():%Y%m%d-%H%M%S}"
    return BenchSettings(
        scenarios=args.scenario, concurrency=args.concurrency, embedded_concurrency=args.embedded_concurrency,
        sweep=args.sweep, payloads=args.payloads, sizes=args.sizes, targets=args.targets, lock_clients=args.lock_clients,
        duration=args.duration,
        warmup=args.warmup, repeats=args.repeats, failovers=args.failovers, failover_writers=args.failover_writers,
        failover_window=args.failover_window, catchup_entries=args.catchup_entries, pause_seconds=args.pause_seconds,
        profile_seconds=args.profile_seconds, memory_items=args.memory_items, fsync=args.fsync, etcd=not args.no_etcd, pysyncobj=not args.no_pysyncobj,
        out=out, plots=not args.no_plots,
    )


def command(args: argparse.Namespace) -> int:
    from consensus.bench.results import format_table
    from consensus.bench.run import run_bench
    from consensus.cli import CommandError

    settings = settings_from_args(args)
    # SIGTERM unwinds like Ctrl-C, so every cluster the run started is stopped by PID on the way out.
    signal.signal(signal.SIGTERM, _interrupt)
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # started in the background by a shell
        signal.signal(signal.SIGINT, _interrupt)

    def progress(message: str) -> None:
        if not args.quiet:
            print(f"bench: {message}", file=sys.stderr, flush=True)

    try:
        results = run_bench(settings, progress)
    except (RuntimeError, OSError) as exc:
        raise CommandError(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
    print(json.dumps(results.to_dict(), indent=2) if args.json else format_table(results))
    print(f"results in {settings.out}", file=sys.stderr)
    return 0


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def register(subparsers: Any) -> None:
    scenarios = "\n".join(f"  {name:<9} {what}" for name, what in SCENARIOS.items())
    parser = subparsers.add_parser("bench", help="measure throughput, latency, failover and catch-up against etcd and raw pysyncobj",
                                   description="Measure raftwork side by side with etcd and raw pysyncobj on this machine.",
                                   epilog=f"scenarios (--scenario):\n{scenarios}\nSee docs/benchmarks.md.",
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_arguments(parser)
    parser.set_defaults(func=command)


def main(argv: Sequence[str] | None = None) -> int:
    from consensus.cli import main as cli_main

    return cli_main(["bench", *(sys.argv[1:] if argv is None else argv)])
