"""The client's retry rules, against scripted HTTP servers on loopback: one idempotency key per
logical request, leader hints followed, definite and indefinite outcomes kept apart (sessions off:
the scripted servers do not speak them; tests/integration/test_client_sessions.py does)."""

from __future__ import annotations

import json

import pytest
from aiohttp import web

from consensus.client import Client
from consensus.errors import Indeterminate, InvalidRequest, Rejected, Unavailable
from consensus.testing import free_ports


class Scripted:
    """An HTTP endpoint that answers each request with the next scripted (status, body, headers)."""

    def __init__(self, script):
        self.script = list(script)
        self.seen = []
        self.runner = None
        self.url = ""

    async def handle(self, request):
        self.seen.append({"path": request.path, "key": request.headers.get("Idempotency-Key"),
                          "auth": request.headers.get("Authorization"), "timeout": request.headers.get("X-Request-Timeout")})
        status, body, headers = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        return web.Response(status=status, text=json.dumps(body), content_type="application/json", headers=headers)

    async def start(self):
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
        return self

    async def stop(self):
        await self.runner.cleanup()


def error(code, definite=True, leader_url=None, status=503, detail=None):
    body = {"error": {"code": code, "message": code, "definite": definite, "leader": None, "leader_url": leader_url}}
    if detail is not None:
        body["error"]["detail"] = detail
    return status, body, {}


OK = (200, {"name": "a", "value": 1}, {})


@pytest.fixture
async def servers():
    started = []

    async def make(*script):
        server = await Scripted(script).start()
        started.append(server)
        return server

    yield make
    for server in started:
        await server.stop()


async def test_a_write_keeps_one_idempotency_key_across_retries(servers):
    server = await servers(error("indeterminate", definite=False, status=504), error("unavailable"), OK)
    async with Client([server.url], timeout=5, sessions=False) as client:
        response = await client.request("POST", "/v1/counters/a/incr", body={"by": 1}, write=True)
    assert response.body == {"name": "a", "value": 1}
    keys = [s["key"] for s in server.seen]
    assert len(keys) == 3 and keys[0] and len(set(keys)) == 1
    assert all(0 < float(s["timeout"]) <= 5 for s in server.seen)


async def test_a_not_leader_hint_sends_the_retry_to_the_leader(servers):
    leader = await servers(OK)
    follower = await servers(error("not_leader", leader_url=leader.url))
    async with Client([follower.url], timeout=5, sessions=False) as client:
        await client.request("POST", "/v1/counters/a/incr", body={"by": 1}, write=True)
        assert client.leader == leader.url
        await client.request("POST", "/v1/counters/a/incr", body={"by": 1}, write=True)
    assert len(follower.seen) == 1 and len(leader.seen) == 2  # the leader is cached after discovery


async def test_the_leader_url_header_is_learned_from_any_answer(servers):
    leader = await servers(OK)
    follower = await servers((200, {"ok": 1}, {"X-Raft-Leader-Url": leader.url}))
    async with Client([follower.url], timeout=5, sessions=False) as client:
        await client.request("GET", "/v1/status", leader=False)
        await client.request("POST", "/v1/counters/a/incr", body={"by": 1}, write=True)
    assert len(leader.seen) == 1


async def test_an_unknown_outcome_is_never_reported_as_definite(servers):
    server = await servers(error("indeterminate", definite=False, status=504), error("unavailable"))
    async with Client([server.url], timeout=1, sessions=False) as client:
        with pytest.raises(Indeterminate):
            await client.request("POST", "/v1/counters/a/incr", body={"by": 1}, write=True)
        # A read that never got an answer is just unavailable: reads change nothing.
        with pytest.raises(Unavailable):
            await client.request("GET", "/v1/counters/a")


async def test_nothing_listening_is_a_definite_unavailable():
    port = free_ports(1)[0]
    async with Client([f"http://127.0.0.1:{port}"], timeout=0.5, sessions=False) as client:
        with pytest.raises(Unavailable) as info:
            await client.request("POST", "/v1/counters/a/incr", body={"by": 1}, write=True)
    assert info.value.definite


async def test_definite_errors_are_raised_at_once(servers):
    server = await servers(error("rejected", status=409, detail={"name": "a", "value": 3}))
    async with Client([server.url], timeout=5, token="t0k", sessions=False) as client:
        with pytest.raises(Rejected) as info:
            await client.request("PUT", "/v1/counters/a", body={"value": 1, "expect": 0}, write=True)
    assert info.value.detail == {"name": "a", "value": 3}
    assert len(server.seen) == 1 and server.seen[0]["auth"] == "Bearer t0k"
    bad = await servers(error("invalid_request", status=400))
    async with Client([bad.url], timeout=5, sessions=False) as client:
        with pytest.raises(InvalidRequest):
            await client.request("POST", "/v1/counters/a/incr", body={"by": 1}, write=True)
    assert len(bad.seen) == 1


async def test_a_dead_endpoint_is_marked_down_and_skipped(servers):
    alive = await servers(OK)
    dead = f"http://127.0.0.1:{free_ports(1)[0]}"
    async with Client([dead, alive.url], timeout=5, sessions=False) as client:
        for _ in range(4):
            await client.request("GET", "/v1/counters/a", params={"consistency": "stale"}, leader=False)
        endpoint = client.pool.get(dead)
        assert endpoint.failures == 1 and not endpoint.is_up(client._clock())
    assert len(alive.seen) == 4


async def test_without_a_leader_url_the_client_tries_the_other_endpoints(servers):
    follower = await servers(error("not_leader"))
    leader = await servers(OK)
    async with Client([follower.url, leader.url], timeout=5, sessions=False) as client:
        response = await client.request("POST", "/v1/counters/a/incr", body={"by": 1}, write=True)
    assert response.endpoint == leader.url
    assert len(follower.seen) == 1 and follower.seen[0]["key"] == leader.seen[0]["key"]


@pytest.mark.parametrize("method", ["PUT", "POST", "DELETE"])
async def test_a_write_whose_node_dies_mid_request_is_never_a_definite_failure(method):
    """Found by `chaos test` (register x all, seed 21): aiohttp re-sent a PUT on a new connection
    after the pooled one dropped, and the re-send's connect error was reported as definite."""
    import asyncio

    applied = []
    server = None

    async def node(reader, writer):
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode().split("\r\n")
            length = next((int(v.split(":")[1]) for v in lines if v.lower().startswith("content-length")), 0)
            body = await reader.readexactly(length) if length else b""
            if not lines[0].startswith("GET"):
                applied.append(body)  # the write takes effect...
                server.close()  # ...then the node dies: no new connections
                writer.transport.abort()  # and this one drops before the answer
                return
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
            await writer.drain()

    server = await asyncio.start_server(node, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with Client([f"http://127.0.0.1:{port}"], timeout=1.0, sessions=False) as client:
            await client.request("GET", "/warm", leader=False)  # leaves a pooled keep-alive connection
            with pytest.raises(Indeterminate) as info:
                await client.request(method, "/v1/counters/x", body={"value": 2}, write=True)
        assert len(applied) == 1
        assert not info.value.definite
    finally:
        server.close()
        await server.wait_closed()
