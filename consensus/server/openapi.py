"""Build the OpenAPI 3 document of a server from its route declarations."""

from __future__ import annotations

from typing import Any, Sequence

from consensus.server.routing import (
    IDEMPOTENCY_KEY_SCHEMA,
    MIN_TIMEOUT_SECONDS,
    SESSION_HEADER,
    SESSION_SCHEMA,
    TIMEOUT_HEADER,
    Route,
)
from consensus.server.schema import Schema

ERROR_SCHEMA: Schema = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "definite", "leader"],
            "properties": {
                "code": {"type": "string", "description": "the error's code; see the error table of docs/http.md "
                         "(invalid_request, not_found, unauthorized, method_not_allowed, payload_too_large, rejected, "
                         "not_leader, unavailable, overloaded, indeterminate, internal, and the apps' own codes)"},
                "message": {"type": "string"},
                "definite": {"type": "boolean", "description": "true: nothing changed; false: the outcome is unknown"},
                "leader": {"type": "string", "nullable": True, "description": "Raft id of the leader, if known"},
                "leader_url": {"type": "string", "nullable": True, "description": "HTTP base URL of the leader, if known"},
                "detail": {"description": "app-specific detail, e.g. the current value after a failed compare-and-set"},
            },
        }
    },
}

_ERROR_TEXT = {
    400: "invalid request (nothing was submitted)",
    401: "missing or wrong bearer token",
    405: "method not allowed on this route",
    404: "no such route, member or thing",
    409: "rejected by the state machine or the cluster (e.g. compare-and-set mismatch, member already there)",
    413: "body over the size limit",
    503: "no leader or quorum, not the leader, or overloaded (definite: nothing was submitted)",
    504: "submitted, outcome unknown (retry with the same Idempotency-Key)",
}


def anchored(schema: Any) -> Any:
    """Return ``schema`` with every ``pattern`` anchored.

    JSON Schema patterns match anywhere in the string, while the server's validator matches the
    whole string: the document must say what the server does, or a client (or a fuzzer) reading
    it would send values the server refuses.
    """
    if isinstance(schema, list):
        return [anchored(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: anchored(value) for key, value in schema.items()}
    pattern = schema.get("pattern")
    if isinstance(pattern, str) and not (pattern.startswith("^") and pattern.endswith("$")):
        out["pattern"] = f"^(?:{pattern})$"
    return out


def openapi_path(path: str) -> str:
    """Return an aiohttp route path as OpenAPI spells it: ``/v1/kv/{key:.+}`` -> ``/v1/kv/{key}``.

    aiohttp lets a path parameter carry its own regex (the config store's key takes the rest of
    the path); OpenAPI names the parameter only. Braces inside the regex (``{1,5}``) are skipped.
    """
    out: list[str] = []
    i = 0
    while i < len(path):
        if path[i] != "{":
            out.append(path[i])
            i += 1
            continue
        depth, j = 1, i + 1
        while j < len(path) and depth:
            depth += {"{": 1, "}": -1}.get(path[j], 0)
            j += 1
        out.append("{" + path[i + 1:j - 1].split(":", 1)[0] + "}")
        i = j
    return "".join(out)


def _links(route: Route, routes: Sequence[Route]) -> dict[str, Any]:
    """Return the route's links: its own, and from a write to every read of the same resource.

    A read of ``/v1/counters/{name}`` is linked from the writes of ``/v1/counters/{name}`` and of
    ``/v1/counters/{name}/incr``, passing the path parameters on, so a stateful tester (and a
    reader) can follow a write with the read that shows it.
    """
    links: dict[str, Any] = {name: dict(link) for name, link in route.links.items()}
    if not route.mutating:
        return links
    for other in routes:
        same_resource = other.path == route.path or route.path.startswith(other.path + "/")
        if other.method == "GET" and same_resource and other.path_params and set(other.path_params) <= set(route.path_params):
            links.setdefault(other.operation_id, {
                "operationId": other.operation_id,
                "parameters": {name: f"$request.path.{name}" for name in other.path_params},
            })
    return links


def _operation(route: Route, max_timeout: float, routes: Sequence[Route] = (), token_required: bool = False) -> dict[str, Any]:
    params: list[dict[str, Any]] = []
    for name, schema in route.path_params.items():
        params.append({"name": name, "in": "path", "required": True, "schema": anchored(schema)})
    for name, schema in route.query.items():
        params.append({"name": name, "in": "query", "required": False, "schema": anchored(schema)})
    params.append(
        {"name": TIMEOUT_HEADER, "in": "header", "required": False, "description": "seconds to wait for an outcome (default 5)",
         "schema": {"type": "number", "minimum": MIN_TIMEOUT_SECONDS, "maximum": max_timeout}}
    )
    if route.mutating:
        params.append(
            {"name": "Idempotency-Key", "in": "header", "required": False,
             "description": "makes the write exactly-once: a retry with the same key gets the first outcome",
             "schema": anchored(IDEMPOTENCY_KEY_SCHEMA)}
        )
        params.append(
            {"name": SESSION_HEADER, "in": "header", "required": False,
             "description": "CLIENT:SEQ:LOWEST of a client session (POST /v1/clients): the write applies once per "
                            "(client, SEQ); LOWEST is the lowest number the client still awaits",
             "schema": anchored(SESSION_SCHEMA)}
        )
    ok = {"description": "Created" if route.success_status == 201 else "OK", "content": {route.response_type: {"schema": anchored(route.response)}}}
    links = _links(route, routes)
    if links:
        ok["links"] = links
    responses: dict[str, Any] = {str(route.success_status): ok}
    statuses = set(route.errors) | {400, 413}
    if route.mutating:
        statuses.add(401)
    if route.on_leader is not None:
        statuses |= {503, 504} if route.mutating else {503}
    if route.bounded:
        statuses.add(503)  # overloaded: the connection or in-flight cap
    for status in sorted(statuses):
        responses[str(status)] = {
            "description": _ERROR_TEXT.get(status, "error"),
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
    operation: dict[str, Any] = {
        "operationId": route.operation_id,
        "summary": route.summary,
        "tags": [route.tag],
        "parameters": params,
        "responses": responses,
    }
    if route.body is not None:
        operation["requestBody"] = {
            "required": route.body_required,
            "content": {"application/json": {"schema": anchored(route.body)}},
        }
    if route.mutating:
        # Without --token-file a write needs no token ({}: anonymous is allowed).
        operation["security"] = [{"bearer": []}] if token_required else [{"bearer": []}, {}]
    return operation


def build_document(routes: Sequence[Route], title: str = "raftwork node", version: str = "0.1.0",
                   max_timeout: float = 60.0, token_required: bool = False) -> dict[str, Any]:
    """Return the OpenAPI 3.0 document describing ``routes`` (as served: with its token rule and timeout cap)."""
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(openapi_path(route.path), {})[route.method.lower()] = _operation(route, max_timeout, routes, token_required)
    return {
        "openapi": "3.0.3",
        "info": {
            "title": title,
            "version": version,
            "description": "HTTP API of one raftwork node. Any node accepts any request; followers forward writes "
            "and linearizable reads to the leader. Answers carry X-Raft-Node, X-Raft-Leader, X-Raft-Term and "
            "X-Raft-Applied-Index headers.",
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": {"Error": ERROR_SCHEMA},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
