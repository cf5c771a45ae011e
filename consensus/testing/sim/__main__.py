"""Sweep simulation seeds from a shell: ``python -m consensus.testing.sim --seeds 0-999``."""

from __future__ import annotations

import argparse
import sys
import time

from consensus.testing.sim import run_seed


def _seeds(text: str) -> list[int]:
    seeds: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        seeds.extend(range(int(lo), int(hi or lo) + 1))
    return seeds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m consensus.testing.sim", description=__doc__)
    parser.add_argument("--seed", type=int, help="run one seed and print its whole report")
    parser.add_argument("--seeds", default="0-99", help="seeds to sweep, e.g. 0-999 or 1,5,9 (default 0-99)")
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--duration", type=float, default=8.0, help="simulated seconds of faults per seed")
    parser.add_argument("--legacy", action="store_true", help="the engine as it was before the Raft fixes")
    parser.add_argument("--scenario", help="run a named regression scenario instead of seeds")
    parser.add_argument("--stop-on-failure", action="store_true")
    args = parser.parse_args(argv)
    if args.scenario:
        from consensus.testing.sim.scenarios import SCENARIOS

        if args.scenario not in SCENARIOS:
            parser.error(f"unknown scenario {args.scenario!r}; known: {', '.join(sorted(SCENARIOS))}")
        result = SCENARIOS[args.scenario](legacy=args.legacy)
        print(result.report())
        return 0 if result.ok else 1
    seeds = [args.seed] if args.seed is not None else _seeds(args.seeds)
    started, failed = time.perf_counter(), []
    for seed in seeds:
        result = run_seed(seed, nodes=args.nodes, legacy=args.legacy, duration=args.duration)
        if args.seed is not None:
            print(result.report())
            failed += [] if result.ok else [seed]
        elif not result.ok:
            failed.append(seed)
            print(result.report(trace_lines=30), flush=True)
            if args.stop_on_failure:
                break
        elif result.liveness:
            print(f"seed {seed}: safe, liveness: {'; '.join(result.liveness)}", flush=True)
    elapsed = time.perf_counter() - started
    done = len(seeds) if not (args.stop_on_failure and failed) else seeds.index(failed[-1]) + 1
    print(f"{done} seeds in {elapsed:.1f}s ({done / elapsed:.1f} seeds/s): "
          f"{len(failed)} unsafe{': ' + ','.join(map(str, failed)) if failed else ''}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
