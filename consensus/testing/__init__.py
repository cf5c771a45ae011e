"""Start real local clusters for tests: N nodes on free loopback ports, in-process or as processes.

::

    async with InProcessCluster(3, tmp_path) as cluster:
        leader = await cluster.wait_for_leader()
        await leader.propose("kv", {"method": "put", "args": ["a", 1]})

    async with ProcessCluster(3, tmp_path) as cluster:
        cluster.kill(0)            # SIGKILL
        await cluster.restart(0)   # same data dir

Both stop every node they started (and kill every process, by PID) on exit, also on failure.
Clusters of real ``consensus serve`` processes (HTTP API, apps) come from the local-cluster
layer, :mod:`consensus.testing.local` (``LocalCluster``, ``plan_nodes``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Mapping

from consensus.errors import ConsensusError, Indeterminate, NotLeader, Unavailable, from_dict
from consensus.machine import StateMachine
from consensus.node import Node, NodeConfig
from consensus.testing.machines import default_machines


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Return ``count`` distinct ports that were free on ``host`` a moment ago."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


async def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.02) -> Any:
    """Poll ``predicate`` until it returns something truthy; raise TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {what}")
        await asyncio.sleep(interval)


class _Stoppable:
    """``async with``: start on entry; stop everything on exit, also when starting fails."""

    async def start(self) -> Any:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Any:
        try:
            return await self.start()
        except BaseException:
            await self.stop()
            raise

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()


class InProcessCluster(_Stoppable):
    """N nodes in this process, each with its own engine thread, over loopback TCP."""

    def __init__(
        self,
        n: int,
        data_dir: str | Path,
        machines: Callable[[], Mapping[str, StateMachine]] = default_machines,
        **config: Any,
    ) -> None:
        self.addresses = [f"127.0.0.1:{p}" for p in free_ports(n)]
        self.data_dir = Path(data_dir)
        self._machines = machines
        self._config = config
        self.nodes: list[Node | None] = [None] * n

    def _make(self, i: int, peers: list[str] | None = None) -> Node:
        config = NodeConfig(
            node_id=self.addresses[i],
            peers=peers or list(self.addresses),
            data_dir=str(self.data_dir / f"n{i + 1}"),
            **self._config,
        )
        return Node(config, self._machines())

    async def start(self) -> "InProcessCluster":
        for i in range(len(self.addresses)):
            await self.start_node(i)
        return self

    async def start_node(self, i: int, peers: list[str] | None = None) -> Node:
        node = self._make(i, peers)
        await node.start()
        self.nodes[i] = node
        return node

    def add_address(self) -> int:
        """Reserve an address for a new member; return its index."""
        self.addresses.append(f"127.0.0.1:{free_ports(1)[0]}")
        self.nodes.append(None)
        return len(self.addresses) - 1

    async def stop_node(self, i: int) -> None:
        node = self.nodes[i]
        self.nodes[i] = None
        if node is not None:
            await node.stop()

    async def restart_node(self, i: int) -> Node:
        await self.stop_node(i)
        return await self.start_node(i)

    def running(self) -> list[Node]:
        return [n for n in self.nodes if n is not None]

    def leader(self) -> Node | None:
        """The node that is leader and that every running node agrees on, if any."""
        leaders = [n for n in self.running() if n.is_leader()]
        if len(leaders) != 1:
            return None
        leader = leaders[0]
        if all(n.status().leader == leader.id for n in self.running()):
            return leader
        return None

    async def wait_for_leader(self, timeout: float = 10.0) -> Node:
        return await wait_until(self.leader, timeout, "a leader every node agrees on")  # type: ignore[no-any-return]

    async def propose(self, machine: str, command: dict[str, Any], timeout: float = 15.0) -> Any:
        """Propose through whichever node leads, retrying with one idempotency key until done."""
        key = uuid.uuid4().hex
        deadline = time.monotonic() + timeout
        while True:
            leader = self.leader()
            try:
                if leader is not None:
                    return await leader.propose(machine, command, idempotency_key=key, timeout=2.0)
            except (NotLeader, Unavailable, Indeterminate):
                pass
            if time.monotonic() >= deadline:
                raise TimeoutError(f"could not commit {command!r} within {timeout:.1f}s")
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        for i in range(len(self.nodes)):
            await self.stop_node(i)



