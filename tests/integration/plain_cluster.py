"""A fault-free stand-in for ``chaos.cluster.ChaosCluster`` used by runner tests: ``consensus cluster``
as a subprocess. It supports what the runner needs with the ``none`` nemesis."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from consensus.client import Client


@dataclass
class NodeInfo:
    name: str
    raft: str
    http: str
    pid: int
    log: Path


class PlainCluster:
    def __init__(self, n: int, data_dir: Path) -> None:
        self.n = n
        self.data_dir = Path(data_dir)
        self.proc: subprocess.Popen[bytes] | None = None
        self.nodes: list[NodeInfo] = []

    @property
    def endpoints(self) -> list[str]:
        return [node.http for node in self.nodes]

    @property
    def names(self) -> list[str]:
        return [node.name for node in self.nodes]

    async def __aenter__(self) -> "PlainCluster":
        # consensus cluster wants consecutive ports: find a free run.
        base = 20000 + (os.getpid() * 7) % 20000
        raft, http = base, base + 100
        for _ in range(200):
            raft, http = base, base + 100
            if all(_free(p) for p in [*range(raft, raft + self.n), *range(http, http + self.n)]):
                break
            base += 2 * self.n + 1
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen([sys.executable, "-m", "consensus", "cluster", "--nodes", str(self.n),
                                      "--base-port", str(raft), "--http-base-port", str(http),
                                      "--data-dir", str(self.data_dir)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            spec = self.data_dir / "cluster.json"
            while not spec.exists() or not spec.read_text().strip():
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("consensus cluster did not start")
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.2)
            nodes = json.loads(spec.read_text())["nodes"]
            self.nodes = [NodeInfo(d["name"], d["raft"], d["http"], d["pid"], Path(d["log"])) for d in nodes]
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    async def wait_for_leader(self, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        async with Client(self.endpoints, timeout=2) as client:
            while True:
                for node in self.nodes:
                    try:
                        status = await client.status(node.http, timeout=1)
                    except Exception:  # noqa: BLE001
                        continue
                    if status.get("role") == "leader":
                        return node.name
                if time.monotonic() > deadline:
                    raise TimeoutError("no leader")
                await asyncio.sleep(0.1)

    async def heal(self) -> None:
        return None

    async def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.proc.wait, 20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for node in self.nodes:
            try:
                os.kill(node.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def _free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def plain_factory(config: Any, data_dir: Path) -> PlainCluster:
    return PlainCluster(config.nodes, data_dir)
