"""Proxies: a listener, its live connections and its toxic chains, with Toxiproxy's lifecycle rules."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import random
import socket
from typing import TYPE_CHECKING, Any, Callable

from chaos.toxiproxy._gojson import dumps
from chaos.toxiproxy.link import ClientProtocol, Connection, UpstreamProtocol
from chaos.toxiproxy.toxics import Toxic

if TYPE_CHECKING:
    from chaos.toxiproxy.metrics import Metrics

log = logging.getLogger("chaos.toxiproxy")

__all__ = ["ApiError", "Proxy", "AddressError", "split_host_port", "format_addr"]


class ApiError(Exception):
    """An error the HTTP API reports as ``{"error": message, "status": status}``."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


PROXY_NOT_FOUND = ("proxy not found", 404)
PROXY_EXISTS = ("proxy already exists", 409)
TOXIC_NOT_FOUND = ("toxic not found", 404)
TOXIC_EXISTS = ("toxic already exists", 409)


class AddressError(ValueError):
    """A listen or upstream address Go's net package would reject; the text is Go's."""


def split_host_port(addr: str) -> tuple[str, int]:
    """Split ``host:port`` as Go's net.SplitHostPort does (``[v6]:port`` too); port must be numeric."""
    if addr.startswith("["):
        end = addr.find("]")
        if end < 0:
            raise AddressError(f"address {addr}: missing ']' in address")
        host, rest = addr[1:end], addr[end + 1 :]
        if not rest.startswith(":"):
            raise AddressError(f"address {addr}: missing port in address")
        port_text = rest[1:]
    else:
        if ":" not in addr:
            raise AddressError(f"address {addr}: missing port in address")
        host, port_text = addr.rsplit(":", 1)
        if ":" in host:
            raise AddressError(f"address {addr}: too many colons in address")
    if port_text == "":
        port = 0
    elif port_text.isdigit() and int(port_text) <= 65535:
        port = int(port_text)
    else:
        raise AddressError(f"address {addr}: invalid port")
    return host, port


