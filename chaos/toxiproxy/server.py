"""The embedded Toxiproxy server: proxy collection, API server, and a background-thread runner.

In an event loop::

    server = ToxiproxyServer("127.0.0.1", port=0)
    await server.start()
    ...  # server.url is "http://127.0.0.1:<bound port>"
    await server.stop()

From synchronous code (the chaos harness, toxiproxy-python users)::

    with BackgroundServer() as server:   # own thread, own event loop, port 0 by default
        Toxiproxy().update_api_consumer(server.host, server.port)
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
from typing import Any, Iterable

from aiohttp import web

from chaos.toxiproxy import api
from chaos.toxiproxy._gojson import BadJSON, decode_body, decode_fields, to_float32
from chaos.toxiproxy.metrics import Metrics
from chaos.toxiproxy.proxy import (
    PROXY_EXISTS,
    PROXY_NOT_FOUND,
    TOXIC_EXISTS,
    TOXIC_NOT_FOUND,
    AddressError,
    ApiError,
    Proxy,
    bind_listener,
    format_addr,
    resolve_listen,
)
from chaos.toxiproxy.toxics import TOXIC_TYPES, InvalidAttribute, Toxic, ToxicType

__all__ = ["ToxiproxyServer", "BackgroundServer", "DEFAULT_DIAL_TIMEOUT"]

log = logging.getLogger("chaos.toxiproxy")

DEFAULT_DIAL_TIMEOUT = 10.0  # seconds; upstream has none, so a black-holed upstream stalls accepts forever


def _decode_attributes(toxic_type: ToxicType, value: Any, current: dict[str, int]) -> dict[str, int]:
    """Decode attributes over ``current`` (partial update) and apply our crash guards."""
    decoded = decode_fields(
        value,
        f"{toxic_type.go_struct}.attributes",
        toxic_type.fields,
        f"toxics.{toxic_type.go_struct}",
    )
    attributes = {**current, **decoded}
    try:
        toxic_type.validate(attributes)
    except InvalidAttribute as exc:
        raise ApiError(f"invalid attribute: {exc}", 400) from None
    return attributes


class ToxiproxyServer:
    """A Toxiproxy v2.12-compatible server running in the current event loop."""

    def __init__(self, host: str = "127.0.0.1", port: int = 8474, *, proxy_metrics: bool = False,
                 runtime_metrics: bool = False, seed: int | None = None,
                 dial_timeout: float = DEFAULT_DIAL_TIMEOUT) -> None:
        self.host = host
        self.port = port
        self.dial_timeout = dial_timeout
        self.rng = random.Random(seed)
        self.metrics = Metrics(proxy_metrics=proxy_metrics, runtime_metrics=runtime_metrics) \
            if proxy_metrics or runtime_metrics else None
        self.proxies: dict[str, Proxy] = {}
        self._lock = asyncio.Lock()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        """Serve the API; with port 0, ``self.port`` becomes the bound port. Raises OSError if it cannot bind."""
        try:
            sock, bound = bind_listener(format_addr(self.host, self.port))
        except ApiError as exc:
            raise OSError(exc.message) from None
        self.port = int(bound.rsplit(":", 1)[1])
        runner = web.AppRunner(api.build_app(self), access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        site = web.SockSite(runner, sock)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        log.info("toxiproxy API listening on %s", self.url)

    async def stop(self) -> None:
        """Stop every proxy (closing its connections) and the API server."""
        for proxy in self.proxies.values():
            proxy.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        log.info("toxiproxy API on %s stopped", self.url)

    def _new_proxy(self, name: str, listen: str, upstream: str) -> Proxy:
        return Proxy(name, listen, upstream, rng=self.rng, dial_timeout=self.dial_timeout, metrics=self.metrics)

    # Proxy collection (the API's semantics; also usable in-process)
    async def create_proxy(self, name: str, listen: str, upstream: str, enabled: bool = True) -> Proxy:
        """Create a proxy, listening at once if enabled; 409 if the name exists, 500 if it cannot listen."""
        async with self._lock:
            if name in self.proxies:
                raise ApiError(*PROXY_EXISTS)
            proxy = self._new_proxy(name, listen, upstream)
            if enabled:
                await proxy.start()
            self.proxies[name] = proxy
            return proxy

    async def update_proxy(self, proxy: Proxy, listen: str, upstream: str, enabled: bool) -> None:
        """Apply Toxiproxy's Proxy.Update: restart on a new address or upstream, then apply ``enabled``."""
        async with self._lock:
            try:
                resolved = resolve_listen(listen)[3]
            except AddressError as exc:
                raise ApiError(str(exc), 500) from None
            if proxy.listen != resolved or proxy.upstream != upstream:
                proxy.stop()
                proxy.listen, proxy.upstream = listen, upstream
            if enabled and not proxy.enabled:
                await proxy.start()
            elif not enabled and proxy.enabled:
                proxy.stop()

    async def delete_proxy(self, name: str) -> None:
        async with self._lock:
            proxy = self.proxies.pop(name, None)
            if proxy is None:
                raise ApiError(*PROXY_NOT_FOUND)
            proxy.stop()

    async def populate(self, entries: Iterable[dict[str, Any]]) -> tuple[list[Proxy], ApiError | None]:
        """Add or replace proxies in order; return those processed and the error that stopped it, if any.

        An existing proxy with the same listen and upstream is kept untouched (toxics, connections
        and enabled state) and is what the response lists.
        """
        done: list[Proxy] = []
        async with self._lock:
            for entry in entries:
                name, listen, upstream = entry["name"], entry.get("listen", ""), entry["upstream"]
                existing = self.proxies.get(name)
                if existing is not None and existing.listen == listen and existing.upstream == upstream:
                    done.append(existing)
                    continue
                if existing is not None:
                    existing.stop()
                proxy = self._new_proxy(name, listen, upstream)
                if entry.get("enabled", True):
                    try:
                        await proxy.start()
                    except ApiError as exc:
                        return done, exc
                self.proxies[name] = proxy
                done.append(proxy)
        return done, None

    async def reset(self) -> None:
        """Enable every proxy and remove every toxic (a removed timeout toxic closes its connections)."""
        async with self._lock:
            for proxy in list(self.proxies.values()):
                await proxy.start()
                proxy.remove_all_toxics()

    # Toxics
    def add_toxic_json(self, proxy: Proxy, body: bytes) -> Toxic:
        """Create a toxic from a request body, with upstream's defaults, naming and order of checks."""
        try:
            value, fields = api.parse_toxic_body(body)
        except BadJSON as exc:
            raise api.bad_body(exc) from None
        attributes_value = fields.get("attributes")
        if attributes_value is not None and not isinstance(attributes_value, dict):
            kind = "array" if isinstance(attributes_value, list) else api._gojson.go_kind(attributes_value)
            raise ApiError(f"bad request body: json: cannot unmarshal {kind} into Go struct field "
                           "ToxicWrapper.attributes of type toxics.NoopToxic", 400)
        stream = fields.get("stream", "downstream")
        if stream.lower() not in ("upstream", "downstream"):
            raise ApiError("stream was invalid, can be either upstream or downstream", 400)
        type_name = fields.get("type", "")
        name = fields.get("name") or f"{type_name}_{stream}"
        toxic_type = TOXIC_TYPES.get(type_name)
        if toxic_type is None:
            raise ApiError("invalid toxic type", 400)
        if proxy.find_toxic(name) is not None:
            raise ApiError(*TOXIC_EXISTS)
        try:
            attributes = _decode_attributes(toxic_type, attributes_value, {k: 0 for k in toxic_type.fields})
        except BadJSON as exc:
            raise api.bad_body(exc) from None
        toxic = Toxic(name, toxic_type, stream, stream.lower(), to_float32(fields.get("toxicity", 1.0)), attributes)
        proxy.add_toxic(toxic)
        return toxic

    def update_toxic_json(self, proxy: Proxy, name: str, body: bytes) -> Toxic:
        """Update a toxic's attributes (partially) and toxicity; name, type and stream are ignored."""
        toxic = proxy.find_toxic(name)
        if toxic is None:
            raise ApiError(*TOXIC_NOT_FOUND)
        try:
            fields = decode_fields(decode_body(body), "struct", {"attributes": "any", "toxicity": "float32"},
                                   "struct { Attributes interface {}; Toxicity float32 }")
            attributes = _decode_attributes(toxic.type, fields.get("attributes"), toxic.attributes)
        except BadJSON as exc:
            raise api.bad_body(exc) from None
        toxic.attributes = attributes
        toxic.toxicity = to_float32(fields.get("toxicity", toxic.toxicity))
        proxy.update_toxic(toxic)
        return toxic


