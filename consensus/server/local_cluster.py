"""``consensus cluster``: a local cluster of N ``consensus serve`` processes, in the foreground.

Nodes listen on 127.0.0.1: Raft ports ``--base-port``.. and HTTP ports ``--http-base-port``..
With ``--groups G``, each of the N processes hosts one member of every group g1..gG (Raft port
of node I in group J: ``base-port + J*N + I``), and ``DATA_DIR/shards.json`` is the shard map.
Each node's log goes to ``DATA_DIR/nI.log``; ``DATA_DIR/cluster.json`` records every node's
ports, PID and command line (to restart one by hand). Ctrl-C or SIGTERM stops every child by
PID; if this process dies anyway, each child notices (``PR_SET_PDEATHSIG`` and a parent watch)
and stops itself. The processes are run by :class:`consensus.testing.local.LocalCluster`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import tempfile
from pathlib import Path
from typing import Any, Awaitable, TypeVar

from consensus.cli import CommandError, UsageError
from consensus.server.apps import DEFAULT_APPS
from consensus.testing.local import ClusterError, LocalCluster, plan_groups, plan_nodes
from consensus.testing.procs import HOST, child_env, die_with_parent, port_in_use

__all__ = ["register", "run", "child_env", "die_with_parent", "port_in_use"]  # the helpers: for older imports

_LEADER_TIMEOUT = 20.0
_SUPERVISE_EVERY = 0.2
T = TypeVar("T")


def _raft_ports(args: argparse.Namespace) -> range:
    return range(args.base_port, args.base_port + args.nodes * (args.groups or 1))


def _check_args(args: argparse.Namespace) -> None:
    if not 1 <= args.nodes <= 15:
        raise UsageError("--nodes must be from 1 to 15")
    if args.groups is not None and not 1 <= args.groups <= 16:
        raise UsageError("--groups must be from 1 to 16")
    raft_count = len(_raft_ports(args))
    for flag, base, count in (("--base-port", args.base_port, raft_count), ("--http-base-port", args.http_base_port, args.nodes)):
        if not 1024 <= base <= 65535 - count + 1:
            raise UsageError(f"{flag} must leave room for {count} ports between 1024 and 65535")
    raft = set(_raft_ports(args))
    if raft & set(range(args.http_base_port, args.http_base_port + args.nodes)):
        raise UsageError("the Raft and HTTP port ranges overlap")
    if args.token_file and not os.path.isfile(args.token_file):
        raise UsageError(f"--token-file {args.token_file} does not exist")


def plan(args: argparse.Namespace, data_dir: str) -> LocalCluster:
    """Return the cluster the flags describe (not started)."""
    token = Path(os.path.abspath(args.token_file)) if args.token_file else None
    if args.groups is not None:
        return LocalCluster(plan_groups(args.nodes, args.groups, data_dir, apps=[a for a in args.apps.split(",") if a],
                                        raft_base=args.base_port, http_base=args.http_base_port,
                                        token_file=token, log_level=args.log_level))
    specs = plan_nodes(args.nodes, data_dir, apps=[a for a in args.apps.split(",") if a],
                       raft_ports=range(args.base_port, args.base_port + args.nodes),
                       http_ports=range(args.http_base_port, args.http_base_port + args.nodes),
                       token_file=token, log_level=args.log_level)
    return LocalCluster(specs)


class _Stopping:
    """Set by SIGTERM/SIGINT; every wait races it, so a signal during start-up stops at once."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    async def race(self, work: Awaitable[T]) -> T | None:
        """Return ``work``'s result, or None (``work`` cancelled) if a stop is requested first."""
        task = asyncio.ensure_future(work)
        stop = asyncio.ensure_future(self.event.wait())
        try:
            await asyncio.wait([task, stop], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if task.done():
            return task.result()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return None


def run(args: argparse.Namespace) -> int:
    _check_args(args)
    for port in [*_raft_ports(args), *range(args.http_base_port, args.http_base_port + args.nodes)]:
        if port_in_use(port):
            raise CommandError(f"port {port} on {HOST} is in use; pick other ports with --base-port / --http-base-port")
    data_dir = os.path.abspath(args.data_dir) if args.data_dir else tempfile.mkdtemp(prefix="raftwork-cluster-")
    try:
        os.makedirs(data_dir, exist_ok=True)
    except OSError as exc:
        raise CommandError(f"cannot create data dir {data_dir}: {exc.strerror or exc}") from None
    print(f"data dir {data_dir}", flush=True)
    asyncio.run(_foreground(plan(args, data_dir), Path(data_dir)))
    print("cluster stopped", flush=True)
    return 0


async def _foreground(cluster: LocalCluster, data_dir: Path) -> None:
    stopping = _Stopping()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.event.set)
    try:
        cluster.spawn_all()
        cluster.write_manifest(data_dir / "cluster.json")
        try:
            await stopping.race(cluster.wait_live())
        except ClusterError as exc:
            raise CommandError(str(exc)) from None
        if stopping.event.is_set():
            return
        _print_table(cluster)
        if cluster.specs[cluster.names[0]].groups:
            leaders = await stopping.race(_find_group_leaders(cluster))
            if stopping.event.is_set():
                return
            for group, leader in (leaders or {}).items():
                print(f"group {group} leader {leader}", flush=True)
            if not leaders:
                print("no leader in every group yet; see the node logs", flush=True)
            print(f"cluster ready: {len(cluster.groups)} groups of {cluster.n} nodes; shard map "
                  f"{data_dir / 'shards.json'}; Ctrl-C stops them", flush=True)
        else:
            leader = await stopping.race(_find_leader(cluster))
            if stopping.event.is_set():
                return
            print(f"leader {leader}" if leader else "no leader yet; see the node logs", flush=True)
            print(f"cluster ready: {cluster.n} nodes; Ctrl-C stops them", flush=True)
        await _supervise(cluster, stopping.event)
    finally:
        await cluster.stop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