class ProcessNode:
    """One node in a child process (``python -m consensus.testing.child``), driven over stdin."""

    def __init__(self, address: str, peers: list[str], data_dir: Path, **options: Any) -> None:
        self.address = address
        self.peers = peers
        self.data_dir = data_dir
        self.options = options
        self.process: asyncio.subprocess.Process | None = None
        self._next_id = 0
        self._waiters: dict[int, asyncio.Future[Any]] = {}
        self._reader_task: asyncio.Task[None] | None = None

    async def start(self, timeout: float = 15.0) -> None:
        args = [sys.executable, "-m", "consensus.testing.child", "--id", self.address, "--peers", ",".join(self.peers), "--data-dir", str(self.data_dir)]
        if "compaction_min_entries" in self.options:
            args += ["--compaction-min-entries", str(self.options["compaction_min_entries"])]
        self.process = await asyncio.create_subprocess_exec(
            *args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, limit=1 << 24
        )
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        if not line or not json.loads(line).get("ready"):
            raise RuntimeError(f"node {self.address} failed to start")
        self._reader_task = asyncio.create_task(self._read_responses())

    async def _read_responses(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        while line := await self.process.stdout.readline():
            response = json.loads(line)
            fut = self._waiters.pop(response.get("id"), None)
            if fut is not None and not fut.done():
                fut.set_result(response)
        for fut in self._waiters.values():  # the process died: nobody will answer
            if not fut.done():
                fut.set_exception(Unavailable(f"node process {self.address} exited"))
        self._waiters.clear()

    async def request(self, op: str, timeout: float = 10.0, **fields: Any) -> Any:
        if self.process is None or self.process.returncode is not None or self.process.stdin is None:
            raise Unavailable(f"node process {self.address} is not running")
        self._next_id += 1
        request_id = self._next_id
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters[request_id] = fut
        self.process.stdin.write((json.dumps({"id": request_id, "op": op, **fields}) + "\n").encode())
        await self.process.stdin.drain()
        response = await asyncio.wait_for(fut, timeout)
        if "error" in response:
            raise from_dict(response["error"])
        return response["ok"]

    async def propose(self, machine: str, command: dict[str, Any], key: str | None = None, timeout: float = 5.0) -> Any:
        return await self.request("propose", timeout=timeout + 5, machine=machine, command=command, key=key, timeout_s=timeout)

    async def read(self, machine: str, query: dict[str, Any], consistency: str = "linearizable") -> dict[str, Any]:
        return await self.request("read", machine=machine, query=query, consistency=consistency)  # type: ignore[no-any-return]

    async def status(self) -> dict[str, Any]:
        return await self.request("status")  # type: ignore[no-any-return]

    def kill(self) -> None:
        """SIGKILL the process (by its PID)."""
        if self.process is not None and self.process.returncode is None:
            # asyncio's child watcher reaps the child on its own thread and sets returncode a
            # moment later: in between, the PID is gone and the kill finds nothing to kill.
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGKILL)

    async def stop(self, timeout: float = 10.0) -> None:
        process = self.process
        if process is None:
            return
        if process.returncode is None and process.stdin is not None:
            with contextlib.suppress(Exception):
                process.stdin.close()  # EOF: the child stops its node and exits
            try:
                await asyncio.wait_for(process.wait(), timeout)
            except asyncio.TimeoutError:
                self.kill()
        await process.wait()
        if self._reader_task is not None:
            with contextlib.suppress(Exception):
                await self._reader_task
        self.process = None


class ProcessCluster(_Stoppable):
    """N nodes, one process each, over loopback TCP."""

    def __init__(self, n: int, data_dir: str | Path, **options: Any) -> None:
        self.addresses = [f"127.0.0.1:{p}" for p in free_ports(n)]
        self.data_dir = Path(data_dir)
        self.nodes = [ProcessNode(a, self.addresses, self.data_dir / f"n{i + 1}", **options) for i, a in enumerate(self.addresses)]

    async def start(self) -> "ProcessCluster":
        await asyncio.gather(*(n.start() for n in self.nodes))
        return self

    def kill(self, i: int) -> None:
        self.nodes[i].kill()

    async def restart(self, i: int) -> None:
        node = self.nodes[i]
        node.kill()
        await node.stop()
        await node.start()

    async def leader_index(self, timeout: float = 10.0) -> int:
        """Wait for a node that says it is leader and that all live nodes agree on."""
        deadline = time.monotonic() + timeout
        while True:
            statuses: list[dict[str, Any] | None] = []
            for node in self.nodes:
                try:
                    statuses.append(await node.status() if node.process else None)
                except (ConsensusError, asyncio.TimeoutError):
                    statuses.append(None)
            live = [s for s in statuses if s is not None]
            leaders = [i for i, s in enumerate(statuses) if s is not None and s["role"] == "leader"]
            if len(leaders) == 1 and all(s["leader"] == self.addresses[leaders[0]] for s in live):
                return leaders[0]
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no agreed leader within {timeout:.1f}s: {statuses}")
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        for node in self.nodes:
            await node.stop()



__all__ = ["InProcessCluster", "ProcessCluster", "ProcessNode", "free_ports", "wait_until"]
