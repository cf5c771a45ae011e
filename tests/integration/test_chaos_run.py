"""``chaos test`` / ``test-all`` / ``analyze`` as a user runs them: subprocesses on a real cluster."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.integration.server_procs import pid_alive

ROOT = Path(__file__).resolve().parents[2]
REPORT = ("history.jsonl", "history.edn", "results.json", "test.json", "cluster.json", "run.log", "latency-raw.png",
          "latency-quantiles.png", "rate.png", "timeline.html", "nodes/n1.log", "nodes/n2.log", "nodes/n3.log")


def chaos(*argv: str, timeout: float = 150) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "chaos", *argv], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def ops_of(run: Path) -> list[dict]:
    """Return the ops of a stored history (after its header line)."""
    header, *lines = (run / "history.jsonl").read_text().splitlines()
    assert "raftwork_history" in json.loads(header)
    return [json.loads(line) for line in lines]


def lose_money_in_a_read(run: Path) -> dict:
    """Edit the stored history: the first ok read of the bank lost one unit; return that op."""
    lines = (run / "history.jsonl").read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if '"type":"ok"' in line and '"f":"read"' in line)
    op = json.loads(lines[at])
    op["value"][0] -= 1
    lines[at] = json.dumps(op)
    (run / "history.jsonl").write_text("\n".join(lines) + "\n")
    return op


def no_process_left(run: Path) -> None:
    pids = json.loads((run / "cluster.json").read_text())["pids_seen"]
    assert len(pids) >= 3
    deadline = time.monotonic() + 10
    while [p for p in pids if pid_alive(p)] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in pids if pid_alive(p)], "node processes left behind"


@pytest.fixture(scope="module")
def partition_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    pytest.importorskip("chaos.nemesis")
    store = tmp_path_factory.mktemp("store")
    proc = chaos("test", "--workload", "register", "--nemesis", "partition", "--time-limit", "8", "--nodes", "3",
                 "--seed", "1", "--recovery", "2", "--store", str(store))
    return proc, store


def test_register_under_partitions_is_valid_and_stored(partition_run):
    proc, store = partition_run
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    run = (store / "latest").resolve()
    assert run.parent.name == "register-partition" and (store / "register-partition" / "latest").resolve() == run
    for name in REPORT:
        assert (run / name).is_file() and (run / name).stat().st_size > 0, name
    results = json.loads((run / "results.json").read_text())
    assert results["valid"] is True and results["checkers"]["linear"]["valid"] is True
    assert results["checkers"]["linear"]["model"] == "kv" and results["seed"] == 1
    assert results["ops"]["by_type"]["ok"] > 50 and results["ops"]["nemesis_ops"] >= 4  # start and stop (+ heal)
    history = ops_of(run)
    nemesis = [op for op in history if op["process"] == "nemesis"]
    assert nemesis[0]["f"] == "start" and nemesis[0]["type"] == "invoke"
    assert nemesis[1]["f"].startswith("start") and nemesis[1]["type"] == "info"
    crashed = {op["process"] for op in history if op["type"] == "info" and isinstance(op["process"], int)}
    for p in crashed:  # a process whose op ended info never invokes again
        mine = [op for op in history if op["process"] == p]
        assert mine[-1]["type"] == "info"
    assert "VALID" in proc.stdout and str(run) in proc.stdout
    assert "replicas: valid" in proc.stdout and "faults: valid" in proc.stdout and "logs: valid" in proc.stdout
    assert "nemesis start-partition" in proc.stderr and "nemesis start-partition" in (run / "run.log").read_text()
    assert (run / "history.edn").read_text().startswith("[{:index 0")
    no_process_left(run)


def test_chaos_check_on_the_stored_history_gives_the_runs_verdict(partition_run):
    proc, store = partition_run
    assert proc.returncode == 0
    check = chaos("check", "--model", "kv", str(store / "latest" / "history.jsonl"))  # the README's command
    assert check.returncode == 0 and ": valid" in check.stdout, check.stdout + check.stderr
    bare = chaos("check", str(store / "latest" / "history.jsonl"))  # the header names the model
    assert bare.returncode == 0, bare.stdout + bare.stderr
    wrong = chaos("check", "--model", "kv", "--init", "0", str(store / "latest" / "history.jsonl"))
    assert wrong.returncode == 1  # the counter-era convention (keys start at 0) is not what the run did


def test_analyze_of_the_stored_run_agrees_then_catches_a_corruption(partition_run, tmp_path):
    proc, store = partition_run
    assert proc.returncode == 0
    again = chaos("analyze", "--store", str(store), "--no-report")
    assert again.returncode == 0, again.stdout + again.stderr
    run = tmp_path / "copy"
    shutil.copytree((store / "latest").resolve(), run)
    lines = (run / "history.jsonl").read_text().splitlines()
    for i, line in enumerate(lines[1:], 1):
        op = json.loads(line)
        if op["type"] == "ok" and op["f"] == "read":
            op["value"] = [op["value"][0], 99]  # no client ever writes 99
            lines[i] = json.dumps(op)
            break
    (run / "history.jsonl").write_text("\n".join(lines) + "\n")
    bad = chaos("analyze", str(run), "--no-report")
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "INVALID" in bad.stdout and json.loads((run / "results.json").read_text())["valid"] is False


def test_ctrl_c_stops_every_process(tmp_path):
    store = tmp_path / "store"
    err = tmp_path / "stderr"
    with open(err, "w") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "chaos", "test", "--workload", "counter", "--nemesis", "none",
                                 "--time-limit", "120", "--store", str(store)], cwd=ROOT, stdout=subprocess.DEVNULL,
                                stderr=sink)
    try:
        deadline = time.monotonic() + 60
        while "running counter-none" not in err.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, err.read_text()
            time.sleep(0.2)
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        code = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code == 130, err.read_text()
    run = next((store / "counter-none").iterdir())
    results = json.loads((run / "results.json").read_text())
    assert results["crashed"] == "interrupted" and results["valid"] == "unknown"
    assert (run / "history.jsonl").stat().st_size > 0 and "run interrupted" in (run / "run.log").read_text()
    no_process_left(run)
    again = chaos("analyze", str(run), "--no-report")  # re-analyzed, it is still an interrupted run
    assert again.returncode == 2, again.stdout + again.stderr
    assert "did not finish: interrupted" in again.stdout
    assert json.loads((run / "results.json").read_text())["crashed"] == "interrupted"


def test_a_nemesis_too_big_for_the_cluster_is_a_usage_error(tmp_path):
    proc = chaos("test", "--nodes", "2", "--nemesis", "bridge", "--time-limit", "5", "--store", str(tmp_path))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.strip() == "chaos test: error: nemesis bridge cannot run on 2 nodes: bridge needs at least 3 nodes, not 2"
    assert not list(tmp_path.iterdir())  # nothing ran, nothing stored


def table_rows(stdout: str) -> list[dict[str, str]]:
    """Return test-all's table as one dict a row (cells split on runs of spaces)."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("TEST "))
    header = lines[start].split()
    return [dict(zip(header, line.split())) for line in lines[start + 1:] if line.strip()]