async def _find_leader(cluster: LocalCluster) -> str | None:
    try:
        name = await cluster.wait_for_leader(_LEADER_TIMEOUT)
    except TimeoutError:
        return None
    node, status = cluster.node(name), await cluster.status(name)
    return f"{name} {node.raft} {node.http} at term {(status or {}).get('term')}"


async def _find_group_leaders(cluster: LocalCluster) -> dict[str, str]:
    try:
        leaders = await cluster.wait_for_group_leaders(_LEADER_TIMEOUT)
    except TimeoutError:
        return {}
    return {group: f"{name} {cluster.specs[name].groups[group]}" for group, name in leaders.items()}


def _print_table(cluster: LocalCluster) -> None:
    from consensus.client.commands import format_table

    rows = [["NODE", "PID", "RAFT", "HTTP", "LOG"]]
    rows += [[n.name, str(n.pid), ",".join(f"{g}={r}" for g, r in cluster.specs[n.name].groups.items()) or n.raft,
              n.http, str(n.log)] for n in cluster.nodes]
    print(format_table(rows), flush=True)


async def _supervise(cluster: LocalCluster, stopping: asyncio.Event) -> None:
    reported: set[str] = set()
    while not stopping.is_set():
        for name, proc in cluster.procs.items():
            code = proc.returncode
            if code is not None and name not in reported:
                reported.add(name)
                print(f"node {name} (pid {proc.proc.pid if proc.proc else '?'}) exited with code {code}", flush=True)
        try:
            await asyncio.wait_for(stopping.wait(), _SUPERVISE_EVERY)
        except asyncio.TimeoutError:
            pass


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "cluster",
        help="run a local cluster in the foreground",
        description="Start N `consensus serve` processes on 127.0.0.1 and keep them running; Ctrl-C stops them all.",
    )
    p.add_argument("--nodes", type=int, default=3, help="how many nodes (default 3)")
    p.add_argument("--groups", type=int, metavar="G",
                   help="run G Raft groups g1..gG, each node hosting a member of every group (default: one group)")
    p.add_argument("--base-port", type=int, default=7001, help="first Raft port (default 7001)")
    p.add_argument("--http-base-port", type=int, default=8001, help="first HTTP port (default 8001)")
    p.add_argument("--data-dir", metavar="DIR", help="where nodes keep their data and logs (default: a fresh temp dir)")
    p.add_argument("--apps", default=",".join(DEFAULT_APPS), metavar="A,B", help=f"apps every node serves (default {','.join(DEFAULT_APPS)})")
    p.add_argument("--token-file", metavar="F", help="bearer token for mutating requests, passed to every node")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=run)
