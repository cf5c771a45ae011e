"""The one local-cluster layer: N ``consensus serve`` child processes on loopback ports.

::

    from consensus.testing.local import LocalCluster, plan_nodes

    async with LocalCluster(plan_nodes(3, tmp_path)) as c:     # free ports, apps counter, locks, kv
        leader = await c.wait_for_leader()                     # "n2"
        await c.kill(leader); await c.restart(leader)          # SIGKILL by PID; same argv
        await c.pause("n1"); await c.resume("n1")              # SIGSTOP / SIGCONT
        new = await c.wait_for_leader(other_than=leader)

A node is planned as a :class:`NodeSpec` (plain data: its ports, data dir, log, and its own
view of the others: the HTTP URL it forwards to for each peer and where it dials each peer's
Raft port). Callers that route links through proxies (``chaos.cluster``) rewrite those views
before starting. :class:`LocalCluster` runs the specs: it starts every child, waits until each
serves HTTP, and stops every child by PID (SIGTERM, then SIGKILL) on :meth:`stop`, on an error
during start, and (through the children themselves) when this process dies.
``consensus cluster``, ``chaos.cluster.ChaosCluster``, the HTTP benchmark and the tests all
build on it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import aiohttp

from consensus.server.apps import DEFAULT_APPS
from consensus.shards import ShardMap
from consensus.testing.procs import HOST, NodeProcess, last_line, pick_ports

__all__ = ["ClusterError", "PortTaken", "NodeSpec", "NodeInfo", "LocalCluster", "plan_nodes", "plan_groups", "agreed_leader",
           "start_with_retries", "replace_views"]

LIVE_TIMEOUT = 30.0
STATUS_TIMEOUT = 1.0
STOP_TIMEOUT = 10.0


class ClusterError(Exception):
    """The cluster could not do what was asked (a node failed to start, a proxy is gone...)."""


class PortTaken(ClusterError):
    """A port picked for the cluster was taken before a node bound it; plan again and retry."""


@dataclass(frozen=True)
class NodeSpec:
    """One planned node. ``peers`` maps every member's Raft address to its HTTP URL (as clients
    reach it); ``dial_routes`` maps a peer's Raft address to the ``host:port`` this node dials
    instead (e.g. a proxy); ``forward_routes`` maps a peer's Raft address to the URL this node
    sends forwarded HTTP requests to instead (e.g. a proxy)."""

    name: str
    raft: str
    http: str  # host:port it listens on
    data_dir: Path
    log: Path
    peers: Mapping[str, str]
    dial_routes: Mapping[str, str] = field(default_factory=dict)
    forward_routes: Mapping[str, str] = field(default_factory=dict)
    apps: tuple[str, ...] = DEFAULT_APPS
    token_file: Path | None = None
    log_level: str = "info"
    extra_args: tuple[str, ...] = ()
    # Several Raft groups: {group: this node's Raft address in it}; peers come from ``shards_file``
    # (``raft`` is then the first group's address and ``peers`` that group's members).
    groups: Mapping[str, str] = field(default_factory=dict)
    shards_file: Path | None = None
    env: Mapping[str, str] = field(default_factory=dict)  # extra environment of the process (test hooks)

    @property
    def url(self) -> str:
        return f"http://{self.http}"

    def argv(self) -> list[str]:
        """Return the ``consensus serve`` command line of this node."""
        if self.groups:
            members = [arg for group, raft in self.groups.items() for arg in ("--group", f"{group}={raft}")]
            where = [*members, "--shards", str(self.shards_file)]
        else:
            where = ["--id", self.raft, "--peers", ",".join(f"{raft}={url}" for raft, url in self.peers.items())]
        argv = [sys.executable, "-m", "consensus", "serve", *where, "--http", self.http,
                "--data-dir", str(self.data_dir), "--apps", ",".join(self.apps), "--log-level", self.log_level,
                "--exit-with-parent"]
        if self.token_file is not None:
            argv += ["--token-file", str(self.token_file)]
        for peer, target in sorted(self.dial_routes.items()):
            argv += ["--dial-route", f"{peer}={target}"]
        for peer, url in sorted(self.forward_routes.items()):
            argv += ["--forward-route", f"{peer}={url}"]
        return argv + list(self.extra_args)


@dataclass(frozen=True)
class NodeInfo:
    """One node as a harness sees it; ``pid`` is None while the node is down."""

    name: str
    raft: str
    http: str  # its URL
    pid: int | None
    log: Path


def plan_nodes(n: int, data_dir: Path | str, *, apps: Sequence[str] = DEFAULT_APPS,
               raft_ports: Sequence[int] | None = None, http_ports: Sequence[int] | None = None,
               rng: random.Random | None = None, **options: Any) -> list[NodeSpec]:
    """Plan ``n`` nodes named n1..nN under ``data_dir`` (``nI/`` data, ``nI.log`` log), every
    peer reached directly. Ports not given are picked free. ``options`` go to :class:`NodeSpec`
    (``token_file``, ``log_level``, ``extra_args``)."""
    if not 1 <= n <= 15:
        raise ValueError("a local cluster has from 1 to 15 nodes")
    picked = iter(pick_ports(2 * n, rng) if raft_ports is None or http_ports is None else [])
    rafts = list(raft_ports) if raft_ports is not None else [next(picked) for _ in range(n)]
    https = list(http_ports) if http_ports is not None else [next(picked) for _ in range(n)]
    if len(rafts) != n or len(https) != n:
        raise ValueError(f"give {n} Raft ports and {n} HTTP ports")
    root = Path(data_dir).resolve()
    peers = {f"{HOST}:{r}": f"http://{HOST}:{h}" for r, h in zip(rafts, https)}
    return [NodeSpec(name=f"n{i + 1}", raft=f"{HOST}:{rafts[i]}", http=f"{HOST}:{https[i]}",
                     data_dir=root / f"n{i + 1}", log=root / f"n{i + 1}.log", peers=dict(peers), apps=tuple(apps),
                     **options)
            for i in range(n)]


def plan_groups(n: int, groups: int, data_dir: Path | str, *, apps: Sequence[str] = ("counter",),
                raft_base: int | None = None, http_base: int | None = None, rng: random.Random | None = None,
                raft_ports: Sequence[int] | None = None, http_ports: Sequence[int] | None = None,
                **options: Any) -> list[NodeSpec]:
    """Plan ``n`` processes n1..nN that each host one member of every group g1..gG (G x N engines;
    ``consensus cluster --groups G --nodes N``) and write the shard map to ``data_dir/shards.json``
    (keys hashed over the groups). Node I's Raft port in group J is ``raft_base + J*N + I``, or
    ``raft_ports[J*N + I]`` when the ports are given as lists (``http_ports[I]``)."""
    if not 1 <= groups <= 16:
        raise ValueError("a local cluster has from 1 to 16 groups")
    if not 1 <= n <= 15:
        raise ValueError("a local cluster has from 1 to 15 nodes")
    if raft_ports is not None and http_ports is not None:
        if len(raft_ports) != n * groups or len(http_ports) != n:
            raise ValueError(f"give {n * groups} Raft ports and {n} HTTP ports")
        picked = iter([*raft_ports, *http_ports])
    else:
        picked = iter(pick_ports(n * groups + n, rng) if raft_base is None or http_base is None else [])
    names = [f"g{j + 1}" for j in range(groups)]
    rafts = {(j, i): f"{HOST}:{raft_base + j * n + i if raft_base is not None else next(picked)}"
             for j in range(groups) for i in range(n)}
    https = [f"{HOST}:{http_base + i if http_base is not None else next(picked)}" for i in range(n)]
    root = Path(data_dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    shards = ShardMap.from_dict({"groups": {names[j]: [{"raft": rafts[j, i], "http": f"http://{https[i]}"}
                                                       for i in range(n)] for j in range(groups)}})
    shards_file = root / "shards.json"
    shards.write(shards_file)
    return [NodeSpec(name=f"n{i + 1}", raft=rafts[0, i], http=https[i], data_dir=root / f"n{i + 1}",
                     log=root / f"n{i + 1}.log", peers=shards.peers(names[0]), apps=tuple(apps),
                     groups={names[j]: rafts[j, i] for j in range(groups)}, shards_file=shards_file, **options)
            for i in range(n)]


def agreed_leader(statuses: Mapping[str, Mapping[str, Any]], raft: Mapping[str, str], n: int) -> str | None:
    """Return the node that leads, given the ``/v1/status`` bodies of the reachable nodes.

    Node X leads when X says it leads at term T, a majority of the whole cluster (X included)
    names X at term T, and no reachable node names another leader at a term of T or more.
    Nodes that name no leader do not veto (a node cut off from the rest keeps starting
    elections and may be at a higher term), nor do nodes at a lower term (a deposed leader cut
    off from the rest that has not noticed yet).
    """
    for name, status in statuses.items():
        if status.get("role") != "leader":
            continue
        term, me = status.get("term", 0), raft[name]
        supporters = sum(1 for s in statuses.values() if s.get("leader") == me and s.get("term") == term)
        conflicting = any(s.get("leader") not in (None, me) and s.get("term", 0) >= term for s in statuses.values())
        if supporters > n // 2 and not conflicting:
            return name
    return None


class LocalCluster:
    """Run planned nodes as child processes; control them by PID; stop them all, always."""

    def __init__(self, specs: Sequence[NodeSpec], *, live_timeout: float = LIVE_TIMEOUT) -> None:
        if not specs:
            raise ValueError("a local cluster needs at least one node")
        self.specs = {spec.name: spec for spec in specs}
        self.names = [spec.name for spec in specs]
        self.live_timeout = live_timeout
        self.procs = {spec.name: NodeProcess(spec.name, spec.argv(), spec.log, spec.env) for spec in specs}
        self.paused: set[str] = set()
        self.pids_seen: set[int] = set()
        self._session: aiohttp.ClientSession | None = None
        self._started = False

    # -- views -------------------------------------------------------------------------------

    @property
    def n(self) -> int:
        return len(self.names)

    @property
    def nodes(self) -> list[NodeInfo]:
        return [NodeInfo(s.name, s.raft, s.url, self.procs[s.name].pid, s.log) for s in self.specs.values()]

    @property
    def endpoints(self) -> list[str]:
        return [spec.url for spec in self.specs.values()]

    @property
    def killed(self) -> list[str]:
        """Nodes that are not running (killed, or exited by themselves)."""
        return [name for name in self.names if self.procs[name].pid is None]

    def node(self, name: str) -> NodeInfo:
        self.check(name)
        return self.nodes[self.names.index(name)]

    def check(self, name: str) -> None:
        if name not in self.specs:
            raise ValueError(f"unknown node {name!r}; nodes are {', '.join(self.names)}")

    def manifest(self) -> dict[str, Any]:
        """Return ``cluster.json``: every node's ports, data dir, log, argv and PID."""
        return {"nodes": [{"name": s.name, "raft": s.raft, "http": s.url, "data_dir": str(s.data_dir),
                           "log": str(s.log), "argv": self.procs[s.name].argv, "pid": self.procs[s.name].pid or 0}
                          for s in self.specs.values()],
                "pids_seen": sorted(self.pids_seen)}

    def write_manifest(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.manifest(), indent=2) + "\n")

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> "LocalCluster":
        if not self._started:  # ``async with await start_with_retries(...)`` is started already
            await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    def spawn_all(self) -> None:
        """Start every node process (without waiting for them)."""
        if self._started:
            raise ClusterError("this cluster was started already")
        self._started = True
        for spec in self.specs.values():
            spec.data_dir.parent.mkdir(parents=True, exist_ok=True)
            self.pids_seen.add(self.procs[spec.name].spawn())

    async def start(self) -> "LocalCluster":
        """Start every node and wait until each serves HTTP; on any failure stop them all and raise
        (:class:`PortTaken` when a port was taken, else :class:`ClusterError`)."""
        try:
            self.spawn_all()
            await self.wait_live()
        except BaseException:
            await self.stop()
            raise
        return self

    async def wait_live(self, names: Iterable[str] | None = None, timeout: float | None = None) -> None:
        """Wait until each named node (all by default) answers ``/livez``."""
        await asyncio.gather(*(self._wait_live(name, timeout or self.live_timeout) for name in (names or self.names)))

    async def _wait_live(self, name: str, timeout: float) -> None:
        proc = self.procs[name]
        deadline = time.monotonic() + timeout
        while True:
            code = proc.returncode
            if code is not None:
                last = last_line(proc.log)
                if "in use" in last:
                    raise PortTaken(f"{name}: {last}")
                raise ClusterError(f"node {name} exited with code {code}: {last or 'see ' + str(proc.log)}")
            if await self.get(name, "/livez") is not None:
                return
            if time.monotonic() > deadline:
                raise ClusterError(f"node {name} did not serve HTTP within {timeout:.0f}s; see {proc.log}")
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        """Stop every node by PID (SIGCONT, SIGTERM, SIGKILL after a deadline). Idempotent."""
        await asyncio.gather(*(proc.terminate(STOP_TIMEOUT) for proc in self.procs.values()))
        self.paused.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- status and leader -------------------------------------------------------------------

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64))
        return self._session

    async def get(self, name: str, path: str, timeout: float = STATUS_TIMEOUT) -> Any:
        """GET a node's JSON at ``path``, or None if it does not answer 200 in time."""
        try:
            async with self._http().get(self.specs[name].url + path, timeout=aiohttp.ClientTimeout(total=timeout)) as r:
                if r.status != 200:
                    return None
                return await r.json()
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError, OSError):
            return None

    async def status(self, name: str, timeout: float = STATUS_TIMEOUT, *, digest: bool = False) -> dict[str, Any] | None:
        """Return ``GET /v1/status`` of one node, or None if it is down, paused or slow to answer."""
        self.check(name)
        if self.procs[name].pid is None or name in self.paused:
            return None
        result: dict[str, Any] | None = await self.get(name, "/v1/status?digest=true" if digest else "/v1/status",
                                                       timeout)
        return result

    async def statuses(self, *, digest: bool = False) -> dict[str, dict[str, Any] | None]:
        found = await asyncio.gather(*(self.status(name, digest=digest) for name in self.names))
        return dict(zip(self.names, found))

    async def leader(self) -> str | None:
        """Return the node the reachable nodes agree leads (see :func:`agreed_leader`), or None."""
        found = {name: s for name, s in (await self.statuses()).items() if s is not None}
        return agreed_leader(found, {s.name: s.raft for s in self.specs.values()}, self.n)

    async def wait_for_leader(self, timeout: float = 15.0, *, other_than: str | None = None) -> str:
        """Poll :meth:`leader` until one is agreed (and is not ``other_than``, e.g. a leader just
        isolated, whom the others keep naming until they elect a new one); raise ``TimeoutError``."""
        if other_than is not None:
            self.check(other_than)
        deadline = time.monotonic() + timeout
        while True:
            leader = await self.leader()
            if leader is not None and leader != other_than:
                return leader
            if time.monotonic() > deadline:
                wanted = "an agreed leader" + (f" other than {other_than}" if other_than else "")
                raise TimeoutError(f"no {wanted} within {timeout:.1f}s; statuses: {await self.brief()}")
            await asyncio.sleep(0.05)

    # -- several groups ----------------------------------------------------------------------

    @property
    def groups(self) -> list[str]:
        """The Raft groups the nodes host (["default"] for a one-group cluster)."""
        first = next(iter(self.specs.values()))
        return list(first.groups) or ["default"]

    async def group_leader(self, group: str) -> str | None:
        """Return the node whose member of ``group`` the reachable members agree leads, or None."""
        found: dict[str, dict[str, Any]] = {}
        for name, status in (await self.statuses()).items():
            for body in (status or {}).get("groups", [status] if status else []):
                if body.get("group", "default") == group:
                    found[name] = body
        raft = {s.name: (s.groups.get(group) if s.groups else s.raft) or "" for s in self.specs.values()}
        members = sum(1 for s in self.specs.values() if not s.groups or group in s.groups)
        return agreed_leader(found, raft, members)

    async def wait_for_group_leaders(self, timeout: float = 20.0) -> dict[str, str]:
        """Poll until every group has an agreed leader; return {group: node name}."""
        deadline = time.monotonic() + timeout
        while True:
            leaders = {g: await self.group_leader(g) for g in self.groups}
            if all(leaders.values()):
                return {g: name for g, name in leaders.items() if name}
            if time.monotonic() > deadline:
                raise TimeoutError(f"no leader in every group within {timeout:.0f}s: {leaders}")
            await asyncio.sleep(0.05)

    async def wait_caught_up(self, names: Iterable[str] | None = None, timeout: float = 30.0) -> None:
        """Wait until each named node (all by default) names a leader and has applied its commit index."""
        pending = list(names or self.names)
        deadline = time.monotonic() + timeout
        while pending:
            statuses = await asyncio.gather(*(self.status(name) for name in pending))
            pending = [name for name, s in zip(pending, statuses)
                       if not s or not s.get("leader") or s.get("last_applied", -1) < s.get("commit_index", 0)]
            if pending and time.monotonic() > deadline:
                raise TimeoutError(f"{', '.join(pending)} not caught up within {timeout:.0f}s; {await self.brief()}")
            if pending:
                await asyncio.sleep(0.05)

    async def brief(self) -> dict[str, str]:
        """Return one line per node: down, or its role, term and leader."""
        return {name: "down" if s is None else f"{s.get('role')} term {s.get('term')} leader {s.get('leader')}"
                for name, s in (await self.statuses()).items()}

    # -- processes ---------------------------------------------------------------------------

    async def kill(self, name: str) -> None:
        """SIGKILL a node by PID and reap it; it stays down until :meth:`restart`."""
        self.check(name)
        await self.procs[name].kill()
        self.paused.discard(name)

    async def restart(self, name: str, timeout: float | None = None) -> None:
        """Start a killed (or exited) node again with the same argv; wait until it serves HTTP."""
        self.check(name)
        proc = self.procs[name]
        if proc.pid is not None:
            raise ClusterError(f"{name} is running (pid {proc.pid}); kill it before restarting it")
        self.pids_seen.add(proc.spawn())
        try:
            await self._wait_live(name, timeout or self.live_timeout)
        except PortTaken as exc:
            raise ClusterError(f"cannot restart {name}: {exc}") from None

    async def pause(self, name: str) -> None:
        """SIGSTOP a node: it keeps its sockets but answers nothing until :meth:`resume`."""
        self.check(name)
        if not self.procs[name].signal(signal.SIGSTOP):
            raise ClusterError(f"cannot pause {name}: it is not running")
        self.paused.add(name)

    async def resume(self, name: str) -> None:
        """SIGCONT a paused node."""
        self.check(name)
        self.procs[name].signal(signal.SIGCONT)
        self.paused.discard(name)

    async def terminate(self, name: str, timeout: float = STOP_TIMEOUT) -> None:
        """Stop one node cleanly (SIGTERM, SIGKILL after ``timeout``); :meth:`restart` brings it back."""
        self.check(name)
        await self.procs[name].terminate(timeout)
        self.paused.discard(name)

    def discard_data(self) -> None:
        """Delete every node's data dir (after a failed first start; logs stay)."""
        for spec in self.specs.values():
            shutil.rmtree(spec.data_dir, ignore_errors=True)

    def copy_logs(self, target: Path) -> list[Path]:
        """Copy each node's log to ``target/<name>.log``; missing logs are skipped."""
        out = []
        for spec in self.specs.values():
            if spec.log.is_file():
                target.mkdir(parents=True, exist_ok=True)
                out.append(Path(shutil.copyfile(spec.log, target / f"{spec.name}.log")))
        return out


async def start_with_retries(plan: Callable[[], Sequence[NodeSpec]], attempts: int = 3,
                             make: Callable[[Sequence[NodeSpec]], LocalCluster] = LocalCluster) -> LocalCluster:
    """Plan and start a cluster; when a picked port was taken meanwhile, plan again (new ports)."""
    for attempt in range(1, attempts + 1):
        cluster = make(plan())
        try:
            return await cluster.start()
        except PortTaken:
            cluster.discard_data()  # written at addresses the next attempt will not use
            if attempt == attempts:
                raise
    raise AssertionError("unreachable")


def replace_views(spec: NodeSpec, *, peers: Mapping[str, str] | None = None,
                  dial_routes: Mapping[str, str] | None = None,
                  forward_routes: Mapping[str, str] | None = None) -> NodeSpec:
    """Return ``spec`` with new peer URLs, dial routes and/or forward routes (for proxied links)."""
    changes: dict[str, Any] = {}
    if forward_routes is not None:
        changes["forward_routes"] = dict(forward_routes)
    if peers is not None:
        changes["peers"] = dict(peers)
    if dial_routes is not None:
        changes["dial_routes"] = dict(dial_routes)
    return dataclasses.replace(spec, **changes)