def format_addr(host: str, port: int) -> str:
    """Format an address as Go's TCPAddr.String() does."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def resolve_listen(addr: str) -> tuple[socket.AddressFamily, str, int, str]:
    """Resolve a listen address to (family, host, port, Go's resolved string); '' host means all interfaces."""
    if addr == "":
        host, port = "", 0
    else:
        host, port = split_host_port(addr)
    if host == "":
        return (socket.AF_INET6 if socket.has_ipv6 else socket.AF_INET), "", port, f":{port}"
    try:
        ip = ipaddress.ip_address(host.split("%")[0])
        family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
        return family, host, port, format_addr(host, port)
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise AddressError(f"lookup {host}: no such host") from None
    infos.sort(key=lambda info: info[0] != socket.AF_INET)  # Go prefers IPv4
    family, _, _, _, sockaddr = infos[0]
    address = str(sockaddr[0])
    return family, address, port, format_addr(address, port)


def bind_listener(addr: str) -> tuple[socket.socket, str]:
    """Bind and listen on ``addr``; return the socket and the bound address as Go reports it."""
    try:
        family, host, port, _ = resolve_listen(addr)
    except AddressError as exc:
        raise ApiError(f"listen tcp: {exc}", 500) from None
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and host == "":
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((host or ("::" if family == socket.AF_INET6 else "0.0.0.0"), port))
        sock.listen(1024)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        reason = reason[:1].lower() + reason[1:]
        raise ApiError(f"listen tcp {format_addr(host, port)}: bind: {reason}", 500) from None
    bound = sock.getsockname()
    return sock, format_addr(bound[0], bound[1])


class Proxy:
    """One proxy: listen address, upstream, enabled state, toxic chains and live connections."""

    def __init__(self, name: str, listen: str, upstream: str, *, rng: random.Random,
                 dial_timeout: float, metrics: "Metrics | None" = None) -> None:
        self.name = name
        self.listen = listen
        self.upstream = upstream
        self.enabled = False
        self.rng = rng
        self.dial_timeout = dial_timeout
        self.metrics = metrics
        self.chains: dict[str, list[Toxic]] = {"upstream": [], "downstream": []}
        self.connections: set[Connection] = set()
        self._pending: set[ClientProtocol] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._server: asyncio.AbstractServer | None = None
        self._next_id = 0

    # JSON
    def toxics(self) -> list[Toxic]:
        """Return upstream toxics in chain order, then downstream ones."""
        return self.chains["upstream"] + self.chains["downstream"]

    def to_json(self) -> str:
        toxics = ",".join(t.to_json() for t in self.toxics())
        return (
            f'{{"name":{dumps(self.name)},"listen":{dumps(self.listen)},"upstream":{dumps(self.upstream)},'
            f'"enabled":{"true" if self.enabled else "false"},"Logger":{{}},"toxics":[{toxics}]}}'
        )

    # Lifecycle
    async def start(self) -> None:
        """Listen on ``self.listen``; raise ApiError(500) with Go's text on failure. No-op if started."""
        if self.enabled:
            return
        sock, bound = bind_listener(self.listen)
        try:
            loop = asyncio.get_running_loop()
            self._server = await loop.create_server(lambda: ClientProtocol(self), sock=sock, backlog=1024)
        except BaseException:
            sock.close()
            raise
        self.listen = bound if self.listen != "" else f"[::]:{bound.rsplit(':', 1)[1]}"
        self.enabled = True
        log.info("proxy %s started listening on %s for %s", self.name, self.listen, self.upstream)

    def stop(self) -> None:
        """Close the listener and every connection, dropping data held in toxics. No-op if stopped."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for client in list(self._pending):
            if client.transport is not None:
                client.transport.abort()
            if client.dial is not None:
                client.dial.cancel()
        self._pending.clear()
        for conn in list(self.connections):
            conn.close()
        if self.enabled:
            log.info("proxy %s stopped", self.name)
        self.enabled = False

    # Data plane callbacks
    def accepted(self, client: ClientProtocol) -> None:
        self._pending.add(client)
        client.dial = asyncio.get_running_loop().create_task(self._dial(client))
        self.track_task(client.dial)

    async def _dial(self, client: ClientProtocol) -> None:
        loop = asyncio.get_running_loop()
        upstream: UpstreamProtocol | None = None
        try:
            host, port = split_host_port(self.upstream)
            async with asyncio.timeout(self.dial_timeout):
                # Go dials the local system for an empty host (":port").
                _, upstream = await loop.create_connection(UpstreamProtocol, host or "localhost", port)
        except (OSError, AddressError, TimeoutError) as exc:
            log.info("proxy %s could not dial upstream %s: %s", self.name, self.upstream, exc)
            if client.transport is not None:
                client.transport.close()
            return
        finally:
            self._pending.discard(client)
            if client.dial is not None:
                self.forget_task(client.dial)
        assert upstream is not None and upstream.transport is not None
        if client.lost or client.transport is None or client.transport.is_closing() or not self.enabled:
            upstream.transport.close()
            if client.transport is not None:
                client.transport.close()
            return
        self._next_id += 1
        conn = Connection(self, self._next_id, client, upstream)
        self.connections.add(conn)
        conn.start(list(self.chains["upstream"]), list(self.chains["downstream"]))

    def connection_closed(self, conn: Connection) -> None:
        self.connections.discard(conn)
        if self.metrics is not None:
            for link in (conn.up, conn.down):
                self.metrics.record(self, link.direction, link.received, link.sent)

    def track_task(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def forget_task(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)

    # Toxics
    def find_toxic(self, name: str) -> Toxic | None:
        return next((t for t in self.toxics() if t.name == name), None)

    def add_toxic(self, toxic: Toxic) -> None:
        self.chains[toxic.direction].append(toxic)
        self._each_link(toxic.direction, lambda link: link.add_toxic(toxic))

    def update_toxic(self, toxic: Toxic) -> None:
        self._each_link(toxic.direction, lambda link: link.update_toxic(toxic))

    def remove_toxic(self, toxic: Toxic) -> None:
        self.chains[toxic.direction].remove(toxic)
        self._each_link(toxic.direction, lambda link: link.remove_toxic(toxic))

    def remove_all_toxics(self) -> None:
        for toxic in reversed(self.toxics()):
            self.remove_toxic(toxic)

    def _each_link(self, direction: str, action: Callable[[Any], None]) -> None:
        for conn in list(self.connections):
            if not conn.closed:
                action(conn.link(direction))
