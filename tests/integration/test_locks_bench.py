"""benchmarks/locks_bench.py runs `consensus bench --scenario locks` end to end (marked bench)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from consensus.testing.procs import child_env

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.bench
@pytest.mark.timeout(240)
def test_the_locks_benchmark_prints_both_cases():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "locks_bench.py"), "--seconds", "1", "--rounds", "1", "--clients", "3"],
                         env=child_env(), capture_output=True, text=True, timeout=220)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [line.split() for line in out.stdout.splitlines() if line.startswith("locks ")]
    raftwork = {" ".join(r[2:5]): float(r[9].rstrip("*")) for r in rows if r[1] == "raftwork"}  # op -> ops/s
    assert set(raftwork) == {"lock 1 name", "lock 3 names"} and all(rate > 0 for rate in raftwork.values())
