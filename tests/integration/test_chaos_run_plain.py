"""The runner end to end against a real fault-free cluster (``consensus cluster``), in process."""

from __future__ import annotations

import json
import pytest

from chaos.runner import TestConfig, run_test_async
from chaos.verdict import Verdict
from tests.integration.plain_cluster import plain_factory
from tests.integration.server_procs import pid_alive


@pytest.mark.parametrize("workload", ["counter", "register"])
async def test_run_records_checks_and_stores(tmp_path, workload):
    config = TestConfig(workload=workload, nemesis="none", time_limit=4, rate=40, seed=11, store=str(tmp_path),
                        recovery=0.5, cluster_factory=plain_factory, progress=False)
    result = await run_test_async(config, progress=None)
    assert result.valid is Verdict.VALID, result.results.summary()
    run = result.run_dir
    assert run is not None and run.parent.name == f"{workload}-none"
    assert (tmp_path / "latest").resolve() == run.resolve()
    for name in ("history.jsonl", "history.edn", "results.json", "test.json", "cluster.json", "run.log",
                 "latency-raw.png", "latency-quantiles.png", "rate.png", "timeline.html", "nodes/n1.log"):
        assert (run / name).is_file(), name
    header, *lines = (run / "history.jsonl").read_text().splitlines()
    model = {"counter": "counter", "register": "kv"}[workload]
    init = {"counter": 0, "register": None}[workload]  # register keys start absent on the config store
    assert json.loads(header) == {"raftwork_history": 1, "test": f"{workload}-none", "workload": workload,
                                  "model": model, "init": init, "nemesis": "none", "seed": 11}
    history = [json.loads(line) for line in lines]
    assert [op["index"] for op in history] == list(range(len(history)))
    assert all(set(op) >= {"index", "time", "type", "process", "f", "value"} for op in history)
    assert [op["time"] for op in history] == sorted(op["time"] for op in history)
    invokes = [op for op in history if op["type"] == "invoke"]
    assert 60 <= len(invokes) <= 4 * 40 * 2  # about rate x time limit, plus final reads
    assert any(op.get("node") in ("n1", "n2", "n3") for op in history if op["type"] == "ok")
    assert history[-1]["f"] == "read" and history[-1]["type"] == "ok"  # the final read
    results = json.loads((run / "results.json").read_text())
    assert results["valid"] is True and results["seed"] == 11 and results["ops"]["invokes"] == len(invokes)
    assert results["checkers"]["replicas"]["valid"] is True and results["checkers"]["logs"]["valid"] is True
    assert "agree at applied index" in results["checkers"]["replicas"]["summary"]
    assert "verdict: VALID" in (run / "run.log").read_text()
    test = json.loads((run / "test.json").read_text())
    assert test["seed"] == 11 and test["concurrency_processes"] == 6
    pids = json.loads((run / "cluster.json").read_text())["pids_seen"]
    assert len(pids) == 3 and not [p for p in pids if pid_alive(p)]


async def test_a_lock_held_at_the_end_is_released_as_a_recorded_op(tmp_path):
    # The first grant is never given up during the run (it writes under it until the end), so a
    # holder is certain when the run stops. Its session's close also frees the lock, but
    # unrecorded: another process's acquire still in flight could then be granted, and the
    # checkers would see two holders (a false INVALID seen in a test-all smoke run).
    config = TestConfig(workload="lock", nemesis="none", time_limit=3, rate=30, seed=5, store=str(tmp_path),
                        recovery=0.5, cluster_factory=plain_factory, progress=False,
                        workload_options={"writes_per_grant": 10_000})
    result = await run_test_async(config, progress=None)
    assert result.valid is Verdict.VALID, result.results.summary()
    _, *lines = (result.run_dir / "history.jsonl").read_text().splitlines()
    history = [json.loads(line) for line in lines]
    grants = [op for op in history if op["f"] == "acquire" and op["type"] == "ok"]
    assert len(grants) == 1, grants  # the one holder kept it to the end
    holder, token = grants[0]["process"], grants[0]["value"]["token"]
    releases = [op for op in history if op["f"] == "release" and op["process"] == holder]
    assert [(op["type"], op["value"]) for op in releases] == [("invoke", token), ("ok", token)]
    assert all(op["type"] != "invoke" for op in history[history.index(releases[-1]):] if op["f"] != "release")
