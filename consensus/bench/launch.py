"""Start raftwork clusters for the bench: N ``consensus serve`` processes on free loopback ports.

This is the one place the bench starts raftwork nodes over HTTP, so it can move to the shared
local-cluster layer (``consensus.testing``) in one step once that lands. Every node serves the
counter app and, when they are installed, the kv and locks apps; ``fsync`` is passed on when
``consensus serve`` has the flag (the engine-safety work adds it).
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request
from pathlib import Path
from typing import Any

from consensus.bench.clusters import LocalCluster, NodeState
from consensus.bench.procs import free_ports
from consensus.server.apps import available_apps

BENCH_APPS = ("counter", "kv", "locks")


def served_apps() -> list[str]:
    """Return the bench's apps that this installation can serve."""
    return [a for a in BENCH_APPS if a in available_apps()]


def serve_has_flag(flag: str) -> bool:
    """Tell whether ``consensus serve`` accepts ``flag`` (features other issues add)."""
    from consensus.cli import build_parser

    parser = build_parser()
    subparsers: Any = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return flag in subparsers.choices["serve"]._option_string_actions


class RaftworkCluster(LocalCluster):
    system = "raftwork"

    def __init__(self, n: int, data_dir: str | Path, fsync: str | None = None) -> None:
        super().__init__(n, data_dir)
        ports = free_ports(2 * n)
        self.raft = [f"127.0.0.1:{p}" for p in ports[:n]]
        self.urls = [f"http://127.0.0.1:{p}" for p in ports[n:]]
        self.apps = served_apps()
        self.fsync = fsync if fsync and serve_has_flag("--fsync") else None

    def argv(self, i: int) -> list[str]:
        peers = ",".join(f"{r}={u}" for r, u in zip(self.raft, self.urls))
        argv = [sys.executable, "-m", "consensus", "serve", "--id", self.raft[i], "--peers", peers,
                "--http", self.urls[i].removeprefix("http://"), "--data-dir", str(self.data_dir / f"n{i + 1}"),
                "--apps", ",".join(self.apps), "--log-level", "warning", "--exit-with-parent"]
        if self.fsync:
            argv += ["--fsync", self.fsync]
        return argv

    def status(self, i: int) -> NodeState | None:
        try:
            with urllib.request.urlopen(self.urls[i] + "/v1/status", timeout=1) as response:  # noqa: S310
                body = json.loads(response.read())
        except (OSError, ValueError):
            return None
        return NodeState(body["role"], int(body["term"]), int(body["last_applied"]), int(body["commit_index"]))
