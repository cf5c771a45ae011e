"""The run store's layout and links, and ``chaos analyze`` on stored runs (valid, corrupted, broken)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from chaos import store
from chaos.cli import main
from chaos.runner import Recorder, TestConfig
from chaos.workloads import make_workload


def test_timestamps_sort_and_run_dirs_are_unique(tmp_path):
    now = datetime(2026, 11, 28, 23, 30, 1, 123456, tzinfo=timezone.utc)
    assert store.timestamp(now) == "20261128T233001.123Z"
    a = store.new_run_dir(tmp_path, "register-none", now)
    b = store.new_run_dir(tmp_path, "register-none", now)
    assert a.name == "20261128T233001.123Z" and b.name == "20261128T233001.123Z-2" and a.is_dir() and b.is_dir()


def test_latest_links_are_relative_and_move(tmp_path):
    a = store.new_run_dir(tmp_path, "counter-kill")
    store.update_latest(tmp_path, a)
    b = store.new_run_dir(tmp_path, "register-pause")
    store.update_latest(tmp_path, b)
    assert os.readlink(tmp_path / "latest") == f"register-pause/{b.name}"
    assert os.readlink(tmp_path / "counter-kill" / "latest") == a.name
    assert (tmp_path / "latest").resolve() == b.resolve()


def _stored_run(root: Path, ops, workload="register") -> Path:
    run = store.new_run_dir(root, f"{workload}-none")
    config = TestConfig(workload=workload, nemesis="none", seed=5, store=str(root))
    store.write_json(run / store.TEST, config.to_dict())
    clock = iter(range(0, 10**12, 10**6))
    rec = Recorder(clock_ns=lambda: next(clock))
    for op in ops:
        rec.record(*op)
    store.write_history(run, rec.ops, make_workload(workload).header())
    store.update_latest(root, run)
    return run


GOOD = [("invoke", 0, "write", [0, 2]), ("ok", 0, "write", [0, 2]),
        ("invoke", "nemesis", "start", None), ("info", "nemesis", "start", {"fault": "partition"}),
        ("invoke", 1, "cas", [0, [2, 3]]), ("ok", 1, "cas", [0, [2, 3]]),
        ("invoke", 2, "read", [0, None]), ("ok", 2, "read", [0, 3], "n2"),
        ("invoke", "nemesis", "stop", None), ("info", "nemesis", "stop", None)]


def test_analyze_rechecks_the_latest_run(tmp_path, capsys):
    run = _stored_run(tmp_path, GOOD)
    assert main(["analyze", "--store", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "VALID" in out and str(run) in out
    results = json.loads((run / "results.json").read_text())
    assert results["valid"] is True and results["checkers"]["linear"]["valid"] is True
    assert results["ops"]["by_type"] == {"ok": 3, "fail": 0, "info": 0} and results["ops"]["nemesis_ops"] == 4
    for name in ("latency-raw.png", "latency-quantiles.png", "rate.png", "timeline.html"):
        assert (run / name).stat().st_size > 0


def test_analyze_of_a_corrupted_history_is_invalid(tmp_path, capsys):
    run = _stored_run(tmp_path, GOOD)
    lines = (run / store.HISTORY).read_text().splitlines()
    read_ok = json.loads(lines[8])  # line 9: the header, then ops 0..7
    assert read_ok["f"] == "read" and read_ok["type"] == "ok"
    read_ok["value"] = [0, 2]  # a stale read: the cas to 3 completed before the read began
    lines[8] = json.dumps(read_ok)
    (run / store.HISTORY).write_text("\n".join(lines) + "\n")
    assert main(["analyze", str(run), "--no-report"]) == 1
    assert "cannot linearize on key 0: process 2 read [0, null] -> [0, 2] (line 8-9)" in capsys.readouterr().out
    assert json.loads((run / "results.json").read_text())["valid"] is False


def test_analyze_counter_run(tmp_path):
    ops = [("invoke", 0, "add", 2), ("ok", 0, "add", 2), ("invoke", 1, "read", None), ("ok", 1, "read", 9)]
    run = _stored_run(tmp_path, ops, workload="counter")
    assert main(["analyze", str(run), "--no-report"]) == 1


@pytest.mark.parametrize("damage", ["garbage", "unpaired", "no-test"])
def test_analyze_of_an_unreadable_run_is_crashed(tmp_path, capsys, damage):
    run = _stored_run(tmp_path, GOOD)
    if damage == "garbage":
        (run / store.HISTORY).write_text('{"index": 0, "type": "invoke"\n')
    elif damage == "unpaired":
        (run / store.HISTORY).write_text('{"index": 0, "time": 1, "type": "ok", "process": 1, "f": "read", "value": [0, 1]}\n')
    else:
        (run / store.TEST).unlink()
    assert main(["analyze", str(run)]) == 255
    err = capsys.readouterr().err.strip()
    assert err.startswith("chaos analyze:") and "\n" not in err


def test_analyze_without_a_store_is_crashed(tmp_path, capsys):
    assert main(["analyze", "--store", str(tmp_path / "none")]) == 255
    assert "no run at" in capsys.readouterr().err


def test_bad_flags_exit_2_with_one_error_line(tmp_path):
    for argv in (["test", "--workload", "ledger"], ["test", "--nemesis", "flood"], ["test", "--concurrency", "zero"],
                 ["test-all", "--workloads", "register,ledger"], ["test", "--nemesis-interval", "5,2"]):
        proc = subprocess.run([sys.executable, "-m", "chaos", *argv], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2, argv
        errors = [line for line in proc.stderr.splitlines() if "error:" in line]
        assert len(errors) == 1, proc.stderr
    proc = subprocess.run([sys.executable, "-m", "chaos", "test", "--workload", "ledger"], capture_output=True, text=True, timeout=60)
    assert "unknown workload 'ledger'" in proc.stderr and "bank" in proc.stderr  # it names what is available
