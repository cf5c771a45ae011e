"""``consensus serve``: run one node (Raft peer port + HTTP API) until SIGTERM or SIGINT.

``--peers`` lists every member's Raft address, optionally with its HTTP URL
(``127.0.0.1:7002=http://127.0.0.1:8002``): a follower forwards writes and linearizable reads to
the leader's HTTP URL, so give URLs for every peer. Without one, a follower answers
``not_leader`` with the leader's Raft id and the client finds the leader itself.
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
from consensus.server.listener import Limits, start_site

log = logging.getLogger("consensus.serve")

_ADDRESS = re.compile(r"([A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\]):(\d{1,5})")
_URL = re.compile(r"https?://([A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(:\d{1,5})?/?")
_PARENT_POLL_SECONDS = 0.5


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


def settings_from_args(args: argparse.Namespace) -> ServeSettings:
    """Check every flag; raise ``UsageError`` on the first bad one."""
    parse_address(args.id, "--id")
    peers, peer_http = parse_peers(args.peers)
    if args.id not in peers:
        peers.insert(0, args.id)
    http_host, http_port = parse_address(args.http, "--http")
    # A wildcard bind address is not an address others can use: advertise the peer host instead.
    advertised_host = parse_address(args.id, "--id")[0] if http_host in ("0.0.0.0", "::") else args.http.rsplit(":", 1)[0]
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
        for address in [args.id, *peers]:
            if not is_loopback(address):
                what = "--id" if address == args.id else "the peer"
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
        node_id=args.id,
        peers=peers,
        peer_http=peer_http,
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


async def serve(settings: ServeSettings) -> int:
    """Run the node and its HTTP server until SIGTERM or SIGINT; return the exit code."""
    _check_http_port(settings.http_host, settings.http_port)
    specs = load_apps(settings.apps)
    config = NodeConfig(
        node_id=settings.node_id,
        peers=settings.peers,
        data_dir=settings.data_dir,
        secret=settings.secret,
        dial_routes=settings.dial_routes,
        fsync=settings.fsync,
    )
    node = Node(config, machines_for(specs))
    try:
        await node.start()
    except (EngineStartError, OSError) as exc:
        raise CommandError(str(exc).splitlines()[0]) from None
    server = Server(node, ServerConfig(http_url=settings.http_url, peer_http=settings.peer_http,
                                       forward_routes=settings.forward_routes, token=settings.token,
                                       public=not _host_is_loopback(settings.http_host), limits=settings.limits,
                                       forward=settings.forward), specs)
    runner: web.AppRunner | None = None
    try:
        try:
            runner = await start_site(server, settings.http_host, settings.http_port, settings.limits)
        except OSError as exc:
            raise CommandError(f"cannot listen for HTTP on {settings.http_host}:{settings.http_port}: {exc.strerror or exc}") from None
        if not _host_is_loopback(settings.http_host) and settings.token is None:
            log.warning("%s serves HTTP on %s without --token-file (--insecure-http): anyone who can reach it can write",
                        node.id, settings.http_url)
        log.info("%s serving HTTP on %s with apps %s at term %d", node.id, settings.http_url, ",".join(settings.apps) or "none", node.status().term)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        watcher = asyncio.create_task(_watch_parent(stop)) if settings.exit_with_parent else None
        await stop.wait()
        if watcher is not None:
            watcher.cancel()
        log.info("%s stopping at term %d", node.id, node.status().term)
    finally:
        if runner is not None:
            await runner.cleanup()
        await node.stop()
    log.info("%s stopped", node.id)
    return 0


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
    p.add_argument("--id", required=True, metavar="HOST:PORT", help="this node's Raft address (its identity)")
    p.add_argument("--peers", required=True, metavar="A[=URL],B[=URL]",
                   help="every member's Raft address, each optionally =its HTTP URL (for forwarding)")
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
