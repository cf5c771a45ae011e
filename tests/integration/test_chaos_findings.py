"""The harness finds real anomalies end to end (slow: full ``chaos test`` runs).

    python -m pytest -m slow tests/integration/test_chaos_findings.py
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]
ROOT = Path(__file__).resolve().parents[2]


def chaos_test(store: Path, *flags: str) -> tuple[int, dict]:
    proc = subprocess.run([sys.executable, "-m", "chaos", "test", "--store", str(store), "--quiet", *flags],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode in (0, 1, 2), proc.stdout + proc.stderr[-3000:]
    return proc.returncode, json.loads(((store / "latest").resolve() / "results.json").read_text())


def test_stale_reads_under_partitions_are_found_not_linearizable(tmp_path):
    """--read-consistency stale lets a node cut off from the leader answer from its old state."""
    for attempt in range(3):
        code, results = chaos_test(tmp_path / f"run{attempt}", "--workload", "register", "--nemesis", "partition",
                                   "--read-consistency", "stale", "--time-limit", "30")
        if code == 1:
            linear = results["checkers"]["linear"]
            assert linear["valid"] is False and linear["failing_op"]["f"] == "read"
            return
    pytest.fail("three runs with stale reads under partitions were all found linearizable")


def test_stale_kv_reads_under_partitions_are_found_not_linearizable(tmp_path):
    """The same through the kv workload's get (its deletes and txn cas beside)."""
    for attempt in range(3):
        code, results = chaos_test(tmp_path / f"run{attempt}", "--workload", "kv", "--nemesis", "partition",
                                   "--read-consistency", "stale", "--time-limit", "30")
        if code == 1:
            assert results["checkers"]["linear"]["failing_op"]["f"] == "read"
            return
    pytest.fail("three kv runs with stale reads under partitions were all found linearizable")


def test_linearizable_reads_under_partitions_are_valid(tmp_path):
    code, results = chaos_test(tmp_path, "--workload", "register", "--nemesis", "partition", "--time-limit", "30")
    assert code == 0 and results["checkers"]["linear"]["valid"] is True, results


def test_a_follower_restarted_while_leadership_moves_loses_nothing(tmp_path):
    """The schedule that made pysyncobj truncate applied entries (CRITICAL in the node log) and lose
    acknowledged writes. On an engine without the safety fixes (issue 8) this run is INVALID."""
    code, results = chaos_test(tmp_path, "--workload", "register", "--nemesis", "restart-follower",
                               "--time-limit", "60", "--nemesis-interval", "5,8")
    checks = results["checkers"]
    assert checks["logs"]["valid"] is True, checks["logs"]["lines"]
    assert checks["replicas"]["valid"] is True and checks["linear"]["valid"] is True, checks
    assert checks["faults"]["injected"] >= 2
