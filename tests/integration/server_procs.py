"""Drive the real `consensus cluster` and `consensus serve` command lines for tests, and clean up by PID.

The processes are started and stopped with the local-cluster layer's ``NodeProcess`` and
helpers (``consensus.testing.procs``); tests that just need a cluster use
``consensus.testing.local.LocalCluster`` directly.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import requests

from consensus.testing.local import plan_nodes
from consensus.testing.procs import NodeProcess, child_env, pid_alive, port_in_use

__all__ = ["ROOT", "LocalCluster", "ServeProcess", "consensus_cmd", "env", "free_port_range", "get_json", "pid_alive",
           "run_cli", "wait_for"]

ROOT = Path(__file__).resolve().parents[2]


def consensus_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "consensus", *args]


def env() -> dict[str, str]:
    return child_env()


def run_cli(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(consensus_cmd(*args), cwd=ROOT, env=env(), capture_output=True, text=True, timeout=timeout)


def free_port_range(count: int, rng: random.Random | None = None) -> int:
    """Return a base port such that ``count`` consecutive ports look free."""
    rng = rng or random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 40000 - count)
        if not any(port_in_use(p) for p in range(base, base + count)):
            return base
    raise RuntimeError("no free port range found")


def wait_for(predicate: Any, timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def get_json(url: str, timeout: float = 2.0) -> Any:
    try:
        response = requests.get(url, timeout=timeout)
        return response.json()
    except (requests.RequestException, ValueError):
        return None


class LocalCluster:
    """`consensus cluster --nodes N` in a child process, plus any node restarted by hand."""

    def __init__(self, data_dir: Path, nodes: int = 3, extra: tuple[str, ...] = ()) -> None:
        self.data_dir = data_dir
        self.n = nodes
        self.extra = extra
        self.proc: subprocess.Popen[str] | None = None
        self.lines: list[str] = []
        self.nodes: list[dict[str, Any]] = []
        self.restarted: dict[int, NodeProcess] = {}

    def start(self, timeout: float = 60.0) -> "LocalCluster":
        for _ in range(3):
            base = free_port_range(self.n * 2)
            args = ["cluster", "--nodes", str(self.n), "--base-port", str(base), "--http-base-port", str(base + self.n),
                    "--data-dir", str(self.data_dir), *self.extra]
            self.lines = []
            self.proc = subprocess.Popen(consensus_cmd(*args), cwd=ROOT, env=env(), stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT, text=True)
            threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()
            wait_for(lambda: self.proc.poll() is not None or any("cluster ready" in l for l in self.lines), timeout,
                     "the cluster to be ready")
            if self.proc.poll() is None:
                self.nodes = json.loads((self.data_dir / "cluster.json").read_text())["nodes"]
                return self
            if not any("in use" in l for l in self.lines):
                raise RuntimeError("consensus cluster failed: " + "".join(self.lines))
        raise RuntimeError("could not find free ports for the cluster")

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.lines.append(line)

    def url(self, i: int) -> str:
        return self.nodes[i]["http"]

    @property
    def urls(self) -> list[str]:
        return [n["http"] for n in self.nodes]

    def pid(self, i: int) -> int:
        if i in self.restarted:
            return self.restarted[i].proc.pid  # type: ignore[union-attr]
        return self.nodes[i]["pid"]  # type: ignore[no-any-return]

    def statuses(self) -> list[dict[str, Any] | None]:
        return [get_json(u + "/v1/status", timeout=1.0) for u in self.urls]

    def leader_index(self, timeout: float = 20.0, among: tuple[int, ...] | None = None) -> int:
        """Wait until exactly one node is leader and every live node in ``among`` agrees."""
        among = among if among is not None else tuple(range(self.n))

        def agreed() -> int | None:
            statuses = self.statuses()
            live = [statuses[i] for i in among if statuses[i] is not None]
            leaders = [i for i in among if statuses[i] is not None and statuses[i]["role"] == "leader"]
            if len(leaders) == 1 and all(s["leader"] == self.nodes[leaders[0]]["raft"] for s in live):
                return leaders[0] + 1  # truthy even for node 0
            return None

        return wait_for(agreed, timeout, "an agreed leader") - 1  # type: ignore[no-any-return]

    def kill(self, i: int) -> None:
        os.kill(self.pid(i), signal.SIGKILL)
        wait_for(lambda: not pid_alive(self.pid(i)), 10, f"node {i} to die")

    def restart(self, i: int) -> None:
        """Start node ``i`` again (same flags, same data dir) as a child of this process."""
        argv = [a for a in self.nodes[i]["argv"] if a != "--exit-with-parent"]
        self.restarted[i] = NodeProcess(self.nodes[i]["name"], argv, self.data_dir / f"n{i + 1}.restarted.log")
        self.restarted[i].spawn()
        wait_for(lambda: get_json(self.url(i) + "/livez", timeout=0.5), 30, f"node {i} to serve again")

    def stop(self) -> None:
        """Stop the cluster (SIGTERM, by PID) and every node restarted by hand; kill leftovers."""
        pids = [n["pid"] for n in self.nodes]
        for proc in self.restarted.values():
            proc.signal(signal.SIGTERM)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for proc in self.restarted.values():
            proc.terminate_sync(15)
        for pid in pids:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)

    def all_pids(self) -> list[int]:
        restarted = [p.proc.pid for p in self.restarted.values() if p.proc is not None]
        return [n["pid"] for n in self.nodes] + restarted + ([self.proc.pid] if self.proc else [])


class ServeProcess:
    """One `consensus serve` node (a one-member cluster), its log in ``DATA_DIR/serve.log``."""

    def __init__(self, data_dir: Path, *extra: str) -> None:
        spec = plan_nodes(1, data_dir, extra_args=extra)[0]
        self.spec = dataclasses.replace(spec, data_dir=Path(data_dir).resolve() / "node",
                                        log=Path(data_dir).resolve() / "serve.log")
        self.raft, self.url, self.log = self.spec.raft, self.spec.url, self.spec.log
        self.node = NodeProcess("serve", self.spec.argv(), self.log)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> "ServeProcess":
        self.node.spawn()
        self.proc = self.node.proc
        wait_for(lambda: self.node.returncode is not None or _ready(self.url), timeout, "the node to be ready")
        if self.node.returncode is not None:
            raise RuntimeError("consensus serve failed: " + self.log.read_text())
        return self

    def stop(self) -> int | None:
        return self.node.terminate_sync(15)


def _ready(url: str) -> bool:
    body = get_json(url + "/readyz", timeout=0.5)
    return isinstance(body, dict) and body.get("ready") is True