class BackgroundServer:
    """Run a :class:`ToxiproxyServer` in a thread with its own event loop, for synchronous callers.

    Use as a context manager, or call :meth:`start` and :meth:`stop` (always in a ``finally``).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, **options: Any) -> None:
        self.server = ToxiproxyServer(host, port, **options)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def host(self) -> str:
        return self.server.host

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def url(self) -> str:
        return self.server.url

    def start(self, timeout: float = 10.0) -> "BackgroundServer":
        """Start the thread and wait until the API listens; re-raise a start failure."""
        self._thread = threading.Thread(target=self._run, name=f"toxiproxy-{self.server.port}", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("toxiproxy server did not start in time")
        if self._error is not None:
            self._thread.join(timeout)
            raise self._error
        return self

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        try:
            await self.server.start()
        except BaseException as exc:  # reported to start()'s caller
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            await self.server.stop()

    def client(self, timeout: float = 5.0) -> Any:
        """Return a :class:`chaos.toxiproxy.client.Toxiproxy` for this server (close it when done)."""
        from chaos.toxiproxy.client import Toxiproxy

        return Toxiproxy(self.url, timeout=timeout)

    def call(self, coro: Any, timeout: float = 10.0) -> Any:
        """Run a coroutine on the server's loop (e.g. ``server.call(s.server.reset())``) and return its result."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server and join its thread."""
        if self._thread is None:
            return
        if self._loop is not None and self._stopping is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError("toxiproxy server thread did not stop in time")
        self._thread = None

    def __enter__(self) -> "BackgroundServer":
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()
