"""Bounded resources on a real `consensus serve`, with real sockets: connections that never finish
their headers are closed (slowloris), and past the connection or in-flight cap a request gets a
definite 503 `overloaded` with nothing submitted, while the node keeps serving under and after it."""

from __future__ import annotations

import re
import select
import socket
import time

import pytest
import requests

from tests.integration.server_procs import ServeProcess, wait_for

pytestmark = pytest.mark.timeout(180)


def connect(node: ServeProcess) -> socket.socket:
    host, port = node.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def closed_by_server(sock: socket.socket) -> bool:
    """True once the server has closed ``sock`` (EOF or reset); never blocks."""
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        return sock.recv(65536) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True


def exchange(sock: socket.socket, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send one request on ``sock`` and read one answer (Content-Length bodies only)."""
    sock.sendall(data)
    raw = b""
    while b"\r\n\r\n" not in raw:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before an answer: {raw!r}"
        raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines)}
    while len(body) < int(headers.get("content-length", 0)):
        body += sock.recv(65536)
    return int(status_line.split()[1]), headers, body


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()


def incr(name: str, body: bytes = b'{"by": 1}') -> bytes:
    return f"POST /v1/counters/{name}/incr HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body


def gauge(node: ServeProcess, name: str) -> float:
    text = requests.get(node.url + "/metrics", timeout=5).text
    return float(re.search(rf"^{name} (\S+)$", text, re.M).group(1))


@pytest.fixture
def serve(tmp_path):
    started = []

    def make(*flags: str) -> ServeProcess:
        node = ServeProcess(tmp_path, *flags)
        started.append(node)
        return node.start()

    yield make
    for node in started:
        assert node.stop() == 0, node.log.read_text()[-2000:]


def test_connections_that_never_finish_their_headers_are_closed(serve):
    node = serve("--header-timeout", "1", "--idle-timeout", "30")
    silent = [connect(node) for _ in range(20)]
    dribbling = [connect(node) for _ in range(20)]
    for sock in dribbling:
        sock.sendall(b"GET /v1/status HTTP/1.1\r\nHost: x\r\n")
    keepalive = connect(node)
    assert exchange(keepalive, get("/livez"))[0] == 200
    deadline = time.monotonic() + 20
    open_ = set(silent + dribbling)
    while open_ and time.monotonic() < deadline:
        for sock in [s for s in open_ if s in dribbling]:
            try:
                sock.sendall(b"X")  # one more byte of a header that never ends
            except OSError:
                pass
        open_ -= {s for s in open_ if closed_by_server(s)}
        assert requests.get(node.url + "/livez", timeout=5).status_code == 200  # serving throughout
        select.select([], [], [], 0.2)
    assert not open_, f"{len(open_)} of 40 slow connections still open after 20s"
    # The header clock does not run on an idle keep-alive connection: it still answers.
    assert not closed_by_server(keepalive)
    assert exchange(keepalive, get("/livez"))[0] == 200
    assert requests.post(node.url + "/v1/counters/s/incr", json={"by": 1}, timeout=10).json()["value"] == 1
    assert "sent no complete request headers" in node.log.read_text()
    for sock in silent + dribbling + [keepalive]:
        sock.close()


def test_past_the_connection_cap_a_request_is_a_definite_503_and_nothing_is_submitted(serve):
    node = serve("--max-connections", "3")
    held = [connect(node) for _ in range(3)]
    for sock in held:
        assert exchange(sock, get("/livez"))[0] == 200  # three keep-alive connections: the cap
    wait_for(lambda: gauge(node, "raftwork_http_connections") >= 3, 10, "three connections counted")
    extra = connect(node)
    status, headers, body = exchange(extra, incr("c"))
    assert status == 503, body
    assert b'"code":"overloaded"' in body and b'"definite":true' in body
    assert headers.get("connection", "").lower() == "close"
    wait_for(lambda: closed_by_server(extra), 10, "the connection over the cap to be closed")
    for sock in held:  # under the cap the held connections are served as before
        assert exchange(sock, get("/v1/counters/c"))[0] == 200
    for sock in held:
        sock.close()
    wait_for(lambda: gauge(node, "raftwork_http_connections") <= 1, 10, "the connections to be released")
    assert requests.get(node.url + "/v1/counters/c", timeout=5).json()["value"] == 0  # the refused write never applied
    assert requests.post(node.url + "/v1/counters/c/incr", json={"by": 1}, timeout=10).json()["value"] == 1


def test_past_the_in_flight_cap_a_request_is_a_definite_503_and_the_node_recovers(serve):
    node = serve("--max-in-flight", "2")
    body = b'{"by": 1}'
    slow = [connect(node) for _ in range(2)]
    for sock in slow:  # headers in, body not yet: each holds a request in flight
        sock.sendall(incr("f", body)[: -len(body) + 2])
    wait_for(lambda: gauge(node, "raftwork_http_requests_in_flight") == 2, 10, "two requests in flight")
    refused = requests.post(node.url + "/v1/counters/f/incr", json={"by": 100}, timeout=10)
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "overloaded", refused.text
    assert refused.json()["error"]["definite"] is True
    assert requests.get(node.url + "/livez", timeout=5).status_code == 200  # liveness is never capped
    values = []
    for sock in slow:
        sock.sendall(body[2:])
        status, _, answer = exchange(sock, b"")
        assert status == 200, answer
        values.append(answer)
        sock.close()
    assert requests.get(node.url + "/v1/counters/f", timeout=5).json()["value"] == 2  # the refused +100 never applied
    assert requests.post(node.url + "/v1/counters/f/incr", json={"by": 1}, timeout=10).json()["value"] == 3


@pytest.mark.parametrize("flag, value", [("--header-timeout", "0"), ("--max-connections", "0"), ("--max-in-flight", "-1"),
                                         ("--idle-timeout", "nan")])
def test_limits_must_be_positive(flag, value):
    from tests.integration.server_procs import free_port_range, run_cli

    base = free_port_range(2)
    out = run_cli("serve", "--id", f"127.0.0.1:{base}", "--peers", f"127.0.0.1:{base}", "--http", f"127.0.0.1:{base + 1}",
                  "--data-dir", "/nonexistent/x", flag, value)
    assert out.returncode == 2 and flag in out.stderr and len(out.stderr.strip().splitlines()) == 1, out
