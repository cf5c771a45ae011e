"""A follower forwarding to a leader that applies the write and then dies must say "unknown".

Two real nodes serve HTTP in this process. The follower reaches the leader's HTTP through a relay
on loopback (the "fake leader"): it passes requests on to the real leader and, when told to, lets
the leader apply one write, then closes its listener and drops the follower's connection without
answering, as a leader process killed mid-request would.
"""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from tests.integration.served import ServedCluster, request

pytestmark = pytest.mark.timeout(120)


class DyingRelay:
    """An HTTP/1.1 relay to ``target`` that can die right after the target answered a write."""

    def __init__(self) -> None:
        self.target = ""
        self.die_after_next_write = False
        self.applied: list[bytes] = []
        self.server: asyncio.base_events.Server | None = None
        self.url = ""

    async def start(self) -> "DyingRelay":
        self.server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with aiohttp.ClientSession() as session:
                while True:
                    head = await reader.readuntil(b"\r\n\r\n")
                    request_line, *lines = head.decode("latin-1").split("\r\n")
                    method, path, _ = request_line.split(" ", 2)
                    headers = dict(line.split(": ", 1) for line in lines if ": " in line)
                    length = int(headers.get("Content-Length", "0"))
                    body = await reader.readexactly(length) if length else b""
                    headers = {k: v for k, v in headers.items() if k.lower() not in ("host", "content-length")}
                    async with session.request(method, self.target + path, data=body, headers=headers) as resp:
                        answer = await resp.read()
                        status, answer_headers = resp.status, resp.headers
                    if method != "GET" and self.die_after_next_write:
                        self.applied.append(body)  # the leader has answered: the write is applied...
                        assert self.server is not None
                        self.server.close()  # ...then the leader dies: no new connections
                        writer.transport.abort()  # and the follower never gets the answer
                        return
                    out = [f"HTTP/1.1 {status} X", f"Content-Length: {len(answer)}"]
                    out += [f"{k}: {v}" for k, v in answer_headers.items() if k.lower().startswith(("x-raft", "content-type"))]
                    writer.write(("\r\n".join(out) + "\r\n\r\n").encode() + answer)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


@pytest.mark.parametrize("method, path, body", [("PUT", "/v1/counters/x", {"value": 7}),
                                                ("POST", "/v1/counters/x/incr", {"by": 7})])
async def test_a_forwarded_write_whose_leader_dies_after_applying_is_indeterminate(tmp_path, method, path, body):
    relay = await DyingRelay().start()
    try:
        async with ServedCluster(2, tmp_path, peer_http=lambda j, url: relay.url) as served:
            leader = await served.leader_index()
            follower = 1 - leader
            relay.target = served.urls[leader]
            # A first forwarded write leaves a pooled keep-alive connection from follower to "leader".
            status, answer, _ = await request("PUT", served.urls[follower] + "/v1/counters/x", json={"value": 0})
            assert status == 200, answer
            relay.die_after_next_write = True
            status, answer, _ = await request(method, served.urls[follower] + path, json=body,
                                              headers={"X-Request-Timeout": "5"})
            assert relay.applied, "the relay never passed the write on"
            assert status == 504, answer  # not a definite 503: the leader applied it
            assert answer["error"]["code"] == "indeterminate" and answer["error"]["definite"] is False
            status, answer, _ = await request("GET", served.urls[leader] + "/v1/counters/x")
            assert answer == {"name": "x", "value": 7}  # it did apply
    finally:
        await relay.stop()
