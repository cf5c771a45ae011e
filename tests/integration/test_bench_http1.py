"""The bench's lean HTTP/1.1 client against real servers: aiohttp's, a raw socket one, the null server."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import web

from consensus.bench.http1 import ConnectFailed, Disconnected, Http1Client
from consensus.bench.procs import NullServer, free_ports


async def _serve(routes: list[web.RouteDef]) -> tuple[web.AppRunner, str, list[object]]:
    """An aiohttp server that records the peer (client port) of every request it answers."""
    peers: list[object] = []

    @web.middleware
    async def record(request: web.Request, handler):  # type: ignore[no-untyped-def]
        peers.append(request.transport.get_extra_info("peername") if request.transport else None)
        return await handler(request)

    app = web.Application(middlewares=[record])
    app.add_routes(routes)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_ports(1)[0]
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}", peers


async def _echo(request: web.Request) -> web.Response:
    body = await request.read()
    return web.json_response({"method": request.method, "path": request.path_qs, "body": body.decode(),
                              "type": request.headers.get("Content-Type"), "key": request.headers.get("Idempotency-Key")})


async def _chunked(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    response.enable_chunked_encoding()
    await response.prepare(request)
    for part in (b'{"parts": ', b"[1, 2, ", b"3]}"):
        await response.write(part)
        await asyncio.sleep(0.01)  # separate chunks, some in separate TCP segments
    await response.write_eof()
    return response


async def _close(request: web.Request) -> web.Response:
    return web.json_response({"closing": True}, headers={"Connection": "close"})


async def test_requests_reuse_one_kept_alive_connection_and_carry_method_path_body_and_headers():
    runner, url, peers = await _serve([web.route("*", "/echo", _echo)])
    try:
        async with Http1Client(timeout=5) as http:
            answers = [await http.request("PUT", f"{url}/echo?x=1", f'{{"n": {i}}}'.encode(),
                                          {"Content-Type": "application/json", "Idempotency-Key": f"k{i}"}) for i in range(20)]
            status, empty = await http.request("GET", f"{url}/echo")
    finally:
        await runner.cleanup()
    assert [s for s, _ in answers] == [200] * 20 and status == 200
    decoded = [json.loads(body) for _, body in answers]
    assert decoded[7] == {"method": "PUT", "path": "/echo?x=1", "body": '{"n": 7}', "type": "application/json", "key": "k7"}
    assert json.loads(empty)["body"] == ""
    assert len(set(peers)) == 1  # one connection carried all 21 requests


async def test_concurrent_requests_open_one_connection_each_and_then_reuse_them():
    runner, url, peers = await _serve([web.route("*", "/echo", _echo)])
    try:
        async with Http1Client(timeout=5) as http:
            for _ in range(5):
                await asyncio.gather(*(http.request("POST", f"{url}/echo", b"{}") for _ in range(4)))
    finally:
        await runner.cleanup()
    assert len(peers) == 20 and len(set(peers)) == 4


async def test_a_chunked_answer_is_read_whole_and_connection_close_is_honoured():
    runner, url, peers = await _serve([web.get("/chunked", _chunked), web.get("/close", _close)])
    try:
        async with Http1Client(timeout=5) as http:
            assert await http.request("GET", f"{url}/chunked") == (200, b'{"parts": [1, 2, 3]}')
            assert await http.request("GET", f"{url}/chunked") == (200, b'{"parts": [1, 2, 3]}')
            await http.request("GET", f"{url}/close")
            await http.request("GET", f"{url}/close")
    finally:
        await runner.cleanup()
    assert peers[0] == peers[1] == peers[2]  # chunked answers keep the connection
    assert peers[3] != peers[2]  # the server said close: the next request needed a new connection


async def test_a_refused_port_is_connect_failed_and_a_slow_answer_times_out_without_poisoning_the_next():
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query["s"]))
        return web.json_response({"slept": request.query["s"]})

    runner, url, peers = await _serve([web.get("/slow", slow)])
    try:
        async with Http1Client(timeout=0.2) as http:
            with pytest.raises(ConnectFailed):
                await http.request("GET", f"http://127.0.0.1:{free_ports(1)[0]}/x")
            with pytest.raises(TimeoutError):
                await http.request("GET", f"{url}/slow?s=0.5")
            # The late answer to the timed-out request must never be taken for this one's.
            assert await http.request("GET", f"{url}/slow?s=0") == (200, b'{"slept": "0"}')
    finally:
        await runner.cleanup()


async def test_a_connection_dropped_before_the_answer_is_disconnected_and_garbage_too():
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line = await reader.readline()
        if b"/drop" in line:
            writer.close()
        else:
            writer.write(b"SPAM\r\n\r\n")
            await writer.drain()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with Http1Client(timeout=2) as http:
            with pytest.raises(Disconnected):
                await http.request("POST", f"http://127.0.0.1:{port}/drop", b"{}")
            with pytest.raises(Disconnected, match="status line"):
                await http.request("GET", f"http://127.0.0.1:{port}/garbage")
            with pytest.raises(ValueError, match="only http"):
                await http.request("GET", f"https://127.0.0.1:{port}/x")
    finally:
        server.close()
        await server.wait_closed()


async def test_the_null_server_answers_pipelined_requests_in_order():
    with NullServer() as null:
        reader, writer = await asyncio.open_connection("127.0.0.1", null.port)
        body = b'{"value": "x"}'
        request = b"POST /null HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        writer.write(request * 3)  # three requests in one segment
        await writer.drain()
        answers = [await reader.readuntil(b"{}") for _ in range(3)]
        writer.close()
        async with Http1Client(timeout=5) as http:
            assert await http.request("POST", f"{null.url}/null", body) == (200, b"{}")
    assert all(a.startswith(b"HTTP/1.1 200 OK\r\n") for a in answers)
