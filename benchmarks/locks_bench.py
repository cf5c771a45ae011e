"""Lock acquire+release round trips per second over HTTP: raftwork's lock service beside etcd's.

    python benchmarks/locks_bench.py [--seconds 5] [--rounds 3] [--clients 8] [--no-etcd]

A shorthand for ``consensus bench --scenario locks --targets leader`` (consensus/bench/, see
docs/benchmarks.md), which runs both cases with ``--clients`` clients (a session each; etcd: a
lease each): all on one lock, then each on a lock of its own; raftwork and etcd interleaved,
medians of the rounds, the ratio on raftwork's row. Everything it starts is stopped by PID.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from consensus.bench import main as bench_main  # noqa: E402


def bench_args(args: argparse.Namespace, out: str) -> list[str]:
    argv = ["--scenario", "locks", "--targets", "leader", "--lock-clients", str(args.clients), "--duration", str(args.seconds),
            "--repeats", str(args.rounds), "--no-plots", "--out", out]
    return argv + (["--no-etcd"] if not args.etcd else [])


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--no-etcd", dest="etcd", action="store_false")
    return p.parse_args(argv)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="locks-bench-") as out:
        raise SystemExit(bench_main(bench_args(parse(), out)))
