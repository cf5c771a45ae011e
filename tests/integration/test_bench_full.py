"""The full `consensus bench` at its default sizes (pytest -m bench; about 40 minutes).

It asserts the run's shape and health, never its speed: every default scenario has rows, no
load lost operations to errors, and the failovers and catch-ups all completed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.bench, pytest.mark.timeout(3600)]


def test_the_default_bench_runs_every_scenario_cleanly(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-m", "consensus", "bench", "--scenario", "all", "--out", str(tmp_path), "--quiet"],
                            capture_output=True, text=True, timeout=3500, cwd=ROOT, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads((tmp_path / "results.json").read_text())
    assert {r["scenario"] for r in data["loads"]} == {"embedded", "http", "kv", "locks", "sweep", "payload", "sizes"}
    for row in data["loads"]:
        assert row["rate"] > 0 and row["failed"] == 0, row
    locks = [r for r in data["loads"] if r["scenario"] == "locks"]
    assert {(r["op"], r["concurrency"]) for r in locks} == {("lock 1 name", 8), ("lock 8 names", 8)}
    kv = {r["op"] for r in data["loads"] if r["scenario"] == "kv" and r["system"] == "raftwork" and r["concurrency"] == 32}
    assert kv == {"kv put", "kv linearizable get", "kv stale get"}
    failover = [e for e in data["events"] if e["scenario"] == "failover"]
    assert failover and all(len(e["samples_s"]) == 5 for e in failover)
    assert all(e["median_s"] is not None for e in data["events"])
