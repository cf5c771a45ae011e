"""Property-based fuzzing of every route in /openapi.json against a real `consensus serve`:
no request, however malformed, gets a 500 or a traceback, or stops the node."""

from __future__ import annotations

import json
import string
from urllib.parse import quote

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.server_procs import ServeProcess, get_json, pid_alive

pytestmark = pytest.mark.timeout(240)
TOKEN = "fuzz-token-123"
MEMBERSHIP = {("post", "/v1/members"), ("delete", "/v1/members/{id}")}


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz")
    (tmp / "token").write_text(TOKEN + "\n")
    server = ServeProcess(tmp, "--token-file", str(tmp / "token"))
    try:
        server.start()
        yield server
    finally:
        code = server.stop()
        assert code == 0, server.log.read_text()[-2000:]
        assert not pid_alive(server.proc.pid)


@pytest.fixture(scope="module")
def operations(node):
    document = get_json(node.url + "/openapi.json")
    return [(path, method, op) for path, methods in document["paths"].items() for method, op in methods.items()]


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
HEADER_TEXT = st.text(alphabet=string.ascii_letters + string.digits + string.punctuation, min_size=1, max_size=40)


def value_for(schema: dict) -> st.SearchStrategy:
    """Mostly-valid values for ``schema``, mixed with anything at all."""
    options = [JSON]
    kind = schema.get("type")
    if "enum" in schema:
        options.append(st.sampled_from(schema["enum"]))
    elif kind == "integer":
        options.append(st.integers(schema.get("minimum", -(2**64)) - 2, schema.get("maximum", 2**64) + 2))
    elif kind == "string" and "pattern" in schema:
        options.append(st.from_regex(schema["pattern"], fullmatch=True))
    elif kind == "string":
        options.append(st.text(max_size=20))
    return st.one_of(*options)


def body_for(schema: dict | None) -> st.SearchStrategy:
    raw = st.binary(max_size=64)
    if schema is None:
        return st.one_of(st.just(b""), raw, JSON.map(lambda v: json.dumps(v).encode()))
    properties = schema.get("properties", {})
    objects = st.fixed_dictionaries({}, optional={k: value_for(v) for k, v in properties.items()})
    extra = st.dictionaries(st.text(max_size=6), JSON, max_size=2)
    documents = st.one_of(objects, st.builds(lambda a, b: {**b, **a}, objects, extra), JSON)
    return st.one_of(documents.map(lambda v: json.dumps(v).encode()), raw, st.just(b""))


@st.composite
def http_requests(draw, operations):
    path, method, op = draw(st.sampled_from(operations))
    url_path = path
    query = {}
    for param in op.get("parameters", []):
        if param["in"] == "path":
            value = draw(value_for(param["schema"]))
            url_path = url_path.replace("{" + param["name"] + "}", quote(str(value), safe=""))
        elif param["in"] == "query" and draw(st.booleans()):
            query[param["name"]] = str(draw(value_for(param["schema"])))
    if draw(st.integers(0, 4)) == 0:
        query[draw(st.text(alphabet=string.ascii_lowercase, min_size=1, max_size=6))] = "1"
    headers = {"X-Request-Timeout": draw(st.one_of(st.just("0.5"), HEADER_TEXT))}
    if draw(st.booleans()):
        headers["Idempotency-Key"] = draw(HEADER_TEXT)
    if (method, path) not in MEMBERSHIP:  # a valid membership change would break the one-node cluster
        headers["Authorization"] = f"Bearer {TOKEN}"
    schema = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
    body = draw(body_for(schema))
    return method.upper(), url_path, query, headers, body


def test_fuzzed_requests_from_the_openapi_document_never_get_a_500(node, operations):
    seen_statuses: set[int] = set()

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(http_requests(operations))
    def check(request):
        method, path, query, headers, body = request
        response = requests.request(method, node.url + path, params=query, headers=headers, data=body, timeout=15)
        seen_statuses.add(response.status_code)
        assert response.status_code != 500, (request, response.text)
        assert response.status_code < 500 or response.status_code in (503, 504), (request, response.text)
        assert "Traceback" not in response.text
        if response.status_code >= 400:
            assert response.json()["error"]["code"]

    check()
    assert {200, 400} <= seen_statuses  # the fuzzer reached handlers and validation both
    assert requests.get(node.url + "/livez", timeout=5).status_code == 200
    ok = requests.post(node.url + "/v1/counters/after-fuzz/incr", json={"by": 1},
                       headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert ok.status_code == 200, ok.text


def test_mutating_routes_need_the_bearer_token(node):
    url = node.url + "/v1/counters/guarded"
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}, {"Authorization": f"Basic {TOKEN}"}):
        for method, path, body in (("POST", "/incr", {"by": 1}), ("PUT", "", {"value": 3})):
            response = requests.request(method, url + path, json=body, headers=headers, timeout=10)
            assert response.status_code == 401, response.text
            assert response.json()["error"]["code"] == "unauthorized"
    for path in ("/v1/members", "/v1/leader/transfer"):
        assert requests.post(node.url + path, json={}, timeout=10).status_code == 401
    assert requests.delete(node.url + "/v1/members/127.0.0.1:1", timeout=10).status_code == 401
    assert requests.get(url, timeout=10).json() == {"name": "guarded", "value": 0}  # reads are open
    ok = requests.post(url + "/incr", json={"by": 2}, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert ok.status_code == 200 and ok.json()["value"] == 2


RAW = [
    b"POST /v1/counters/a/incr HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    b"GET /v1/counters/" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"GET /v1/counters/%ZZ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"GET /v1/counters/a%00b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"GARBAGE\r\n\r\n",
    b"POST /v1/counters/a/incr HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: -5\r\n\r\n",
    b"POST /v1/counters/a/incr HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n{}",
    b"GET /v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Bad: " + b"h" * 10000 + b"\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(32)) + b"\r\n\r\n",  # a TLS hello
]


@pytest.mark.parametrize("data", RAW, ids=range(len(RAW)))
def test_requests_that_are_not_even_http_get_a_json_400_and_leave_no_traceback(node, data):
    import socket

    host, port = node.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(data)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    assert answer.startswith((b"HTTP/1.0 4", b"HTTP/1.1 4")), answer[:200]
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"application/json" in head, answer[:300]  # the same JSON error as every other error
    assert json.loads(body)["error"]["code"] in ("invalid_request", "payload_too_large"), body
    assert requests.get(node.url + "/livez", timeout=5).status_code == 200
    assert "Traceback" not in node.log.read_text()


def test_odd_methods_do_not_grow_the_metrics(node):
    for method in [f"XMETHOD{i}" for i in range(10)] + ["PATCH", "OPTIONS", "TRACE", "PROPFIND", "MKCOL"]:
        response = requests.request(method, node.url + "/v1/counters/a", timeout=5)
        assert response.status_code in (400, 405), (method, response.text)  # llhttp refuses unknown methods itself
    text = requests.get(node.url + "/metrics", timeout=5).text
    for method in ("XMETHOD", "TRACE", "PROPFIND", "MKCOL"):
        assert f'method="{method}' not in text
    assert 'method="other"' in text  # WebDAV methods reach the app, counted under one label
