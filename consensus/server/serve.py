"""``consensus serve``: run one node (Raft peer port + HTTP API) until SIGTERM or SIGINT.

``--peers`` lists every member's Raft address, optionally with its HTTP URL
(``127.0.0.1:7002=http://127.0.0.1:8002``): a follower forwards writes and linearizable reads to
the leader's HTTP URL, so give URLs for every peer. Without one, a follower answers
``not_leader`` with the leader's Raft id and the client finds the leader itself.

Several Raft groups (docs/sharding.md): ``--shards FILE`` is the static shard map (every group's
members and which keys each holds, ``consensus.shards``), and ``--group NAME=HOST:PORT``
(repeatable) makes this process host the member ``HOST:PORT`` of group ``NAME``: one engine and
Raft port per group, one HTTP port for all, data under ``DATA_DIR/NAME``. ``--group NAME`` with
``--id`` names the one group the process serves (peers from ``--peers`` or the map).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import signal
import socket
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from consensus.cli import CommandError, UsageError
from consensus.engine import EngineStartError, is_loopback
from consensus.errors import ConsensusError
from consensus.node import Node, NodeConfig
from consensus.server.app import QuietParseErrors, Server, ServerConfig
from consensus.server.apps import DEFAULT_APPS, available_apps, load_apps, machines_for
from consensus.server.groups import GroupHost
from consensus.server.listener import Limits, start_site
from consensus.shards import DEFAULT_GROUP, GROUP_NAME_PATTERN, ShardMap, ShardMapError

log = logging.getLogger("consensus.serve")

_ADDRESS = re.compile(r"([A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\]):(\d{1,5})")
_URL = re.compile(r"https?://([A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(:\d{1,5})?/?")
_PARENT_POLL_SECONDS = 0.5


@dataclass
class GroupSettings:
    """This process's member of one Raft group."""

    group: str
    node_id: str
    peers: list[str]
    peer_http: dict[str, str]
    data_dir: str


@dataclass
class ServeSettings:
    node_id: str
    peers: list[str]
    peer_http: dict[str, str]
    http_host: str
    http_port: int
    http_url: str
    data_dir: str
    apps: list[str]
    secret: str | None = None
    token: str | None = None
    dial_routes: dict[str, tuple[str, int]] = field(default_factory=dict)
    forward_routes: dict[str, str] = field(default_factory=dict)
    exit_with_parent: bool = False
    limits: Limits = field(default_factory=Limits)
    fsync: str = "always"
    forward: str = "engine"
    members: list[GroupSettings] = field(default_factory=list)  # one per hosted group, the first is node_id's
    shards: ShardMap | None = None


def parse_address(text: str, what: str) -> tuple[str, int]:
    """Split "host:port"; raise ``UsageError`` naming ``what`` if it is not one."""
    match = _ADDRESS.fullmatch(text.strip())
    if not match or not 0 < int(match.group(2)) < 65536:
        raise UsageError(f"{what} must be HOST:PORT with a port from 1 to 65535, not {text!r}")
    return match.group(1).strip("[]"), int(match.group(2))


def parse_peers(text: str) -> tuple[list[str], dict[str, str]]:
    """Parse ``A[=URL],B[=URL]`` into Raft addresses and a Raft-address -> HTTP-URL map."""
    peers: list[str] = []
    urls: dict[str, str] = {}
    for item in (p.strip() for p in text.split(",")):
        if not item:
            continue
        address, has_url, url = item.partition("=")
        parse_address(address, "each --peers entry")
        if address in peers:
            raise UsageError(f"--peers lists {address} twice")
        peers.append(address)
        if has_url:
            if not _URL.fullmatch(url):
                raise UsageError(f"the HTTP URL of peer {address} must look like http://HOST:PORT, not {url!r}")
            urls[address] = url.rstrip("/")
    if not peers:
        raise UsageError("--peers needs at least one HOST:PORT")
    return peers, urls


def _host_is_loopback(host: str) -> bool:
    return is_loopback(f"[{host}]:1" if ":" in host else f"{host}:1")


def _read_secret(path: str | None, flag: str) -> str | None:
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            value = f.read().strip()
    except OSError as exc:
        raise UsageError(f"cannot read {flag} {path}: {exc.strerror or exc}") from None
    if not value:
        raise UsageError(f"{flag} {path} is empty")
    return value


def _load_shards(path: str | None) -> ShardMap | None:
    if path is None:
        return None
    try:
        return ShardMap.load(path)
    except ShardMapError as exc:
        raise UsageError(str(exc)) from None


