"""Toxiproxy's HTTP API on aiohttp: gorilla/mux-style routing, handlers and Go-shaped responses.

Routing is done here rather than by aiohttp's router so that the edge cases match upstream:
the decoded path is split on ``/`` (so a name containing ``/`` is never addressable), an
unknown path gets ``404 page not found``, a known path with another method gets an empty 405
(HEAD included), and only routed requests get a request id and the browser guard.
"""

from __future__ import annotations

import base64
import itertools
import os
import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from aiohttp import web

from chaos.toxiproxy import _gojson
from chaos.toxiproxy._gojson import BadJSON, decode_body, decode_fields, dumps
from chaos.toxiproxy.proxy import PROXY_NOT_FOUND, TOXIC_NOT_FOUND, ApiError, Proxy

if TYPE_CHECKING:
    from chaos.toxiproxy.server import ToxiproxyServer

VERSION = "2.12.0"
TEXT_PLAIN = "text/plain; charset=utf-8"
PROXY_FIELDS = {"name": "string", "listen": "string", "upstream": "string", "enabled": "bool"}

Handler = Callable[["ToxiproxyServer", web.Request, dict[str, str]], Awaitable[web.StreamResponse]]

_counter = itertools.count(int.from_bytes(os.urandom(3), "big"))
_machine = os.urandom(3)


def request_id() -> str:
    """Return a 20-character base32hex id shaped like the xid upstream puts in X-Toxiproxy-Request-Id."""
    raw = (
        int(time.time()).to_bytes(4, "big")
        + _machine
        + (os.getpid() & 0xFFFF).to_bytes(2, "big")
        + (next(_counter) & 0xFFFFFF).to_bytes(3, "big")
    )
    return base64.b32hexencode(raw).decode("ascii").lower()[:20]


def json_response(body: str, status: int = 200) -> web.Response:
    return web.Response(body=body.encode(), status=status, headers={"Content-Type": "application/json"})


def error_response(message: str, status: int) -> web.Response:
    """Build the response Go's http.Error gives for an ApiError."""
    body = dumps({"error": message, "status": status}) + "\n"
    return web.Response(
        body=body.encode(),
        status=status,
        headers={"Content-Type": TEXT_PLAIN, "X-Content-Type-Options": "nosniff"},
    )


def bad_body(exc: BadJSON) -> ApiError:
    return ApiError(f"bad request body: {exc}", 400)


def get_proxy(server: "ToxiproxyServer", name: str) -> Proxy:
    proxy = server.proxies.get(name)
    if proxy is None:
        raise ApiError(*PROXY_NOT_FOUND)
    return proxy


# Handlers. Each raises ApiError for an error response.

async def version(server: "ToxiproxyServer", request: web.Request, args: dict[str, str]) -> web.Response:
    body = f'{{"version": "{VERSION}"}}\n'.encode()
    return web.Response(body=body, headers={"Content-Type": "application/json;charset=utf-8"})


async def proxy_index(server: "ToxiproxyServer", request: web.Request, args: dict[str, str]) -> web.Response:
    items = ",".join(f"{dumps(name)}:{server.proxies[name].to_json()}" for name in sorted(server.proxies))
    return json_response("{" + items + "}")


async def proxy_create(server: "ToxiproxyServer", request: web.Request, args: dict[str, str]) -> web.Response:
    try:
        fields = decode_fields(decode_body(await request.read()), "Proxy", PROXY_FIELDS, "proxy.Proxy")
    except BadJSON as exc:
        raise bad_body(exc) from None
    name, upstream = fields.get("name", ""), fields.get("upstream", "")
    if not name:
        raise ApiError("missing required field: name", 400)
    if not upstream:
        raise ApiError("missing required field: upstream", 400)
    proxy = await server.create_proxy(name, fields.get("listen", ""), upstream, fields.get("enabled", True))
    return json_response(proxy.to_json(), 201)


async def populate(server: "ToxiproxyServer", request: web.Request, args: dict[str, str]) -> web.Response:
    proxies: list[Proxy] = []
    error: ApiError | None = None
    try:
        value = decode_body(await request.read())
        if not isinstance(value, list):
            raise BadJSON(f"json: cannot unmarshal {_gojson.go_kind(value)} into Go value of type []proxy.Proxy")
        entries = [decode_fields(item, "Proxy", PROXY_FIELDS) for item in value]
        for i, entry in enumerate(entries, 1):
            for key in ("name", "upstream"):
                if not entry.get(key):
                    raise ApiError(f"missing required field: {key} at proxy {i}", 400)
        proxies, error = await server.populate(entries)
    except BadJSON as exc:
        error = bad_body(exc)
    except ApiError as exc:
        error = exc
    listed = "[" + ",".join(p.to_json() for p in proxies) + "]" if proxies else "null"
    if error is None:
        return json_response(f'{{"proxies":{listed}}}', 201)
    head = dumps({"error": error.message, "status": error.status})[:-1]
    return json_response(f'{head},"proxies":{listed}}}', error.status)


async def reset(server: "ToxiproxyServer", request: web.Request, args: dict[str, str]) -> web.Response:
    await server.reset()
    return web.Response(status=204)


async def metrics(server: "ToxiproxyServer", request: web.Request, args: dict[str, str]) -> web.Response:
    assert server.metrics is not None
    from chaos.toxiproxy.metrics import CONTENT_TYPE

    return web.Response(body=server.metrics.render(), headers={"Content-Type": CONTENT_TYPE})


async def proxy_show(server: "ToxiproxyServer", request: web.Request, args: dict[str, str]) -> web.Response:
    return json_response(get_proxy(server, args["proxy"]).to_json())