def test_the_app_workloads_through_test_all_smoke(tmp_path):
    """The quick smoke run of the lock, kv and set workloads: a leader killed in each, a table row each."""
    proc = chaos("test-all", "--workloads", "lock,kv,set", "--nemeses", "kill-leader", "--time-limit", "6",
                 "--nemesis-interval", "1.5,2", "--recovery", "1", "--store", str(tmp_path), "--quiet", timeout=400)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    rows = table_rows(proc.stdout)
    assert [r["TEST"] for r in rows] == ["lock-kill-leader", "kv-kill-leader", "set-kill-leader"]
    for row in rows:
        assert row["VERDICT"] == "VALID" and row["NODES"] == "3", row
        assert int(row["LOSSES"]) >= 1 and float(row["STALL-S"]) > 0 and float(row["RECOVER-S"]) >= 0, row
        run = Path(row["RUN"])
        for name in REPORT:
            assert (run / name).is_file() and (run / name).stat().st_size > 0, (row["TEST"], name)
        results = json.loads((run / "results.json").read_text())
        header = json.loads((run / "history.jsonl").read_text().splitlines()[0])
        assert results["checkers"]["linear"]["model"] == header["model"]
        check = chaos("check", str(run / "history.jsonl"))  # the header's model and init: the run's verdict
        assert check.returncode == 0, check.stdout + check.stderr
        no_process_left(run)
    lock = json.loads((Path(rows[0]["RUN"]) / "results.json").read_text())["checkers"]
    assert lock["lock"]["valid"] is True and lock["lock"]["acquires"] > 0 and lock["linear"]["model"] == "mutex"
    assert json.loads((Path(rows[2]["RUN"]) / "results.json").read_text())["checkers"]["set"]["lost"] == []


