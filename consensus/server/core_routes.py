"""The node's own routes: status, health, metrics, the API document, membership, leadership."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from consensus.errors import InvalidRequest, NotFound, Rejected, Unavailable
from consensus.server.members import MEMBER_ADDRESS_SCHEMA, check_new_member
from consensus.server.metrics import CONTENT_TYPE
from consensus.server.openapi import build_document
from consensus.server.routing import Call, Route, always
from consensus.server.schema import Schema, obj

ADDRESS_SCHEMA: Schema = {
    "type": "string",
    "maxLength": 300,
    "pattern": r"([A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\]):([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])",
    "description": "a Raft peer address, host:port",
}
HTTP_URL_SCHEMA: Schema = {
    "type": "string",
    "maxLength": 300,
    "pattern": r"https?://([A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(:[0-9]{1,5})?/?",
    "description": "an HTTP base URL, e.g. http://127.0.0.1:8004",
}
_PEER_SCHEMA = obj(
    {
        "id": {"type": "string"},
        "connected": {"type": "boolean"},
        "match_index": {"type": "integer", "nullable": True},
        "next_index": {"type": "integer", "nullable": True},
        "http": {"type": "string", "nullable": True},
    }
)
STATUS_SCHEMA = obj(
    {
        "id": {"type": "string"},
        "role": {"type": "string", "enum": ["leader", "follower", "candidate"]},
        "term": {"type": "integer"},
        "leader": {"type": "string", "nullable": True},
        "leader_url": {"type": "string", "nullable": True},
        "http": {"type": "string"},
        "commit_index": {"type": "integer"},
        "last_applied": {"type": "integer"},
        "has_quorum": {"type": "boolean"},
        "log_size": {"type": "integer"},
        "healthy": {"type": "boolean", "description": "false: this node cannot persist; it neither votes nor appends"},
        "problem": {"type": "string", "nullable": True, "description": "why the node is not healthy"},
        "apps": {"type": "array", "items": {"type": "string"}},
        "peers": {"type": "array", "items": _PEER_SCHEMA},
        "state_digest": {"type": "string", "description": "with ?digest=true: a hash of every machine's state at digest_index"},
        "digest_index": {"type": "integer", "description": "with ?digest=true: the applied index state_digest reflects"},
        "group": {"type": "string", "description": "the Raft group this status describes (\"default\" without --group)"},
        "groups": {"type": "array", "items": {"type": "object"},
                   "description": "the status of this process's member of every group it hosts (the same shape)"},
    }
)


def session_group(request: Any, shards: Any) -> str:
    """Client sessions live in one group, the first of the shard map (see ``Server.propose``)."""
    return str(shards.group_names()[0])


def status_body(call: Call) -> dict[str, Any]:
    """Return the status of the request's group, with every hosted group's under "groups"."""
    body = server_status(call.server)
    host = call.server.host
    if host is not None:
        body["groups"] = [server_status(s) for s in host.servers.values()]
    return body


def server_status(server: Any) -> dict[str, Any]:
    """Return one group member's status (``server`` is that group's ``Server``)."""
    status = server.node.status()
    return {
        "group": server.config.group,
        "id": status.id,
        "role": status.role.value,
        "term": status.term,
        "leader": status.leader,
        "leader_url": server.http_of(status.leader),
        "http": server.config.http_url,
        "commit_index": status.commit_index,
        "last_applied": status.last_applied,
        "has_quorum": status.has_quorum,
        "log_size": status.log_size,
        "healthy": status.healthy,
        "problem": status.problem,
        "apps": [app.name for app in server.apps],
        "peers": [
            {
                "id": p.id,
                "connected": p.connected,
                "match_index": p.match_index,
                "next_index": p.next_index,
                "http": server.http_of(p.id),
            }
            for p in status.peers
        ],
    }


async def _status(call: Call) -> Any:
    body = status_body(call)
    if call.query.get("digest") == "true":  # replica agreement checks (chaos): costs a snapshot
        body["digest_index"], body["state_digest"] = await call.node.state_digest()
        host = call.server.host
        for group_body, server in zip(body.get("groups", []), host.servers.values() if host else ()):
            group_body["digest_index"], group_body["state_digest"] = await server.node.state_digest()
    return body


async def _readyz(call: Call) -> Any:
    """Ready when every group this process hosts is (the request's group first)."""
    host = call.server.host
    nodes = [call.node] + ([s.node for s in host.servers.values() if s.node is not call.node] if host else [])
    for node in nodes:
        status = node.status()
        if not status.healthy:
            raise Unavailable(f"{status.id} cannot take part: {status.problem}")
        if status.leader is None:
            raise Unavailable(f"{status.id} knows no leader at term {status.term}")
        if status.last_applied < status.commit_index:
            raise Unavailable(f"{status.id} has applied {status.last_applied} of {status.commit_index} committed entries")
    status = call.node.status()
    return {"ready": True, "leader": status.leader, "last_applied": status.last_applied}


async def _livez(call: Call) -> Any:
    return {"live": True, "id": call.node.id}


async def _metrics(call: Call) -> Any:
    return web.Response(body=call.server.metrics.render(), headers={"Content-Type": CONTENT_TYPE})


async def _openapi(call: Call) -> Any:
    config = call.server.config
    document = build_document(call.server.routes, max_timeout=config.max_timeout, token_required=config.token is not None)
    return web.Response(text=json.dumps(document, indent=1), content_type="application/json")


def _members(call: Call) -> set[str]:
    status = call.node.status()
    return {p.id for p in status.peers} | {status.id}


async def _add_member(call: Call) -> Any:
    address = call.body["id"]
    check_new_member(address, secret=call.node.config.secret, members=_members(call))
    await call.node.add_member(address, timeout=call.remaining())
    if "http" in call.body:
        call.server.config.peer_http[address] = call.body["http"].rstrip("/")
    return {"added": address}


async def _remove_member(call: Call) -> Any:
    address = call.params["id"]
    await call.node.remove_member(address, timeout=call.remaining())
    return {"removed": address}


async def _transfer_leader(call: Call) -> Any:
    to = call.body.get("to")
    members = _members(call)
    # Refuse at once what can never happen, rather than wait out the deadline and say "unknown".
    if to is not None and to not in members:
        raise NotFound(f"{to} is not a member")
    if to == call.node.id and call.node.is_leader():
        return {"leader": to, "leader_url": call.server.http_of(to)}
    if members == {call.node.id}:
        raise Rejected("there is no other member to hand leadership to")
    leader = await call.node.transfer_leadership(to, timeout=call.remaining())
    return {"leader": leader, "leader_url": call.server.http_of(leader)}


def _check_session_group(call: Call) -> None:
    """Refuse a session route sent to another group (X-Raft-Group): sessions live in the first one,
    where every group's writes look their client ids up (``Server.propose``)."""
    host = call.server.host
    if host is not None and call.server.config.group != session_group(None, host.shards):
        raise InvalidRequest(f"client sessions live in group {session_group(None, host.shards)}, "
                             f"not {call.server.config.group}: send this without X-Raft-Group")


async def _open_client(call: Call) -> Any:
    _check_session_group(call)
    client_id = await call.node.register_client(timeout=call.remaining())
    return {"client_id": client_id, "session_ttl_ms": call.node.limits()["session_ttl"] // 10**6}


async def _close_client(call: Call) -> Any:
    _check_session_group(call)
    if not await call.node.close_client(int(call.params["id"]), timeout=call.remaining()):
        raise NotFound(f"no client session {call.params['id']}")
    return {"closed": int(call.params["id"])}


def core_routes() -> list[Route]:
    """Return the routes every node serves, whatever its apps."""
    return [
        Route("GET", "/v1/status", _status, "getStatus", "this node's Raft state and its view of its peers",
              query={"digest": {"type": "string", "enum": ["true", "false"],
                                "description": "true: add state_digest and digest_index (hashes the state)"}},
              response=STATUS_SCHEMA),
        Route("GET", "/readyz", _readyz, "getReady", "200 when this node knows a leader and has applied all it knows committed",
              tag="health", errors=(400, 503)),
        Route("GET", "/livez", _livez, "getLive", "200 while the process serves HTTP", tag="health", bounded=False),
        Route("GET", "/metrics", _metrics, "getMetrics", "Prometheus metrics", tag="health",
              response={"type": "string"}, response_type="text/plain", bounded=False),
        Route("GET", "/openapi.json", _openapi, "getOpenapi", "this document", tag="health"),
        Route("POST", "/v1/members", _add_member, "addMember", "add a member (one change at a time)",
              tag="cluster", body=obj({"id": MEMBER_ADDRESS_SCHEMA, "http": HTTP_URL_SCHEMA}, required=("id",)),
              response=obj({"added": {"type": "string"}}), mutating=True, membership=True, on_leader=always,
              leader_only=True, errors=(400, 409),
              links={"removeMember": {"operationId": "removeMember", "parameters": {"id": "$response.body#/added"}}}),
        Route("DELETE", "/v1/members/{id}", _remove_member, "removeMember", "remove a member (one change at a time)",
              tag="cluster", path_params={"id": ADDRESS_SCHEMA}, response=obj({"removed": {"type": "string"}}),
              mutating=True, membership=True, on_leader=always, leader_only=True, errors=(400, 404, 409)),
        Route("POST", "/v1/clients", _open_client, "openClientSession",
              "register a client session: writes carrying X-Raft-Session apply once per (client, number)",
              tag="cluster", body_required=False,
              response=obj({"client_id": {"type": "integer"}, "session_ttl_ms": {"type": "integer"}},
                           required=("client_id", "session_ttl_ms")),
              mutating=True, on_leader=always, errors=(400,), success_status=201, group_of=session_group,
              links={"closeClientSession": {"operationId": "closeClientSession",
                                            "parameters": {"id": "$response.body#/client_id"}}}),
        Route("DELETE", "/v1/clients/{id}", _close_client, "closeClientSession",
              "drop a client session and the outcomes it keeps", tag="cluster",
              path_params={"id": {"type": "string", "pattern": "[1-9][0-9]{0,17}", "maxLength": 18}},
              response=obj({"closed": {"type": "integer"}}), mutating=True, on_leader=always, errors=(400, 404),
              group_of=session_group),
        Route("POST", "/v1/leader/transfer", _transfer_leader, "transferLeader",
              "hand leadership to a member (or the most caught-up follower)", tag="cluster",
              body=obj({"to": ADDRESS_SCHEMA}), body_required=False,
              response=obj({"leader": {"type": "string"}, "leader_url": {"type": "string", "nullable": True}}),
              mutating=True, on_leader=always, leader_only=True, errors=(400, 404, 409)),
    ]
