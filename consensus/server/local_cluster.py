"""``consensus cluster``: a local cluster of N ``consensus serve`` processes, in the foreground.

Nodes listen on 127.0.0.1: Raft ports ``--base-port``.. and HTTP ports ``--http-base-port``..
Each node's log goes to ``DATA_DIR/nI.log``; ``DATA_DIR/cluster.json`` records every node's
ports, PID and command line (to restart one by hand). Ctrl-C or SIGTERM stops every child by
PID; if this process dies anyway, each child notices (``PR_SET_PDEATHSIG`` and a parent watch)
and stops itself.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import consensus
from consensus.cli import CommandError, UsageError

HOST = "127.0.0.1"
_START_TIMEOUT = 30.0
_LEADER_TIMEOUT = 20.0
_STOP_TIMEOUT = 10.0
_PR_SET_PDEATHSIG = 1


@dataclass
class ChildNode:
    name: str
    raft: str
    http: str
    data_dir: str
    log: str
    argv: list[str]
    pid: int = 0


class _Stopping:
    """Set by SIGTERM/SIGINT; polled by every wait loop (a handler never raises mid-spawn)."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum: int, frame: Any) -> None:
        self.requested = True


def die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux: the child's parent watch still stops it


def port_in_use(port: int, host: str = HOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def _get_json(url: str, timeout: float = 1.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (loopback only)
        return json.loads(response.read())


def child_env() -> dict[str, str]:
    """Return the environment for children: they import this very copy of the package."""
    root = str(Path(consensus.__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


def plan(args: argparse.Namespace, data_dir: str) -> list[ChildNode]:
    n = args.nodes
    peers = ",".join(f"{HOST}:{args.base_port + i}=http://{HOST}:{args.http_base_port + i}" for i in range(n))
    nodes = []
    for i in range(n):
        name = f"n{i + 1}"
        raft, http = f"{HOST}:{args.base_port + i}", f"{HOST}:{args.http_base_port + i}"
        node_dir = os.path.join(data_dir, name)
        argv = [sys.executable, "-m", "consensus", "serve", "--id", raft, "--peers", peers, "--http", http,
                "--data-dir", node_dir, "--apps", args.apps, "--log-level", args.log_level, "--exit-with-parent"]
        if args.token_file:
            argv += ["--token-file", os.path.abspath(args.token_file)]
        nodes.append(ChildNode(name, raft, f"http://{http}", node_dir, os.path.join(data_dir, f"{name}.log"), argv))
    return nodes


def _check_args(args: argparse.Namespace) -> None:
    if not 1 <= args.nodes <= 15:
        raise UsageError("--nodes must be from 1 to 15")
    for flag, base in (("--base-port", args.base_port), ("--http-base-port", args.http_base_port)):
        if not 1024 <= base <= 65535 - args.nodes + 1:
            raise UsageError(f"{flag} must leave room for {args.nodes} ports between 1024 and 65535")
    raft = set(range(args.base_port, args.base_port + args.nodes))
    if raft & set(range(args.http_base_port, args.http_base_port + args.nodes)):
        raise UsageError("the Raft and HTTP port ranges overlap")
    if args.token_file and not os.path.isfile(args.token_file):
        raise UsageError(f"--token-file {args.token_file} does not exist")


def _last_line(path: str) -> str:
    try:
        lines = [line.strip() for line in Path(path).read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""


def _stop_children(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    for proc in procs.values():
        if proc.poll() is None:
            try:
                os.kill(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + _STOP_TIMEOUT
    for proc in procs.values():
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def _wait_live(nodes: list[ChildNode], procs: dict[str, subprocess.Popen[bytes]], stopping: _Stopping) -> None:
    pending = list(nodes)
    deadline = time.monotonic() + _START_TIMEOUT
    while pending:
        if stopping.requested:
            return
        for node in list(pending):
            code = procs[node.name].poll()
            if code is not None:
                raise CommandError(f"node {node.name} exited with code {code}: {_last_line(node.log) or 'see ' + node.log}")
            try:
                _get_json(node.http + "/livez", timeout=0.5)
                pending.remove(node)
            except (OSError, ValueError):
                pass
        if time.monotonic() > deadline:
            raise CommandError(f"node {pending[0].name} did not serve HTTP within {_START_TIMEOUT:.0f}s; see {pending[0].log}")
        time.sleep(0.1)


def _find_leader(nodes: list[ChildNode], stopping: _Stopping) -> str | None:
    deadline = time.monotonic() + _LEADER_TIMEOUT
    while time.monotonic() < deadline and not stopping.requested:
        for node in nodes:
            try:
                status = _get_json(node.http + "/v1/status", timeout=0.5)
            except (OSError, ValueError):
                continue
            if status.get("role") == "leader":
                return f"{node.name} {node.raft} {node.http} at term {status.get('term')}"
        time.sleep(0.1)
    return None


def run(args: argparse.Namespace) -> int:
    _check_args(args)
    for port in [*range(args.base_port, args.base_port + args.nodes), *range(args.http_base_port, args.http_base_port + args.nodes)]:
        if port_in_use(port):
            raise CommandError(f"port {port} on {HOST} is in use; pick other ports with --base-port / --http-base-port")
    data_dir = os.path.abspath(args.data_dir) if args.data_dir else tempfile.mkdtemp(prefix="raftwork-cluster-")
    try:
        os.makedirs(data_dir, exist_ok=True)
    except OSError as exc:
        raise CommandError(f"cannot create data dir {data_dir}: {exc.strerror or exc}") from None
    print(f"data dir {data_dir}", flush=True)
    nodes = plan(args, data_dir)
    stopping = _Stopping()
    previous = {s: signal.signal(s, stopping) for s in (signal.SIGTERM, signal.SIGINT)}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for node in nodes:
            with open(node.log, "ab") as log_file:
                proc = subprocess.Popen(node.argv, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                                        env=child_env(), preexec_fn=die_with_parent)
            procs[node.name] = proc
            node.pid = proc.pid
        Path(data_dir, "cluster.json").write_text(json.dumps({"nodes": [asdict(n) for n in nodes]}, indent=2))
        _wait_live(nodes, procs, stopping)
        if not stopping.requested:
            _print_table(nodes)
            leader = _find_leader(nodes, stopping)
            print(f"leader {leader}" if leader else "no leader yet; see the node logs", flush=True)
            print(f"cluster ready: {len(nodes)} nodes; Ctrl-C stops them", flush=True)
        _supervise(nodes, procs, stopping)
    finally:
        _stop_children(procs)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    print("cluster stopped", flush=True)
    return 0


def _print_table(nodes: list[ChildNode]) -> None:
    from consensus.client.commands import format_table

    rows = [["NODE", "PID", "RAFT", "HTTP", "LOG"]]
    rows += [[n.name, str(n.pid), n.raft, n.http, n.log] for n in nodes]
    print(format_table(rows), flush=True)


def _supervise(nodes: list[ChildNode], procs: dict[str, subprocess.Popen[bytes]], stopping: _Stopping) -> None:
    reported: set[str] = set()
    while not stopping.requested:
        for node in nodes:
            code = procs[node.name].poll()
            if code is not None and node.name not in reported:
                reported.add(node.name)
                print(f"node {node.name} (pid {node.pid}) exited with code {code}", flush=True)
        time.sleep(0.2)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "cluster",
        help="run a local cluster in the foreground",
        description="Start N `consensus serve` processes on 127.0.0.1 and keep them running; Ctrl-C stops them all.",
    )
    p.add_argument("--nodes", type=int, default=3, help="how many nodes (default 3)")
    p.add_argument("--base-port", type=int, default=7001, help="first Raft port (default 7001)")
    p.add_argument("--http-base-port", type=int, default=8001, help="first HTTP port (default 8001)")
    p.add_argument("--data-dir", metavar="DIR", help="where nodes keep their data and logs (default: a fresh temp dir)")
    p.add_argument("--apps", default="counter", metavar="A,B", help="apps every node serves (default counter)")
    p.add_argument("--token-file", metavar="F", help="bearer token for mutating requests, passed to every node")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=run)