def _group_members(args: argparse.Namespace, shards: ShardMap | None) -> list[GroupSettings]:
    """Return this process's member of each group it hosts, from --id/--peers/--group/--shards."""
    named = [g for g in (args.group or ()) if "=" not in g]
    placed = [g for g in (args.group or ()) if "=" in g]
    for text in named + [g.partition("=")[0] for g in placed]:
        if not re.fullmatch(GROUP_NAME_PATTERN, text):
            raise UsageError(f"a group name must match {GROUP_NAME_PATTERN}, not {text!r}")
    if placed:
        if named or args.id or args.peers:
            raise UsageError("--group NAME=HOST:PORT takes its peers from --shards; do not mix it with --id, --peers "
                             "or --group NAME")
        if shards is None:
            raise UsageError("--group NAME=HOST:PORT needs --shards FILE (the members of every group)")
        members = []
        for item in placed:
            group, _, address = item.partition("=")
            parse_address(address, f"--group {group}=HOST:PORT")
            if any(m.group == group for m in members):
                raise UsageError(f"--group {group} is given twice")
            members.append(_member_from_map(shards, group, address, os.path.join(args.data_dir, group)))
        return members
    if len(named) > 1:
        raise UsageError("--group NAME names the one group of --id; host several with --group NAME=HOST:PORT")
    if not args.id:
        raise UsageError("give --id HOST:PORT (or --group NAME=HOST:PORT with --shards)")
    parse_address(args.id, "--id")
    if shards is not None and not args.peers:
        group = named[0] if named else next((g for g in shards.groups if args.id in shards.peers(g)), None)
        if group is None:
            raise UsageError(f"--id {args.id} is a member of no group in --shards")
        return [_member_from_map(shards, group, args.id, args.data_dir)]
    if not args.peers:
        raise UsageError("give --peers (or --shards FILE listing this node's group)")
    peers, peer_http = parse_peers(args.peers)
    if args.id not in peers:
        peers.insert(0, args.id)
    group = named[0] if named else DEFAULT_GROUP
    if shards is not None:
        if group not in shards.groups:
            raise UsageError(f"group {group!r} is not in --shards")
        peer_http = {**shards.peers(group), **peer_http}
    return [GroupSettings(group, args.id, peers, peer_http, args.data_dir)]


def _member_from_map(shards: ShardMap, group: str, address: str, data_dir: str) -> GroupSettings:
    if group not in shards.groups:
        raise UsageError(f"group {group!r} is not in --shards (groups: {', '.join(shards.groups)})")
    peer_http = shards.peers(group)
    if address not in peer_http:
        raise UsageError(f"{address} is not a member of group {group} in --shards")
    return GroupSettings(group, address, list(peer_http), peer_http, data_dir)


def settings_from_args(args: argparse.Namespace) -> ServeSettings:
    """Check every flag; raise ``UsageError`` on the first bad one."""
    shards = _load_shards(args.shards)
    members = _group_members(args, shards)
    first = members[0]
    http_host, http_port = parse_address(args.http, "--http")
    # A wildcard bind address is not an address others can use: advertise the peer host instead.
    advertised_host = parse_address(first.node_id, "--id")[0] if http_host in ("0.0.0.0", "::") else args.http.rsplit(":", 1)[0]
    http_url = args.advertise_http or f"http://{advertised_host}:{http_port}"
    if not _URL.fullmatch(http_url):
        raise UsageError(f"--advertise-http must look like http://HOST:PORT, not {http_url!r}")
    apps = [a.strip() for a in args.apps.split(",") if a.strip()]
    unknown = [a for a in apps if a not in available_apps()]
    if unknown:
        raise UsageError(f"unknown app {unknown[0]!r}; available: {', '.join(available_apps())}")
    secret = _read_secret(args.secret_file, "--secret-file")
    if secret is None:
        # The peer protocol is pickle: without a secret, whoever talks to the port runs code.
        for address in [a for m in members for a in [m.node_id, *m.peers]]:
            if not is_loopback(address):
                what = "--id" if any(address == m.node_id for m in members) else "the peer"
                raise UsageError(f"{what} {address} is not a loopback address: peers on other hosts need --secret-file")
    token = _read_secret(args.token_file, "--token-file")
    if not _host_is_loopback(http_host) and token is None and not args.insecure_http:
        raise UsageError(f"--http {args.http} is not a loopback address: give --token-file, or --insecure-http to serve "
                         "writes to anyone who can reach it")
    routes: dict[str, tuple[str, int]] = {}
    for item in args.dial_route or ():
        peer, _, target = item.partition("=")
        parse_address(peer, "--dial-route PEER")
        routes[peer] = parse_address(target, "--dial-route target")
    forward_routes: dict[str, str] = {}
    for item in args.forward_route or ():
        peer, _, url = item.partition("=")
        parse_address(peer, "--forward-route PEER")
        if not _URL.fullmatch(url):
            raise UsageError(f"--forward-route {peer}=URL needs a URL like http://HOST:PORT, not {url!r}")
        forward_routes[peer] = url.rstrip("/")
    return ServeSettings(
        node_id=first.node_id,
        peers=first.peers,
        peer_http=first.peer_http,
        http_host=http_host,
        http_port=http_port,
        http_url=http_url.rstrip("/"),
        data_dir=args.data_dir,
        apps=apps,
        secret=secret,
        token=token,
        dial_routes=routes,
        forward_routes=forward_routes,
        exit_with_parent=args.exit_with_parent,
        limits=_limits(args),
        fsync=args.fsync,
        forward=args.forward,
        members=members,
        shards=shards,
    )


