"""The client's per-attempt timeout, against real HTTP servers on loopback that play nodes: an
attempt stuck on a deposed leader is given up and retried at the new one well before the
deadline, a slow answer from a healthy leader (a long poll) is waited for, and the outcome of a
write stays unknown if any attempt's outcome was."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import web

from consensus.client import Client
from consensus.errors import Indeterminate


class FakeNode:
    """A node that answers /livez and /v1/status as told, and writes after ``delay`` (None: never)."""

    def __init__(self, *, term: int, livez: bool = True, delay: float | None = 0.0) -> None:
        self.term = term
        self.leader_url = ""
        self.livez = livez
        self.delay = delay
        self.writes: list[str | None] = []
        self.url = ""
        self.runner: web.AppRunner | None = None
        self.held = asyncio.Event()  # set when a request is being held
        self.refuse: dict | None = None  # answer writes with this error (503) instead

    async def handle(self, request: web.Request) -> web.Response:
        headers = {"X-Raft-Term": str(self.term), "X-Raft-Leader-Url": self.leader_url}
        if request.path == "/livez":
            if not self.livez:
                await asyncio.sleep(3600)  # a paused process: the connection opens, nothing comes back
            return web.json_response({"live": True}, headers=headers)
        if request.path == "/v1/status":
            return web.json_response({"term": self.term, "leader_url": self.leader_url}, headers=headers)
        self.writes.append(request.headers.get("Idempotency-Key"))
        if self.refuse is not None:
            return web.Response(status=503, text=json.dumps({"error": self.refuse}), content_type="application/json")
        if self.delay is None:
            self.held.set()
            await asyncio.sleep(3600)  # a deposed leader holds the request until its deadline
        await asyncio.sleep(self.delay)
        return web.json_response({"name": "a", "value": len(self.writes)}, headers=headers)

    async def start(self) -> "FakeNode":
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
        self.leader_url = self.url
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@pytest.fixture
async def nodes():
    started: list[FakeNode] = []

    async def make(**kw):
        node = await FakeNode(**kw).start()
        started.append(node)
        return node

    yield make
    for node in started:
        await node.stop()


async def test_a_write_stuck_on_a_deposed_leader_is_retried_at_the_new_leader(nodes):
    old = await nodes(term=1)
    new = await nodes(term=1)
    new.leader_url = old.url
    async with Client([old.url, new.url], timeout=4, attempt_timeout=0.3, sessions=False) as client:
        await client.request("POST", "/v1/counters/a/incr", body={"by": 1}, write=True)  # learns: old leads at term 1
        assert client.leader == old.url
        old.delay = None  # old is cut off: it holds what it gets
        new.term, new.leader_url = 2, new.url  # the others elected new at term 2
        response = await client.request("POST", "/v1/counters/a/incr", body={"by": 1}, write=True)
    assert response.endpoint == new.url  # without the per-attempt check this ran into the deadline
    assert len(old.writes) == 2 and new.writes == [old.writes[1]]  # one key for the whole logical request


async def test_a_slow_answer_from_a_healthy_leader_is_waited_for(nodes):
    leader = await nodes(term=3, delay=1.2)  # e.g. a lock acquire that waits on purpose
    follower = await nodes(term=3)
    follower.leader_url = leader.url
    async with Client([leader.url, follower.url], timeout=5, attempt_timeout=0.2, sessions=False) as client:
        response = await client.request("POST", "/v1/locks/x/acquire", body={}, write=True)
    assert response.endpoint == leader.url and len(leader.writes) == 1 and follower.writes == []


async def test_an_abandoned_write_keeps_the_outcome_unknown(nodes):
    old = await nodes(term=1, delay=None)
    new = await nodes(term=2)
    new.refuse = {"code": "unavailable", "message": "no quorum", "definite": True, "leader": None, "leader_url": None}
    async with Client([old.url, new.url], timeout=1.5, attempt_timeout=0.3, sessions=False) as client:
        client._leader = old.url
        with pytest.raises(Indeterminate) as info:
            await client.request("POST", "/v1/counters/a/incr", body={"by": 1}, write=True)
    assert old.held.is_set() and new.writes and not info.value.definite  # old may have applied it: never a definite 503


async def test_a_read_on_a_paused_node_moves_on(nodes):
    paused = await nodes(term=1, delay=None, livez=False)
    healthy = await nodes(term=1)
    async with Client([paused.url, healthy.url], timeout=5, attempt_timeout=0.3, sessions=False) as client:
        response = await client.request("GET", "/v1/counters/a", params={"consistency": "stale"}, leader=False)
    assert response.endpoint == healthy.url and len(paused.writes) == 1


def test_attempt_timeout_must_be_positive():
    with pytest.raises(ValueError):
        Client(["http://127.0.0.1:1"], attempt_timeout=0)
