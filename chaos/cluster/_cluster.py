"""``ChaosCluster``: N ``consensus serve`` processes whose links (Raft, and HTTP forwarding) run
through Toxiproxy, so a partition cuts a node off completely.

With ``groups=G`` (G > 1) every process hosts one member of each of G Raft groups g1..gG
(``consensus.testing.local.plan_groups``): each group's Raft link between two nodes has its own
proxy (``g2:n3->n1``), the HTTP forwarding links stay one per ordered pair of processes, and
every fault acts on processes and node pairs, so a partition between two nodes cuts every
group's link between them, and a kill takes down a member of every group at once."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import random
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from chaos.cluster._links import DROP_TOXIC, LATENCY_TOXIC, HttpLink, Link, ProxyAPI
from chaos.cluster._topology import Pair, grudge_links, groups_grudge
from consensus.testing.local import ClusterError, LocalCluster, NodeInfo, PortTaken, plan_groups, plan_nodes, replace_views
from consensus.testing.procs import HOST, pick_ports

log = logging.getLogger("chaos.cluster")

_START_ATTEMPTS = 3


class ChaosCluster:
    """Run ``n`` nodes as local processes, each link between two nodes through its own Toxiproxy proxy.

    ::

        async with ChaosCluster(n=3, data_dir=tmp_path) as c:
            leader = await c.wait_for_leader()
            await c.isolate(leader)
            ...
            await c.heal()

    Clients talk to nodes' HTTP ports directly; Raft traffic (one proxy per pair, ``n3->n1``) and
    follower-to-leader HTTP forwarding (one proxy per ordered pair, ``http-n1->n3``) cross
    Toxiproxy. Every process is started and stopped by PID; :meth:`stop` heals and stops
    everything, and is idempotent. With ``toxiproxy_url=None`` an embedded Toxiproxy (a
    :class:`chaos.toxiproxy.BackgroundServer` in a thread) is started and stopped with the
    cluster; otherwise the proxies are created on that server (names prefixed by
    ``proxy_prefix``) and deleted at stop.
    """

    def __init__(self, n: int = 3, apps: Sequence[str] = ("counter",), data_dir: Path | str = "chaos-cluster",
                 toxiproxy_url: str | None = None, token: str | None = None, *, proxy_prefix: str = "",
                 rng: random.Random | None = None, groups: int = 1, env: Mapping[str, str] | None = None) -> None:
        if not 1 <= n <= 15:
            raise ValueError("n must be from 1 to 15")
        if not 1 <= groups <= 16:
            raise ValueError("groups must be from 1 to 16")
        self.n = n
        self.groups = ["default"] if groups == 1 else [f"g{j + 1}" for j in range(groups)]
        self.env = dict(env or {})  # extra environment of every node process (test hooks)
        self.apps = tuple(apps)
        self.data_dir = Path(data_dir).resolve()
        self.toxiproxy_url = toxiproxy_url
        self.token = token
        self.proxy_prefix = proxy_prefix
        self._rng = rng or random.Random()
        self.names = [f"n{i + 1}" for i in range(n)]
        self._raft: dict[str, str] = {}  # node -> its Raft address in the first group
        self._group_raft: dict[str, dict[str, str]] = {}  # group -> node -> its Raft address there
        self._http: dict[str, str] = {}
        self.local: LocalCluster | None = None  # the node processes, once launched
        self._links: dict[Pair, dict[str, Link]] = {}  # pair -> group -> that group's Raft link
        self._http_links: dict[tuple[str, str], HttpLink] = {}  # (sender, target)
        self._embedded: Any = None  # BackgroundServer when we run Toxiproxy ourselves
        self._api: ProxyAPI | None = None
        self._cut: set[Pair] = set()
        self._one_way: set[tuple[str, str]] = set()  # (sender, receiver)
        self._slow: dict[Pair, tuple[int, int]] = {}
        self._killed: set[str] = set()
        self._started = False
        self._stopped = False

    # -- views -------------------------------------------------------------------------------

    @property
    def nodes(self) -> list[NodeInfo]:
        if self.local is not None:
            return self.local.nodes
        return [NodeInfo(name, self._raft.get(name, ""), self._http.get(name, ""), None, self.log_path(name))
                for name in self.names]

    @property
    def endpoints(self) -> list[str]:
        return [self._http[name] for name in self.names]

    @property
    def links(self) -> list[Link]:
        """Every Raft link: one per pair of nodes and group."""
        return sorted((link for by_group in self._links.values() for link in by_group.values()), key=lambda link: link.proxy)

    @property
    def http_links(self) -> list[HttpLink]:
        """The forwarding links, one per ordered pair of nodes."""
        return sorted(self._http_links.values(), key=lambda link: link.proxy)

    @property
    def faults(self) -> dict[str, Any]:
        """What is injected now, as plain JSON-able data (sorted, so equal states compare equal)."""
        return {
            "cut": sorted(sorted(p) for p in self._cut),
            "one_way": sorted([s, r] for s, r in self._one_way),
            "slow": [{"link": sorted(p), "latency_ms": lat, "jitter_ms": jit}
                     for p, (lat, jit) in sorted(self._slow.items(), key=lambda kv: sorted(kv[0]))],
            "paused": sorted(self.local.paused if self.local else ()),
            "killed": sorted(self._killed),
        }

    @property
    def toxiproxy(self) -> str:
        """The URL of the Toxiproxy API in use."""
        assert self._api is not None, "start() the cluster first"
        return self._api.url

    def log_path(self, name: str) -> Path:
        return self.data_dir / f"{name}.log"

    def node(self, name: str) -> NodeInfo:
        self._check(name)
        return self.nodes[self.names.index(name)]

    def link(self, a: str, b: str, group: str | None = None) -> Link:
        """Return the Raft link between ``a`` and ``b`` in ``group`` (default: the first group)."""
        self._check(a)
        self._check(b)
        if a == b:
            raise ValueError(f"a link needs two different nodes, not {a} twice")
        if group is not None and group not in self.groups:
            raise ValueError(f"unknown group {group!r}; groups are {', '.join(self.groups)}")
        return self._links[frozenset((a, b))][group or self.groups[0]]

    def client(self, **kw: Any) -> Any:
        """Return a :class:`consensus.client.Client` over every node's endpoint (close it when done)."""
        from consensus.client import Client

        kw.setdefault("token", self.token)
        return Client(self.endpoints, **kw)

    def _check(self, name: str) -> None:
        if name not in self.names:
            raise ValueError(f"unknown node {name!r}; nodes are {', '.join(self.names)}")

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> "ChaosCluster":
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    async def start(self, timeout: float = 60.0) -> None:
        """Start Toxiproxy (unless given), the proxies and the nodes; wait until a leader is agreed."""
        if self._started:
            raise ClusterError("this cluster was started already")
        self._started = True
        self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            await self._start_toxiproxy()
            for attempt in range(1, _START_ATTEMPTS + 1):
                try:
                    await self._launch()
                    break
                except PortTaken as exc:  # someone took a port between our check and the bind
                    if self.local is not None:
                        self.local.discard_data()  # written at addresses the next attempt will not use
                    log.warning("chaos cluster start attempt %d: %s; retrying with other ports", attempt, exc)
                    if attempt == _START_ATTEMPTS:
                        raise ClusterError(str(exc)) from None
            if len(self.groups) > 1:
                await self.wait_for_group_leaders(timeout)
            else:
                await self.wait_for_leader(timeout)
        except BaseException:
            await self.stop()
            raise

    async def _start_toxiproxy(self) -> None:
        if self.toxiproxy_url is None:
            from chaos.toxiproxy import BackgroundServer

            self._embedded = BackgroundServer(HOST, 0)
            await asyncio.to_thread(self._embedded.start)
            url = self._embedded.url
        else:
            url = self.toxiproxy_url
        self._api = ProxyAPI(url)

    async def _launch(self) -> None:
        """Pick ports, create the proxies, start the nodes (a LocalCluster) and wait until each serves HTTP."""
        pair_count = self.n * (self.n - 1) // 2
        g = len(self.groups)
        rafts = g * self.n
        ports = pick_ports(rafts + self.n + (g + 2) * pair_count, self._rng)
        options: dict[str, Any] = {"token_file": self._write_token(), "env": self.env}
        if g == 1:
            specs = plan_nodes(self.n, self.data_dir, apps=self.apps, raft_ports=ports[:self.n],
                               http_ports=ports[self.n:2 * self.n], **options)
        else:
            specs = plan_groups(self.n, g, self.data_dir, apps=self.apps, raft_ports=ports[:rafts],
                                http_ports=ports[rafts:rafts + self.n], **options)
        for spec in specs:
            self._raft[spec.name], self._http[spec.name] = spec.raft, spec.url
            for group in self.groups:
                self._group_raft.setdefault(group, {})[spec.name] = spec.groups.get(group, spec.raft)
        proxy_ports = iter(ports[rafts + self.n:])
        self._links = await self._create_links(proxy_ports)
        self._http_links = await self._create_http_links(proxy_ports)
        specs = [replace_views(spec, dial_routes={link.upstream: link.listen for link in self.links
                                                  if link.dialer == spec.name},
                               forward_routes=self._forward_routes_of(spec.name))
                 for spec in specs]
        self.local = LocalCluster(specs)
        await self.local.start()  # stops its children itself if a node fails to come up
        log.info("chaos cluster of %d nodes%s serving in %s", self.n,
                 f" x {len(self.groups)} groups" if len(self.groups) > 1 else "", self.data_dir)

    async def _create_links(self, proxy_ports: Iterator[int]) -> dict[Pair, dict[str, Link]]:
        """Create one Raft proxy per pair of nodes and group (a retried start replaces them by name)."""
        assert self._api is not None
        links: dict[Pair, dict[str, Link]] = {}
        for a, b in itertools.combinations(self.names, 2):
            for group in self.groups:
                raft = self._group_raft[group]
                # pysyncobj: only the node whose address string is greater dials (transport._shouldConnect).
                dialer, target = (a, b) if raft[a] > raft[b] else (b, a)
                where = "" if len(self.groups) == 1 else f"{group}:"
                proxy = f"{self.proxy_prefix}{where}{dialer}->{target}"
                try:
                    listen = await self._api.create(proxy, f"{HOST}:{next(proxy_ports)}", raft[target])
                except Exception as exc:
                    if "address already in use" in str(exc):
                        raise PortTaken(f"proxy {proxy}: {exc}") from None
                    raise
                links.setdefault(frozenset((a, b)), {})[group] = Link(dialer, target, proxy, listen, raft[target], group)
        return links

    async def _create_http_links(self, proxy_ports: Iterator[int]) -> dict[tuple[str, str], HttpLink]:
        """Create one forwarding proxy per ordered pair: ``sender`` reaches ``target``'s HTTP through it."""
        assert self._api is not None
        links = {}
        for sender, target in itertools.permutations(self.names, 2):
            proxy = f"{self.proxy_prefix}http-{sender}->{target}"
            upstream = self._http[target].removeprefix("http://")
            try:
                listen = await self._api.create(proxy, f"{HOST}:{next(proxy_ports)}", upstream)
            except Exception as exc:
                if "address already in use" in str(exc):
                    raise PortTaken(f"proxy {proxy}: {exc}") from None
                raise
            links[(sender, target)] = HttpLink(sender, target, proxy, listen, upstream)
        return links

    def _forward_routes_of(self, name: str) -> dict[str, str]:
        """Return where node ``name`` forwards HTTP requests for each other member: its own proxy.

        Only forwarding takes these routes; the URLs a node advertises to clients (``leader_url``,
        ``X-Raft-Leader-Url``) stay the members' real ones, so clients, like Jepsen's control
        node, reach every node directly and never through a node-to-node proxy."""
        return {self._group_raft[group][other]: self._http_links[(name, other)].url
                for group in self.groups for other in self.names if other != name}

    def _pair_proxies(self, pair: Pair) -> list[str]:
        """Every proxy between the two nodes of ``pair``: every group's Raft link and both forwarding links."""
        a, b = sorted(pair)
        return [*(link.proxy for link in self._links[pair].values()), self._http_links[(a, b)].proxy,
                self._http_links[(b, a)].proxy]

    def _streams(self, pair: Pair) -> list[tuple[str, str]]:
        """Every (proxy, stream) of ``pair``, both directions."""
        return [(proxy, stream) for proxy in self._pair_proxies(pair) for stream in ("upstream", "downstream")]

    def _write_token(self) -> Path | None:
        if self.token is None:
            return None
        path = self.data_dir / "token"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.token)
        return path

    async def stop(self) -> None:
        """Heal, stop every node by PID (SIGTERM, SIGKILL after a deadline), remove the proxies,
        stop the embedded Toxiproxy. Safe to call twice, and after a failed start."""
        if self._stopped:
            return
        self._stopped = True
        try:
            if self._api is not None and self._links:
                try:
                    await self.heal()
                except Exception as exc:  # keep going: processes must still be stopped
                    log.warning("chaos cluster: heal during stop failed: %s", exc)
        finally:
            if self.local is not None:
                await self.local.stop()
            if self._api is not None:
                if self._embedded is None:
                    for proxy in self._proxy_names():
                        try:
                            await self._api.destroy(proxy)
                        except Exception as exc:
                            log.warning("chaos cluster: could not delete proxy %s: %s", proxy, exc)
                self._api.close()
            if self._embedded is not None:
                await asyncio.to_thread(self._embedded.stop)
                self._embedded = None

    def _proxy_names(self) -> list[str]:
        return sorted([link.proxy for link in self.links] + [link.proxy for link in self._http_links.values()])

    def _nodes(self) -> LocalCluster:
        if self.local is None:
            raise ClusterError("start() the cluster first")
        return self.local

    # -- status and leader -------------------------------------------------------------------

    async def status(self, name: str, timeout: float = 1.0, *, digest: bool = False) -> dict[str, Any] | None:
        """Return ``GET /v1/status`` of one node, or None if it is down, paused or slow to answer."""
        self._check(name)
        return await self._nodes().status(name, timeout, digest=digest)

    async def statuses(self, *, digest: bool = False) -> dict[str, dict[str, Any] | None]:
        return await self._nodes().statuses(digest=digest)

    async def leader(self) -> str | None:
        """Return the node every reachable node agrees leads, or None.

        Reachable nodes are those running, not paused, that answer ``/v1/status`` within 1 s.
        The rule is :func:`consensus.testing.local.agreed_leader`.
        """
        return await self._nodes().leader()

    async def wait_for_leader(self, timeout: float = 15.0, *, other_than: str | None = None) -> str:
        """Poll :meth:`leader` until one is agreed that is not ``other_than``; raise ``TimeoutError``.

        After isolating the leader, the others still name it until they elect a new one (about
        1-1.5 s): ``wait_for_leader(other_than=old)`` waits for that new one.
        """
        return await self._nodes().wait_for_leader(timeout, other_than=other_than)

    async def group_leader(self, group: str) -> str | None:
        """Return the node whose member of ``group`` leads it (agreed by the reachable members), or None."""
        if group not in self.groups:
            raise ValueError(f"unknown group {group!r}; groups are {', '.join(self.groups)}")
        return await self._nodes().group_leader(group)

    async def wait_for_group_leaders(self, timeout: float = 20.0) -> dict[str, str]:
        """Poll until every group has an agreed leader; return {group: node name}."""
        return await self._nodes().wait_for_group_leaders(timeout)

    # -- processes ---------------------------------------------------------------------------

    async def kill(self, name: str) -> None:
        """SIGKILL a node by PID and reap it; the node stays down until :meth:`restart`."""
        self._check(name)
        await self._nodes().kill(name)
        self._killed.add(name)
        log.info("chaos cluster: killed %s", name)

    async def restart(self, name: str, timeout: float = 30.0) -> None:
        """Start a killed (or exited) node again: same data dir, ports and routes; wait until it serves HTTP."""
        self._check(name)
        await self._nodes().restart(name, timeout)
        self._killed.discard(name)  # only once it runs: a failed restart leaves it for the final heal
        log.info("chaos cluster: restarted %s as pid %s", name, self.node(name).pid)

    async def pause(self, name: str) -> None:
        """SIGSTOP a node: it keeps its sockets but answers nothing until :meth:`resume`."""
        self._check(name)
        await self._nodes().pause(name)

    async def resume(self, name: str) -> None:
        """SIGCONT a paused node."""
        self._check(name)
        await self._nodes().resume(name)

    # -- network -----------------------------------------------------------------------------

    async def partition(self, groups: Iterable[Iterable[str]]) -> None:
        """Cut every link between nodes of different groups, both directions.

        Nodes not listed in any group form one more group together, so ``partition([["n1"]])``
        isolates n1 from the rest. This replaces the current cuts and one-way drops (links
        inside a group are restored); latency stays.
        """
        await self.apply_grudge(groups_grudge(self.names, groups))

    async def isolate(self, name: str) -> None:
        """Cut ``name`` off from every other node (a partition ``[[name], rest]``)."""
        self._check(name)
        await self.partition([[name]])

    async def apply_grudge(self, grudge: Mapping[str, Iterable[str]]) -> None:
        """Make the network match a grudge (receiver -> senders it must not hear from).

        Pairs that drop each other are cut (proxy disabled); a one-sided drop becomes a
        ``timeout`` toxic on the sender's stream (see :meth:`one_way`). Replaces the current cuts
        and one-way drops; latency stays.
        """
        cuts, one_way = grudge_links(self.names, {k: list(v) for k, v in grudge.items()})
        for pair in self._cut - cuts:
            await self._set_cut(pair, False)
        for sender, receiver in self._one_way - one_way:
            await self._set_drop(sender, receiver, False)
        for pair in sorted(cuts - self._cut, key=sorted):
            await self._set_cut(pair, True)
        for sender, receiver in sorted(one_way - self._one_way):
            await self._set_drop(sender, receiver, True)

    async def cut(self, a: str, b: str) -> None:
        """Cut the link between ``a`` and ``b`` (both directions): its Raft proxy and both forwarding
        proxies close their connections and refuse new ones."""
        await self._set_cut(self.link(a, b).pair, True)

    async def uncut(self, a: str, b: str) -> None:
        """Restore the link between ``a`` and ``b``: re-enable it and drop any one-way loss on it."""
        pair = self.link(a, b).pair
        await self._set_cut(pair, False)
        for sender, receiver in [(a, b), (b, a)]:
            if (sender, receiver) in self._one_way:
                await self._set_drop(sender, receiver, False)

    async def one_way(self, sender: str, receiver: str) -> None:
        """Lose everything ``sender`` sends to ``receiver``; the other direction still flows.

        This is a Toxiproxy ``timeout`` toxic with timeout 0 on the sender's stream of the Raft
        link and of both forwarding links: the connections stay open, bytes from ``sender`` are
        read and thrown away, bytes from ``receiver`` pass. Removing it (uncut, heal) closes the link's connections, which then
        reconnect: Raft sees one fresh connection, not a burst of old messages.
        """
        self.link(sender, receiver)
        await self._set_drop(sender, receiver, True)

    async def slow(self, latency_ms: int, jitter_ms: int = 0, nodes: Sequence[str] | None = None) -> None:
        """Delay every link touching ``nodes`` (all links if None; Raft and forwarding) by
        ``latency_ms`` +- ``jitter_ms`` in each direction, so a round trip over it takes at least
        twice ``latency_ms``. Calling it again changes the delay of those links.
        """
        if latency_ms < 0 or jitter_ms < 0:
            raise ValueError("latency and jitter must not be negative")
        chosen = set(self.names if nodes is None else nodes)
        for name in chosen:
            self._check(name)
        assert self._api is not None
        for pair in sorted(self._links, key=sorted):
            if not pair & chosen:
                continue
            for proxy, stream in self._streams(pair):
                await self._api.add_toxic(proxy, f"{LATENCY_TOXIC}-{stream}", "latency", stream,
                                          {"latency": latency_ms, "jitter": jitter_ms})
            self._slow[pair] = (latency_ms, jitter_ms)

    async def unslow(self, nodes: Sequence[str] | None = None) -> None:
        """Remove the latency from links touching ``nodes`` (all links if None)."""
        chosen = set(self.names if nodes is None else nodes)
        assert self._api is not None
        for pair in [p for p in self._slow if p & chosen]:
            for proxy, stream in self._streams(pair):
                await self._api.remove_toxic(proxy, f"{LATENCY_TOXIC}-{stream}")
            del self._slow[pair]

    async def link_state(self, a: str, b: str, group: str | None = None) -> dict[str, Any]:
        """Return the link's proxy (of ``group``, default the first) as Toxiproxy sees it: ``{"enabled", "listen", "toxics"}``."""
        assert self._api is not None
        link = self.link(a, b, group)
        state = await self._api.state(link.proxy)
        if state is None:
            raise ClusterError(f"proxy {link.proxy} is missing from Toxiproxy at {self._api.url}")
        return state

    def http_links_of(self, a: str, b: str) -> tuple[HttpLink, HttpLink]:
        """Return the forwarding links ``a -> b`` and ``b -> a``."""
        self.link(a, b)
        return self._http_links[(a, b)], self._http_links[(b, a)]

    async def http_link_state(self, sender: str, target: str) -> dict[str, Any]:
        """Return the forwarding proxy ``sender -> target`` as Toxiproxy sees it."""
        assert self._api is not None
        self.link(sender, target)
        link = self._http_links[(sender, target)]
        state = await self._api.state(link.proxy)
        if state is None:
            raise ClusterError(f"proxy {link.proxy} is missing from Toxiproxy at {self._api.url}")
        return state

    async def heal_network(self) -> None:
        """Restore every link: remove every toxic (latency too) and re-enable every proxy."""
        assert self._api is not None
        for proxy in self._proxy_names():
            await self._api.heal(proxy)
        self._cut.clear()
        self._one_way.clear()
        self._slow.clear()

    async def heal(self) -> None:
        """Remove every toxic, re-enable every proxy and resume paused nodes (killed ones stay down)."""
        for name in sorted(self.local.paused if self.local else ()):
            await self.resume(name)
        await self.heal_network()

    async def _set_cut(self, pair: Pair, cut: bool) -> None:
        assert self._api is not None
        for proxy in self._pair_proxies(pair):
            await self._api.set_enabled(proxy, not cut)
        if cut:
            self._cut.add(pair)
        else:
            self._cut.discard(pair)

    async def _set_drop(self, sender: str, receiver: str, drop: bool) -> None:
        """Lose (or stop losing) what ``sender`` sends ``receiver``: its Raft messages, its forwarded
        requests to ``receiver``, and its answers to requests ``receiver`` forwards to it."""
        assert self._api is not None
        self.link(sender, receiver)
        streams = [(link.proxy, link.stream_from(sender)) for link in self._links[frozenset((sender, receiver))].values()]
        streams += [(self._http_links[(sender, receiver)].proxy, "upstream"),
                    (self._http_links[(receiver, sender)].proxy, "downstream")]
        for proxy, stream in streams:
            name = f"{DROP_TOXIC}-{stream}"
            if drop:
                await self._api.add_toxic(proxy, name, "timeout", stream, {"timeout": 0})
            else:
                await self._api.remove_toxic(proxy, name)
        if drop:
            self._one_way.add((sender, receiver))
        else:
            self._one_way.discard((sender, receiver))