def _limits(args: argparse.Namespace) -> Limits:
    for flag, value in (("--header-timeout", args.header_timeout), ("--idle-timeout", args.idle_timeout)):
        if not 0 < value <= 3600:  # also refuses NaN
            raise UsageError(f"{flag} must be more than 0 and at most 3600 seconds, not {value}")
    for flag, count in (("--max-connections", args.max_connections), ("--max-in-flight", args.max_in_flight)):
        if not 0 < count <= 1_000_000:
            raise UsageError(f"{flag} must be from 1 to 1000000, not {count}")
    return Limits(header_timeout=args.header_timeout, idle_timeout=args.idle_timeout,
                  max_connections=args.max_connections, max_in_flight=args.max_in_flight)


def _check_http_port(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise CommandError(f"cannot listen for HTTP on {host}:{port}: {exc.strerror or exc}") from None


async def _watch_parent(stop: asyncio.Event) -> None:
    parent = os.getppid()
    while not stop.is_set():
        if os.getppid() != parent:
            log.warning("parent process %d exited; stopping", parent)
            stop.set()
            return
        await asyncio.sleep(_PARENT_POLL_SECONDS)


def _members_of(settings: ServeSettings) -> list[GroupSettings]:
    return settings.members or [GroupSettings(DEFAULT_GROUP, settings.node_id, settings.peers, settings.peer_http,
                                              settings.data_dir)]


async def serve(settings: ServeSettings) -> int:
    """Run the node (one per hosted group) and the HTTP server until SIGTERM or SIGINT; return the exit code."""
    _check_http_port(settings.http_host, settings.http_port)
    specs = load_apps(settings.apps)
    members = _members_of(settings)
    nodes: list[Node] = []
    servers = {}
    try:
        for member in members:
            config = NodeConfig(node_id=member.node_id, peers=member.peers, data_dir=member.data_dir,
                                secret=settings.secret, dial_routes=settings.dial_routes, fsync=settings.fsync)
            node = Node(config, machines_for(specs))
            try:
                await node.start()
            except (EngineStartError, OSError) as exc:
                raise CommandError(str(exc).splitlines()[0]) from None
            nodes.append(node)
            servers[member.group] = Server(
                node, ServerConfig(http_url=settings.http_url, peer_http=member.peer_http,
                                   forward_routes=settings.forward_routes, token=settings.token,
                                   public=not _host_is_loopback(settings.http_host), limits=settings.limits,
                                   forward=settings.forward, group=member.group), specs)
        shards = settings.shards or ShardMap.single(_single_peers(members[0], settings.http_url), members[0].group)
        await _serve_http(settings, GroupHost(servers, shards), nodes)
    finally:
        for node in reversed(nodes):
            await node.stop()
    for node in nodes:
        log.info("%s stopped", node.id)
    return 0


def _single_peers(member: GroupSettings, http_url: str) -> dict[str, str]:
    return {peer: member.peer_http.get(peer, http_url if peer == member.node_id else "") for peer in member.peers}


async def _serve_http(settings: ServeSettings, host: GroupHost, nodes: list[Node]) -> None:
    node = nodes[0]
    runner: web.AppRunner | None = None
    try:
        try:
            runner = await start_site(host, settings.http_host, settings.http_port, settings.limits)
        except OSError as exc:
            raise CommandError(f"cannot listen for HTTP on {settings.http_host}:{settings.http_port}: {exc.strerror or exc}") from None
        if not _host_is_loopback(settings.http_host) and settings.token is None:
            log.warning("%s serves HTTP on %s without --token-file (--insecure-http): anyone who can reach it can write",
                        node.id, settings.http_url)
        for group, server in host.servers.items():
            log.info("%s serving HTTP on %s with apps %s at term %d%s", server.node.id, settings.http_url,
                     ",".join(settings.apps) or "none", server.node.status().term,
                     "" if group == DEFAULT_GROUP else f" for group {group}")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        watcher = asyncio.create_task(_watch_parent(stop)) if settings.exit_with_parent else None
        await stop.wait()
        if watcher is not None:
            watcher.cancel()
        for n in nodes:
            log.info("%s stopping at term %d", n.id, n.status().term)
    finally:
        if runner is not None:
            await runner.cleanup()


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.server").addFilter(QuietParseErrors())
    try:
        with asyncio.Runner(loop_factory=_loop_factory(args.loop)) as runner:
            return runner.run(serve(settings))
    except ConsensusError as exc:  # e.g. an app that fails to load
        raise CommandError(exc.message) from None


def _loop_factory(name: str) -> Any:
    """uvloop's event loop (about a fifth more HTTP throughput on the leader) unless asked not to."""
    if name == "uvloop":
        try:
            import uvloop
        except ImportError:
            log.warning("uvloop is not installed; serving on asyncio's event loop")
            return None
        return uvloop.new_event_loop
    return None


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "serve",
        help="run one node",
        description="Run one raftwork node: a Raft peer port and an HTTP API. Stops cleanly on SIGTERM or Ctrl-C.",
    )
    p.add_argument("--id", metavar="HOST:PORT", help="this node's Raft address (its identity)")
    p.add_argument("--peers", metavar="A[=URL],B[=URL]",
                   help="every member's Raft address, each optionally =its HTTP URL (for forwarding)")
    p.add_argument("--group", action="append", metavar="NAME[=HOST:PORT]",
                   help="NAME: the Raft group --id is a member of; NAME=HOST:PORT (repeatable, with --shards): host "
                        "the member HOST:PORT of group NAME (one engine and Raft port each, data in DATA_DIR/NAME)")
    p.add_argument("--shards", metavar="FILE",
                   help="the static shard map (JSON: every group's members, which keys each holds); see docs/sharding.md")
    p.add_argument("--http", required=True, metavar="HOST:PORT", help="where to serve HTTP")
    p.add_argument("--advertise-http", metavar="URL", help="this node's HTTP URL as others reach it (default http://HTTP)")
    p.add_argument("--data-dir", required=True, metavar="DIR", help="journal and snapshots live here")
    p.add_argument("--apps", default=",".join(DEFAULT_APPS), metavar="A,B", help=f"apps to serve (default {','.join(DEFAULT_APPS)}; available: {', '.join(available_apps())})")
    p.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop",
                   help="the event loop: uvloop (default; asyncio's if uvloop is missing) or asyncio")
    p.add_argument("--forward", choices=["engine", "http"], default="engine",
                   help="how a follower takes writes and linearizable reads to the leader: engine (default: "
                        "over the Raft peer link) or http (relay the HTTP request)")
    p.add_argument("--fsync", choices=["always", "never"], default="always",
                   help="always (default): every entry and vote reaches the disk before it is acknowledged; "
                        "never: survive process crashes only (tests)")
    p.add_argument("--secret-file", metavar="F", help="shared peer secret; required when --id is not a loopback address")
    p.add_argument("--token-file", metavar="F", help="bearer token every mutating HTTP request must carry")
    p.add_argument("--insecure-http", action="store_true",
                   help="serve HTTP beyond loopback without --token-file (membership changes stay refused)")
    defaults = Limits()
    p.add_argument("--header-timeout", type=float, default=defaults.header_timeout, metavar="SECONDS",
                   help=f"close a connection that does not finish a request's headers in time (default {defaults.header_timeout:g})")
    p.add_argument("--idle-timeout", type=float, default=defaults.idle_timeout, metavar="SECONDS",
                   help=f"close an idle keep-alive connection after this long (default {defaults.idle_timeout:g})")
    p.add_argument("--max-connections", type=int, default=defaults.max_connections, metavar="N",
                   help=f"HTTP connections served at once; more get 503 overloaded (default {defaults.max_connections})")
    p.add_argument("--max-in-flight", type=int, default=defaults.max_in_flight, metavar="N",
                   help=f"requests answered at once; more get 503 overloaded (default {defaults.max_in_flight})")
    p.add_argument("--dial-route", action="append", metavar="PEER=HOST:PORT",
                   help="dial PEER at HOST:PORT instead (e.g. through a proxy); repeatable")
    p.add_argument("--forward-route", action="append", metavar="PEER=URL",
                   help="send requests forwarded to PEER to URL instead (e.g. a proxy); clients are still "
                        "told PEER's own URL from --peers; repeatable")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--exit-with-parent", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=run)
