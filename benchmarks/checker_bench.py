"""Benchmark the linearizability checker against Porcupine's per-file times in the manifest.

Usage::

    python benchmarks/checker_bench.py                 # etcd logs and the c50 kv files
    python benchmarks/checker_bench.py --all           # every history in the manifest
    python benchmarks/checker_bench.py --filter etcd_00 --repeat 5 --profile out.prof

For each file: parse once, check once untimed to warm up, then time ``check_calls`` (pairing
excluded, as in Porcupine's figure) ``--repeat`` times (default 5) and keep the median; then one more run under ``tracemalloc`` for
the peak memory of the check. Prints one line per file with the ratio to
``porcupine_median_ms``, and totals per group. Not a test: the numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import os
import csv
import resource
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from chaos.checker import check_calls, make_model  # noqa: E402
from chaos.history import MISSING, load, pair  # noqa: E402

DATA = ROOT / "tests" / "data" / "histories"
FORMAT_MODELS = {"porcupine-etcd-log": "cas-register", "porcupine-kv-edn-lines": "kv-append"}


def model_for(row: dict[str, str]) -> str:
    """Return our model name for a manifest row."""
    if row["format"] in FORMAT_MODELS:
        return FORMAT_MODELS[row["format"]]
    for name in ("multi-register", "mutex", "cas-register"):
        if name in row["model"]:
            return name
    raise ValueError(row["model"])


def group_of(row: dict[str, str]) -> str:
    """Return the totals group a manifest row belongs to."""
    if row["format"] == "porcupine-etcd-log":
        return "etcd"
    if row["format"] == "porcupine-kv-edn-lines":
        return "kv-c50" if "/c50-" in row["file"] else "kv-small"
    return "knossos"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--all", action="store_true", help="every manifest history, not just etcd and c50")
    parser.add_argument("--filter", default="", help="only files whose path contains this")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--profile", metavar="FILE", help="write a cProfile of all checks to FILE")
    parser.add_argument("--quiet", action="store_true", help="print only files over 5x and the totals")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall: perf_counter; cpu: this process's CPU time (steadier on a shared machine)")
    args = parser.parse_args()
    rows = list(csv.DictReader((DATA / "MANIFEST.tsv").open(encoding="utf-8"), delimiter="\t"))
    rows = [r for r in rows if args.filter in r["file"]
            and (args.all or group_of(r) in ("etcd", "kv-c50"))]
    totals: dict[str, list[float]] = {}
    worst: list[tuple[float, str]] = []
    worst_min: list[tuple[float, str]] = []
    peak_overall = 0
    profiler = cProfile.Profile() if args.profile else None
    print(f"clock: {args.clock}; load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'file':45} {'verdict':>8} {'ms':>9} {'min ms':>9} {'porc ms':>9} {'ratio':>7} {'peak MiB':>9} {'states':>8}")
    for row in rows:
        loaded = load(DATA / row["file"])
        calls = pair(loaded.ops)
        model = make_model(model_for(row), None if loaded.init is MISSING else loaded.init)
        check_calls(calls, model)  # warm up (first-call costs), not timed
        gc.collect()  # do not bill this file for the previous file's garbage
        times = []
        clock = time.perf_counter if args.clock == "wall" else time.process_time
        for _ in range(args.repeat):
            start = clock()
            if profiler:
                profiler.enable()
            result = check_calls(calls, model)
            if profiler:
                profiler.disable()
            times.append(clock() - start)
        tracemalloc.start()
        check_calls(calls, model)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        peak_overall = max(peak_overall, peak)
        ms = statistics.median(times) * 1000
        best_ms = min(times) * 1000
        porcupine = float(row["porcupine_median_ms"] or "nan")
        ratio = ms / porcupine if porcupine > 0 else float("nan")
        group = totals.setdefault(group_of(row), [0.0, 0.0, 0.0, 0.0])
        group[0] += ms
        group[1] += porcupine if porcupine == porcupine else 0.0
        group[2] += 1
        group[3] += best_ms
        worst.append((ratio, row["file"]))
        worst_min.append((best_ms / porcupine if porcupine > 0 else float("nan"), row["file"]))
        if not args.quiet or ratio > 5:
            print(f"{row['file'][-45:]:45} {str(result.valid):>8} {ms:9.2f} {best_ms:9.2f} {porcupine:9.3f} {ratio:7.2f} "
                  f"{peak / 2**20:9.2f} {result.explored:8d}")
    print()
    for name, (ours, theirs, n, best) in totals.items():
        print(f"{name:10} {int(n):4d} files: ours {ours:9.1f} ms (sum of minima {best:8.1f}), "
              f"Porcupine {theirs:8.1f} ms, ratio {ours / theirs:5.2f}x (minima {best / theirs:5.2f}x)")
    for label, items in (("median", worst), ("min", worst_min)):
        items = sorted((item for item in items if item[0] == item[0]), reverse=True)  # drop NaN (no figure)
        print(f"worst per-file ratios ({label}):", ", ".join(f"{Path(f).name} {r:.1f}x" for r, f in items[:5]))
    print(f"peak traced memory of one check: {peak_overall / 2**20:.1f} MiB; "
          f"process max RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    if profiler:
        profiler.dump_stats(args.profile)
        print(f"profile written to {args.profile}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
