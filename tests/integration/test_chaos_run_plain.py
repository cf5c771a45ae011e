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
