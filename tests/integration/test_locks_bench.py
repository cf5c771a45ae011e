"""benchmarks/locks_bench.py runs end to end and prints a rate for both scenarios (marked bench)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from consensus.testing.procs import child_env

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.bench
@pytest.mark.timeout(240)
def test_the_locks_benchmark_prints_both_scenarios():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "locks_bench.py"), "--seconds", "1", "--rounds", "1"],
                         env=child_env(), capture_output=True, text=True, timeout=220)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [line.split() for line in out.stdout.splitlines() if line.startswith(("contended", "spread"))]
    assert {(r[0], r[1]) for r in rows} >= {("contended", "raftwork"), ("spread", "raftwork")}
    assert all(float(r[-2]) > 0 for r in rows if r[1] == "raftwork")