def test_the_bank_workload_smoke(tmp_path):
    """The quick smoke run of the bank workload (transactions on one group): a leader killed, every
    report file, the bank checker's verdict, and ``chaos analyze`` agreeing with it."""
    proc = chaos("test", "--workload", "bank", "--nemesis", "kill-leader", "--time-limit", "5",
                 "--nemesis-interval", "1.5,2", "--recovery", "1", "--store", str(tmp_path), "--quiet", timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    run = (tmp_path / "latest").resolve()
    for name in REPORT:
        assert (run / name).is_file() and (run / name).stat().st_size > 0, name
    header = json.loads((run / "history.jsonl").read_text().splitlines()[0])
    assert (header["workload"], header["init"]) == ("bank", [10] * 8)
    bank = json.loads((run / "results.json").read_text())["checkers"]["bank"]
    assert bank["valid"] is True and bank["reads"] > 0 and bank["transfers"] > 0 and bank["errors"] == []
    assert sum(bank["final_balances"]) == bank["total"] == 80
    analyzed = chaos("analyze", str(run), "--no-report")
    assert analyzed.returncode == 0, analyzed.stdout + analyzed.stderr
    # A read that lost money, written into the stored history: the re-check names it, invalid.
    op = lose_money_in_a_read(run)
    bad = chaos("analyze", str(run), "--no-report")
    assert bad.returncode == 1 and "wrong-total" in bad.stdout, bad.stdout + bad.stderr
    assert json.loads((run / "results.json").read_text())["checkers"]["bank"]["errors"][0]["op"]["index"] == op["index"]
    no_process_left(run)


@pytest.mark.slow
def test_test_all_matrix(tmp_path):
    proc = chaos("test-all", "--workloads", "register,counter", "--nemeses", "none,partition,kill,pause",
                 "--time-limit", "15", "--store", str(tmp_path), "--quiet", timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    rows = table_rows(proc.stdout)
    assert len(rows) == 8 and all(row["VERDICT"] == "VALID" for row in rows)


def test_leave_db_running_keeps_the_healed_cluster_until_ctrl_c(tmp_path):
    store = tmp_path / "store"
    err = tmp_path / "stderr"
    with open(err, "w") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "chaos", "test", "--workload", "counter", "--time-limit", "2",
                                 "--recovery", "0.5", "--leave-db-running", "--store", str(store)], cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=sink, text=True)
    try:
        deadline = time.monotonic() + 90
        while "cluster left running" not in err.read_text() or err.read_text().count(" http http://") < 3:
            assert proc.poll() is None and time.monotonic() < deadline, err.read_text()
            time.sleep(0.2)
        urls = re.findall(r" http (http://\S+) ", err.read_text())
        assert len(urls) == 3
        for url in urls:  # the run is over, and the cluster still serves
            with urllib.request.urlopen(url + "/v1/status", timeout=5) as response:
                assert json.loads(response.read())["leader"]
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0 and "counter-none: VALID" in out, out + err.read_text()[-2000:]
    run = (store / "latest").resolve()
    assert json.loads((run / "results.json").read_text())["valid"] is True
    no_process_left(run)
