"""The runner's control flow with a fake cluster and nemesis (no processes): every fault started is
stopped and never cut halfway, the final heal and the cluster stop always happen."""

from __future__ import annotations

import asyncio
import json
import socket
from dataclasses import dataclass
from pathlib import Path

import pytest

from chaos.nemesis import NemesisOp
from chaos.runner import TestConfig, core, run_test_async
from chaos.verdict import Verdict


def _refusing_socket() -> socket.socket:
    """Return a socket bound to a port but not listening: connections to it are refused, and no
    other test can take the port meanwhile."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    return s


@dataclass
class Node:
    name: str
    raft: str
    http: str
    pid: int | None
    log: Path


class FakeCluster:
    def __init__(self, data_dir: Path, fail_leader: bool = False) -> None:
        self.sock = _refusing_socket()  # nothing listens: every client op fails definitely (connection refused)
        port = self.sock.getsockname()[1]
        self.nodes = [Node(f"n{i}", f"127.0.0.1:{i}", f"http://127.0.0.1:{port}", None, data_dir / f"n{i}.log")
                      for i in (1, 2, 3)]
        self.endpoints = [n.http for n in self.nodes]
        self.names = [n.name for n in self.nodes]
        self.events: list[str] = []
        self.fail_leader = fail_leader
        self.faults = {"killed": []}

    async def __aenter__(self):
        self.events.append("started")
        return self

    async def __aexit__(self, *exc):
        self.events.append("stopped")
        self.sock.close()

    async def wait_for_leader(self, timeout=15.0):
        if self.fail_leader:
            raise RuntimeError("no leader")
        return "n1"

    async def heal(self):
        self.events.append("heal")

    async def statuses(self, *, digest=False):
        return {n: {"digest_index": 7, "state_digest": "abc"} for n in self.names}


class FakeNemesis:
    name = "fake"

    def __init__(self, log: list[str], fail_on: int | None = None) -> None:
        self.log, self.fail_on, self.starts = log, fail_on, 0

    def problems(self, nodes):
        return []

    async def start(self, cluster, rng):
        self.starts += 1
        self.log.append("start")
        await asyncio.sleep(0.3)  # a slow fault: must not be cut halfway at the time limit
        if self.starts == self.fail_on:
            raise RuntimeError("proxy gone")
        self.log.append("started")
        return NemesisOp("start-fake", {"nodes": ["n2"]})

    async def stop(self, cluster):
        self.log.append("stop")
        await asyncio.sleep(0.3)
        self.log.append("stopped")
        return NemesisOp("stop-fake")

    async def heal(self, cluster):
        self.log.append("heal")


def _config(tmp_path, clusters, **kw):
    def factory(config, data_dir):
        clusters.append(FakeCluster(data_dir, **kw))
        return clusters[-1]

    return TestConfig(workload="counter", nemesis="partition", time_limit=3.0, rate=20, seed=4, store=str(tmp_path),
                      op_timeout=0.3, final_timeout=0.3, recovery=0.0, nemesis_interval=(0.4, 0.6), cluster_factory=factory,
                      agreement_timeout=1.0, progress=False)


async def test_faults_pair_up_and_everything_is_healed_and_stopped(tmp_path, monkeypatch):
    log: list[str] = []
    monkeypatch.setattr(core, "_make_nemesis", lambda name: FakeNemesis(log, fail_on=2))
    monkeypatch.setattr(core, "PROGRESS_EVERY", 0.05)
    clusters: list[FakeCluster] = []
    result = await run_test_async(_config(tmp_path, clusters), progress=None)
    assert clusters[0].events == ["started", "heal", "stopped"]
    assert log[-1] == "heal" and log.count("start") == log.count("stop") >= 2  # 3 scheduled; a loaded box may skip one
    assert log.count("started") + 1 == log.count("start")  # the failed start did not complete
    nemesis = [op for op in result.history if op.process == "nemesis"]
    invokes = [op for op in nemesis if op.type == "invoke"]
    infos = [op for op in nemesis if op.type == "info"]
    assert len(invokes) == len(infos) and [op.get("phase") for op in invokes] == [op.get("phase") for op in infos]
    assert [op.get("phase") for op in invokes][-1] == "heal"
    failed = [op for op in infos if op.get("error")]
    assert len(failed) == 1 and "proxy gone" in failed[0].get("error") and failed[0].f == "start"
    assert [op.f for op in infos if op.get("phase") == "start" and not op.get("error")][0] == "start-fake"
    client = [op for op in result.history if op.is_client]
    assert client and all(op.type in ("invoke", "fail") for op in client)  # connection refused is definite
    checks = result.results.checks
    assert result.valid is Verdict.INVALID and checks["stats"].valid is Verdict.INVALID  # nothing ever succeeded
    assert checks["faults"].valid is Verdict.UNKNOWN and "proxy gone" in checks["faults"].summary()
    assert checks["replicas"].valid is Verdict.VALID
    stored = json.loads((result.run_dir / "results.json").read_text())
    assert stored["valid"] is False and stored["checkers"]["faults"]["valid"] == "unknown"
    assert "nemesis start failed" in stored["checkers"]["faults"]["summary"]
    log = (result.run_dir / "run.log").read_text()
    assert "nemesis start failed" in log
    assert "; fault: fake n2" in log and "; fault: fake\n" not in log  # progress names the fault, not the package


async def test_a_crash_still_stops_the_cluster_and_leaves_a_record(tmp_path, monkeypatch):
    log: list[str] = []
    monkeypatch.setattr(core, "_make_nemesis", lambda name: FakeNemesis(log))
    clusters: list[FakeCluster] = []
    with pytest.raises(RuntimeError, match="no leader"):
        await run_test_async(_config(tmp_path, clusters, fail_leader=True), progress=None)
    assert clusters[0].events == ["started", "stopped"]
    run = next((tmp_path / "counter-partition").iterdir())
    assert json.loads((run / "results.json").read_text())["crashed"] == "RuntimeError: no leader"
    assert (run / "history.jsonl").exists() and (run / "test.json").exists()


async def test_cancel_mid_run_heals_and_stops(tmp_path, monkeypatch):
    log: list[str] = []
    monkeypatch.setattr(core, "_make_nemesis", lambda name: FakeNemesis(log))
    clusters: list[FakeCluster] = []
    config = _config(tmp_path, clusters)
    config.time_limit = 30
    task = asyncio.create_task(run_test_async(config, progress=None))
    deadline = asyncio.get_running_loop().time() + 10
    while "started" not in log:
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert clusters[0].events == ["started", "heal", "stopped"] and log[-1] == "heal"
    run = next((tmp_path / "counter-partition").iterdir())
    assert json.loads((run / "results.json").read_text())["crashed"] == "interrupted"