async def proxy_update(server: "ToxiproxyServer", request: web.Request, args: dict[str, str]) -> web.Response:
    proxy = get_proxy(server, args["proxy"])
    try:
        fields = decode_fields(decode_body(await request.read()), "Proxy", PROXY_FIELDS, "proxy.Proxy")
    except BadJSON as exc:
        raise bad_body(exc) from None
    await server.update_proxy(
        proxy,
        fields.get("listen", proxy.listen),
        fields.get("upstream", proxy.upstream),
        fields.get("enabled", proxy.enabled),
    )
    return json_response(proxy.to_json())


async def proxy_delete(server: "ToxiproxyServer", request: web.Request, args: dict[str, str]) -> web.Response:
    await server.delete_proxy(args["proxy"])
    return web.Response(status=204)


async def toxic_index(server: "ToxiproxyServer", request: web.Request, args: dict[str, str]) -> web.Response:
    proxy = get_proxy(server, args["proxy"])
    return json_response("[" + ",".join(t.to_json() for t in proxy.toxics()) + "]")


async def toxic_create(server: "ToxiproxyServer", request: web.Request, args: dict[str, str]) -> web.Response:
    proxy = get_proxy(server, args["proxy"])
    toxic = server.add_toxic_json(proxy, await request.read())
    return json_response(toxic.to_json())


async def toxic_show(server: "ToxiproxyServer", request: web.Request, args: dict[str, str]) -> web.Response:
    toxic = get_proxy(server, args["proxy"]).find_toxic(args["toxic"])
    if toxic is None:
        raise ApiError(*TOXIC_NOT_FOUND)
    return json_response(toxic.to_json())


async def toxic_update(server: "ToxiproxyServer", request: web.Request, args: dict[str, str]) -> web.Response:
    proxy = get_proxy(server, args["proxy"])
    toxic = server.update_toxic_json(proxy, args["toxic"], await request.read())
    return json_response(toxic.to_json())


async def toxic_delete(server: "ToxiproxyServer", request: web.Request, args: dict[str, str]) -> web.Response:
    proxy = get_proxy(server, args["proxy"])
    toxic = proxy.find_toxic(args["toxic"])
    if toxic is None:
        raise ApiError(*TOXIC_NOT_FOUND)
    proxy.remove_toxic(toxic)
    return web.Response(status=204)


# Routing

ROUTES: list[tuple[tuple[str, ...], dict[str, Handler]]] = [
    (("reset",), {"POST": reset}),
    (("proxies",), {"GET": proxy_index, "POST": proxy_create}),
    (("populate",), {"POST": populate}),
    (("proxies", "{proxy}"), {"GET": proxy_show, "POST": proxy_update, "PATCH": proxy_update, "DELETE": proxy_delete}),
    (("proxies", "{proxy}", "toxics"), {"GET": toxic_index, "POST": toxic_create}),
    (
        ("proxies", "{proxy}", "toxics", "{toxic}"),
        {"GET": toxic_show, "POST": toxic_update, "PATCH": toxic_update, "DELETE": toxic_delete},
    ),
    (("version",), {"GET": version}),
]
ANY_METHOD = "*"
METRICS_ROUTE: tuple[tuple[str, ...], dict[str, Handler]] = (("metrics",), {ANY_METHOD: metrics})


def match(routes: list[tuple[tuple[str, ...], dict[str, Handler]]], method: str,
          path: str) -> tuple[Handler | None, dict[str, str], bool]:
    """Return (handler, path variables, path_matched) for a decoded path, as gorilla/mux matches."""
    if not path.startswith("/"):
        return None, {}, False
    segments = path[1:].split("/")
    path_matched = False
    for pattern, methods in routes:
        if len(pattern) != len(segments):
            continue
        args: dict[str, str] = {}
        for want, got in zip(pattern, segments):
            if want.startswith("{"):
                if not got:
                    break
                args[want[1:-1]] = got
            elif want != got:
                break
        else:
            handler = methods.get(method) or methods.get(ANY_METHOD)
            if handler is not None:
                return handler, args, True
            path_matched = True
    return None, {}, path_matched


def build_app(server: "ToxiproxyServer") -> web.Application:
    """Return the aiohttp application serving ``server``'s API."""
    routes = ROUTES + ([METRICS_ROUTE] if server.metrics is not None else [])

    async def dispatch(request: web.Request) -> web.StreamResponse:
        handler, args, path_matched = match(routes, request.method, request.path)
        if handler is None:
            if path_matched:
                return web.Response(status=405)
            return web.Response(
                body=b"404 page not found\n",
                status=404,
                headers={"Content-Type": TEXT_PLAIN, "X-Content-Type-Options": "nosniff"},
            )
        rid = request_id()
        if request.headers.get("User-Agent", "").startswith("Mozilla/"):
            response: web.StreamResponse = web.Response(
                body=b"User agent not allowed\n",
                status=403,
                headers={"Content-Type": TEXT_PLAIN, "X-Content-Type-Options": "nosniff"},
            )
        else:
            try:
                response = await handler(server, request, args)
            except ApiError as exc:
                response = error_response(exc.message, exc.status)
        response.headers["X-Toxiproxy-Request-Id"] = rid
        return response

    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", dispatch)
    return app


def parse_toxic_body(body: bytes) -> tuple[Any, dict[str, Any]]:
    """Decode a toxic create body: return (the raw JSON value, the wrapper fields that were set)."""
    value = decode_body(body)
    fields = decode_fields(
        value,
        "ToxicWrapper",
        {"name": "string", "type": "string", "stream": "string", "toxicity": "float32", "attributes": "any"},
        "toxics.ToxicWrapper",
    )
    return value, fields
