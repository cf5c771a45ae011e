"""Issue 11's acceptance runs (slow: minutes each; run them with their own command):

    python -m pytest -m slow tests/integration/test_chaos_acceptance.py

- ``chaos test --workload lock|kv|set --nemesis all --time-limit 60`` exits 0 with every report file;
- ``chaos test --workload bank --nemesis all --time-limit 30`` (issue 13) likewise, the bank checker valid;
- ``chaos test-all`` over every workload with ``--nemesis all`` on 3 and 5 nodes prints its table,
  every row valid.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.test_chaos_run import REPORT, no_process_left, table_rows

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]
ROOT = Path(__file__).resolve().parents[2]


def chaos(*argv: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "chaos", *argv], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


@pytest.mark.parametrize("workload", ["lock", "kv", "set"])
def test_the_app_workloads_survive_every_nemesis(tmp_path, workload):
    proc = chaos("test", "--workload", workload, "--nemesis", "all", "--time-limit", "60", "--store", str(tmp_path),
                 "--quiet", timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    run = (tmp_path / "latest").resolve()
    for name in REPORT:
        assert (run / name).is_file() and (run / name).stat().st_size > 0, name
    results = json.loads((run / "results.json").read_text())
    assert results["valid"] is True and results["checkers"]["faults"]["injected"] >= 3, results["checkers"]["faults"]
    no_process_left(run)


def test_the_bank_workload_survives_every_nemesis(tmp_path):
    proc = chaos("test", "--workload", "bank", "--nemesis", "all", "--time-limit", "30", "--store", str(tmp_path),
                 "--quiet", timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    run = (tmp_path / "latest").resolve()
    for name in REPORT:
        assert (run / name).is_file() and (run / name).stat().st_size > 0, name
    checkers = json.loads((run / "results.json").read_text())["checkers"]
    assert checkers["bank"]["valid"] is True and checkers["bank"]["final"] is not None, checkers["bank"]
    assert checkers["bank"]["transfers"] > 0 and checkers["faults"]["injected"] >= 1, checkers["faults"]
    no_process_left(run)


def test_the_matrix_over_every_workload_with_every_nemesis_on_3_and_5_nodes(tmp_path):
    proc = chaos("test-all", "--workloads", "register,counter,lock,kv,set", "--nemeses", "all", "--nodes", "3,5",
                 "--time-limit", "30", "--store", str(tmp_path), "--quiet", timeout=3000)
    rows = table_rows(proc.stdout)
    assert len(rows) == 10, proc.stdout
    assert proc.returncode == 0 and all(row["VERDICT"] == "VALID" for row in rows), proc.stdout
