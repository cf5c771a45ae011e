"""The bank across three Raft groups under every nemesis (slow: about a minute each):

    python -m pytest -m slow tests/integration/test_chaos_groups_acceptance.py

- ``chaos test --workload bank --groups 3 --nemesis NAME --time-limit 30`` exits 0 (valid) for
  every nemesis, with every report file and every group's replicas agreeing;
- ``--nemesis kill-coordinator``: the history names the transactions each kill caught prepared
  everywhere and undecided, and the node logs show them paused there by the test hook; editing a
  read in the stored history to lose money makes ``chaos analyze`` INVALID;
- ``--nemesis all --time-limit 60``;
- resolvers made unsafe on purpose (``RAFTWORK_TEST_UNSAFE_RESOLVE=1``, transactions held past
  the intent timeout): the run is INVALID, the bank checker names reads whose total is wrong.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.test_chaos_run import REPORT, lose_money_in_a_read, no_process_left, ops_of

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]
ROOT = Path(__file__).resolve().parents[2]
NEMESES = ["partition", "partition-leader", "one-way", "kill", "kill-leader", "pause", "latency", "restart-follower"]


def chaos(*argv: str, timeout: float, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "chaos", *argv], capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env={**os.environ, **(env or {})})


def bank(tmp_path: Path, nemesis: str, seconds: int = 30, env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess[str], Path]:
    proc = chaos("test", "--workload", "bank", "--groups", "3", "--nemesis", nemesis, "--time-limit", str(seconds),
                 "--store", str(tmp_path), "--quiet", timeout=900, env=env)
    return proc, (tmp_path / "latest").resolve()


def assert_valid_run(proc: subprocess.CompletedProcess[str], run: Path) -> dict:
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    for name in REPORT:
        assert (run / name).is_file() and (run / name).stat().st_size > 0, name
    checkers = json.loads((run / "results.json").read_text())["checkers"]
    assert checkers["bank"]["valid"] is True and checkers["bank"]["final"] is not None, checkers["bank"]
    assert checkers["bank"]["transfers"] > 0 and checkers["bank"]["reads"] > 0, checkers["bank"]
    assert all(f"g{i}: 3 nodes agree" in checkers["replicas"]["reason"] for i in (1, 2, 3)), checkers["replicas"]
    no_process_left(run)
    return checkers


@pytest.mark.parametrize("nemesis", NEMESES)
def test_the_bank_across_groups_stays_valid_under_each_nemesis(tmp_path, nemesis):
    checkers = assert_valid_run(*bank(tmp_path, nemesis))
    assert checkers["faults"]["injected"] >= 1, checkers["faults"]


def test_killing_the_coordinator_groups_leader_between_prepare_and_commit(tmp_path):
    proc, run = bank(tmp_path, "kill-coordinator")
    checkers = assert_valid_run(proc, run)
    kills = [op for op in ops_of(run) if op.get("f") == "kill-coordinator"]
    assert kills and checkers["faults"]["injected"] == len(kills)
    caught = [c["txn"] for op in kills for c in op["value"]["caught"]]
    assert caught, kills  # the kills landed in the window: transactions prepared everywhere, undecided
    logs = "".join(p.read_text() for p in (run / "nodes").glob("*.log"))
    assert all(f"txn {txn} prepared on" in logs for txn in caught)
    # The checker is not blind here: a read edited to lose money makes the stored run INVALID.
    lose_money_in_a_read(run)
    bad = chaos("analyze", str(run), "--no-report", timeout=300)
    assert bad.returncode == 1 and "wrong-total" in bad.stdout, bad.stdout + bad.stderr


def test_the_bank_across_groups_survives_every_nemesis(tmp_path):
    checkers = assert_valid_run(*bank(tmp_path, "all", seconds=60))
    assert checkers["faults"]["injected"] >= 3, checkers["faults"]


def test_unsafe_resolvers_lose_money_and_the_run_is_invalid(tmp_path):
    """2PC's classic bug, on purpose: a resolver that aborts a lock where it meets it without the
    record, while transactions wait past the intent timeout between prepare and decision."""
    proc, run = bank(tmp_path, "none", seconds=20,
                     env={"RAFTWORK_TEST_UNSAFE_RESOLVE": "1", "RAFTWORK_TEST_PAUSE_AFTER_PREPARE_MS": "1500"})
    assert proc.returncode == 1, proc.stdout + proc.stderr[-3000:]
    errors = json.loads((run / "results.json").read_text())["checkers"]["bank"]["errors"]
    assert errors and {e["problem"] for e in errors} <= {"wrong-total", "negative"}, errors
    no_process_left(run)
