"""What the bench needs of a local cluster, for raftwork and etcd alike.

A cluster is N child processes on free loopback ports, each with its own data dir and log. It
knows how to start, kill -9, SIGSTOP/SIGCONT and restart node i by its PID, and how to read a
node's status in one shape: ``NodeState(role, term, applied, commit)``. Subclasses say only
how to start node i (``argv``) and how to ask it its state (``status``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from consensus.bench.procs import spawn, stop


@dataclass(frozen=True)
class NodeState:
    role: str  # leader, follower, candidate
    term: int
    applied: int
    commit: int


class LocalCluster:
    """N nodes as child processes; ``with cluster:`` starts them and stops every one by PID."""

    system = "?"

    def __init__(self, n: int, data_dir: str | Path) -> None:
        self.n = n
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.urls: list[str] = []
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.started: list[subprocess.Popen[bytes]] = []  # every process ever started, for checks after stop

    # -- what a subclass provides ---------------------------------------------------------------

    def argv(self, i: int) -> list[str]:
        raise NotImplementedError

    def status(self, i: int) -> NodeState | None:
        """Return node i's state, or None if it does not answer."""
        raise NotImplementedError

    # -- processes ------------------------------------------------------------------------------

    def log_path(self, i: int) -> Path:
        return self.data_dir / f"n{i + 1}.log"

    def start_node(self, i: int) -> None:
        with open(self.log_path(i), "ab") as log:
            self.procs[i] = spawn(self.argv(i), log)
        self.started.append(self.procs[i])

    def kill(self, i: int) -> None:
        """kill -9 node i (by PID) and reap it."""
        proc = self.procs.pop(i)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

    def pause(self, i: int) -> None:
        os.kill(self.procs[i].pid, signal.SIGSTOP)

    def resume(self, i: int) -> None:
        os.kill(self.procs[i].pid, signal.SIGCONT)

    def stop(self) -> None:
        for i in list(self.procs):
            stop(self.procs.pop(i))

    def __enter__(self) -> "LocalCluster":
        try:
            for i in range(self.n):
                self.start_node(i)
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- waiting on state -------------------------------------------------------------------------

    def running(self) -> list[int]:
        return [i for i, p in self.procs.items() if p.poll() is None]

    def leader(self, timeout: float = 30.0) -> int:
        """Wait for a node that says it leads; return its index."""
        deadline = time.monotonic() + timeout
        while True:
            for i in self.running():
                state = self.status(i)
                if state is not None and state.role == "leader":
                    return i
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.system}: no leader within {timeout:.0f}s; logs in {self.data_dir}")
            time.sleep(0.05)

    def follower(self) -> int:
        leader = self.leader()
        return next(i for i in self.running() if i != leader)

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait until there is a leader and every running node has applied what it knows committed."""
        deadline = time.monotonic() + timeout
        self.leader(timeout)
        for i in self.running():
            while True:
                state = self.status(i)
                if state is not None and state.applied >= state.commit > 0:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.system} node {i + 1} not ready within {timeout:.0f}s; see {self.log_path(i)}")
                time.sleep(0.05)
