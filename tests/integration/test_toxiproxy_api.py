"""Raw HTTP against the embedded Toxiproxy: every endpoint and error case of the spec (section 1)."""

from __future__ import annotations

import json
import re
import socket
from typing import Any, Iterator

import pytest
import requests

from chaos.toxiproxy import BackgroundServer

pytestmark = pytest.mark.timeout(30)

TEXT_PLAIN = "text/plain; charset=utf-8"


@pytest.fixture
def server() -> Iterator[BackgroundServer]:
    with BackgroundServer("127.0.0.1", 0) as srv:
        yield srv


@pytest.fixture
def http(server: BackgroundServer) -> Iterator[Any]:
    session = requests.Session()

    def call(method: str, path: str, body: Any = None, raw: bytes | None = None, **kw: Any) -> requests.Response:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        return session.request(method, server.url + path, data=data, timeout=5, **kw)

    try:
        yield call
    finally:
        session.close()


@pytest.fixture
def free_port() -> Iterator[int]:
    """A port that was free a moment ago (tests that need a fixed listen address)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    yield port


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def assert_error(resp: requests.Response, status: int, message: str) -> None:
    assert resp.status_code == status
    assert resp.headers["Content-Type"] == TEXT_PLAIN
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.content == (json.dumps({"error": message, "status": status}, separators=(",", ":")) + "\n").encode()


def create(http: Any, name: str = "p", upstream: str = "127.0.0.1:1", **fields: Any) -> dict[str, Any]:
    resp = http("POST", "/proxies", {"name": name, "listen": "127.0.0.1:0", "upstream": upstream, **fields})
    assert resp.status_code == 201, resp.text
    return resp.json()


# General behaviour

def test_version_body_is_exact(http: Any) -> None:
    resp = http("GET", "/version")
    assert resp.status_code == 200
    assert resp.content == b'{"version": "2.12.0"}\n'
    assert resp.headers["Content-Type"] == "application/json;charset=utf-8"


def test_router_404_405_head_trailing_slash_and_query(http: Any) -> None:
    for path in ("/nothing", "/proxies/", "/events", "/metrics", "/proxies//toxics"):
        resp = http("GET", path)
        assert resp.status_code == 404, path
        assert resp.content == b"404 page not found\n"
        assert resp.headers["Content-Type"] == TEXT_PLAIN
        assert "X-Toxiproxy-Request-Id" not in resp.headers
    for method, path in (("DELETE", "/proxies"), ("PUT", "/version"), ("HEAD", "/version"), ("GET", "/reset")):
        resp = http(method, path)
        assert resp.status_code == 405, (method, path)
        assert resp.content == b""
        assert "X-Toxiproxy-Request-Id" not in resp.headers
    assert http("GET", "/proxies?x=1").json() == {}


def test_request_id_and_browser_guard_only_on_routed_requests(http: Any) -> None:
    ids = {http("GET", "/proxies").headers["X-Toxiproxy-Request-Id"] for _ in range(3)}
    assert len(ids) == 3
    assert all(re.fullmatch(r"[0-9a-v]{20}", i) for i in ids)
    browser = {"User-Agent": "Mozilla/5.0 (X11)"}
    resp = http("GET", "/proxies", headers=browser)
    assert resp.status_code == 403
    assert resp.content == b"User agent not allowed\n"
    assert resp.headers["Content-Type"] == TEXT_PLAIN
    assert http("GET", "/nowhere", headers=browser).status_code == 404
    assert http("GET", "/version", headers={"User-Agent": "curl/8 Mozilla/5"}).status_code == 200


# Proxies

def test_create_and_list_proxies_with_exact_shape(http: Any) -> None:
    assert http("GET", "/proxies").content == b"{}"
    created = http("POST", "/proxies", {"name": "redis", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:6379"})
    assert created.status_code == 201
    assert created.headers["Content-Type"] == "application/json"
    body = created.content.decode()
    port = created.json()["listen"].rsplit(":", 1)[1]
    assert port != "0"
    assert body == ('{"name":"redis","listen":"127.0.0.1:%s","upstream":"127.0.0.1:6379","enabled":true,'
                    '"Logger":{},"toxics":[]}' % port)
    create(http, "a_first")
    listed = http("GET", "/proxies")
    assert list(listed.json()) == ["a_first", "redis"]  # Go sorts map keys
    assert listed.json()["redis"] == json.loads(body)
    assert http("GET", "/proxies/redis").content.decode() == body


def test_create_defaults_and_ignored_fields(http: Any, free_port: int) -> None:
    assert create(http, "n", enabled=None)["enabled"] is True
    kept = create(http, "off", enabled=False, listen=f"localhost:{free_port}", toxics=[{"type": "latency"}])
    assert kept["listen"] == f"localhost:{free_port}"  # not resolved until started
    assert kept["enabled"] is False and kept["toxics"] == []
    trailing = http("POST", "/proxies", raw=b'{"name":"t","upstream":"u:1","listen":"127.0.0.1:0"} trailing junk')
    assert trailing.status_code == 201
    dup = http("POST", "/proxies", raw=b'{"name":"x","name":"dup","UPSTREAM":"u:1","listen":"127.0.0.1:0"}')
    assert dup.json()["name"] == "dup" and dup.json()["upstream"] == "u:1"


def test_create_errors(http: Any, busy_port: int) -> None:
    assert_error(http("POST", "/proxies", raw=b""), 400, "bad request body: EOF")
    resp = http("POST", "/proxies", raw=b"{nope}")
    assert resp.status_code == 400
    assert resp.json()["error"] == "bad request body: invalid character 'n' looking for beginning of object key string"
    assert_error(http("POST", "/proxies", {"upstream": "u:1"}), 400, "missing required field: name")
    assert_error(http("POST", "/proxies", {"name": "a"}), 400, "missing required field: upstream")
    assert_error(http("POST", "/proxies", {"name": 5, "upstream": "u:1"}), 400,
                 "bad request body: json: cannot unmarshal number into Go struct field Proxy.name of type string")
    create(http, "a")
    assert_error(http("POST", "/proxies", {"name": "a", "upstream": "u:1"}), 409, "proxy already exists")
    assert_error(http("POST", "/proxies", {"name": "b", "upstream": "u:1", "listen": f"127.0.0.1:{busy_port}"}),
                 500, f"listen tcp 127.0.0.1:{busy_port}: bind: address already in use")
    assert_error(http("POST", "/proxies", {"name": "c", "upstream": "u:1", "listen": "nonsense"}),
                 500, "listen tcp: address nonsense: missing port in address")
    assert list(http("GET", "/proxies").json()) == ["a"]  # failed creates leave nothing behind


def test_get_update_and_delete_proxy(http: Any, busy_port: int) -> None:
    create(http, "p", upstream="127.0.0.1:1")
    assert_error(http("GET", "/proxies/missing"), 404, "proxy not found")
    patched = http("PATCH", "/proxies/p", {"upstream": "127.0.0.1:2", "name": "ignored"})
    assert patched.status_code == 200
    assert patched.json()["name"] == "p" and patched.json()["upstream"] == "127.0.0.1:2"
    assert patched.json()["enabled"] is True
    disabled = http("POST", "/proxies/p", {"enabled": False})  # deprecated POST form
    assert disabled.status_code == 200 and disabled.json()["enabled"] is False
    assert disabled.json()["upstream"] == "127.0.0.1:2"
    assert_error(http("PATCH", "/proxies/p", raw=b""), 400, "bad request body: EOF")
    assert_error(http("PATCH", "/proxies/missing", {"enabled": True}), 404, "proxy not found")
    assert_error(http("PATCH", "/proxies/p", {"listen": "nonsense"}), 500, "address nonsense: missing port in address")
    in_use = http("PATCH", "/proxies/p", {"listen": f"127.0.0.1:{busy_port}", "enabled": True})
    assert_error(in_use, 500, f"listen tcp 127.0.0.1:{busy_port}: bind: address already in use")
    after = http("GET", "/proxies/p").json()
    assert after["enabled"] is False and after["listen"] == f"127.0.0.1:{busy_port}"  # left stopped
    assert http("DELETE", "/proxies/p").status_code == 204
    assert http("DELETE", "/proxies/p").status_code == 404
    assert http("GET", "/proxies").json() == {}


def test_names_with_spaces_work_and_slashes_are_unaddressable(http: Any) -> None:
    create(http, "with space")
    assert http("GET", "/proxies/with%20space").json()["name"] == "with space"
    create(http, "a/b")
    assert http("GET", "/proxies/a%2Fb").status_code == 404
    assert http("DELETE", "/proxies/a%2Fb").status_code == 404


# Toxics

def test_toxic_create_defaults_name_and_shape(http: Any) -> None:
    create(http)
    assert http("GET", "/proxies/p/toxics").content == b"[]"
    resp = http("POST", "/proxies/p/toxics", {"type": "latency", "attributes": {"latency": 1000, "extra": 1}})
    assert resp.status_code == 200
    assert resp.content == (b'{"attributes":{"latency":1000,"jitter":0},"name":"latency_downstream",'
                            b'"type":"latency","stream":"downstream","toxicity":1}')
    mixed = http("POST", "/proxies/p/toxics", {"type": "latency", "stream": "UpStream", "attributes": None})
    assert mixed.json()["name"] == "latency_UpStream" and mixed.json()["stream"] == "UpStream"
    noop = http("POST", "/proxies/p/toxics", {"type": "noop", "stream": None, "name": "n", "toxicity": 0.5})
    assert noop.content == b'{"attributes":{},"name":"n","type":"noop","stream":"downstream","toxicity":0.5}'
    for toxicity, text in ((2.5, b"2.5"), (-1, b"-1"), (0.1, b"0.1"), (0, b"0")):
        made = http("POST", "/proxies/p/toxics", {"type": "noop", "name": f"t{text!r}", "toxicity": toxicity})
        assert made.content.endswith(b'"toxicity":' + text + b"}")
    names = [t["name"] for t in http("GET", "/proxies/p/toxics").json()]
    assert names[0] == "latency_UpStream"  # upstream chain first, then downstream in order
    assert names[1:3] == ["latency_downstream", "n"]
    assert [t["name"] for t in http("GET", "/proxies/p").json()["toxics"]] == names


def test_every_toxic_type_has_zero_filled_attributes(http: Any) -> None:
    create(http)
    expected = {
        "latency": {"latency": 0, "jitter": 0}, "bandwidth": {"rate": 0}, "slow_close": {"delay": 0},
        "timeout": {"timeout": 0}, "reset_peer": {"timeout": 0}, "limit_data": {"bytes": 0}, "noop": {},
    }
    for type_, attrs in expected.items():
        assert http("POST", "/proxies/p/toxics", {"type": type_}).json()["attributes"] == attrs
    slicer = http("POST", "/proxies/p/toxics", {"type": "slicer", "attributes": {"average_size": 1}})
    assert list(slicer.json()["attributes"]) == ["average_size", "size_variation", "delay"]


def test_toxic_create_errors_in_upstreams_order(http: Any) -> None:
    assert_error(http("POST", "/proxies/missing/toxics", {"type": "latency"}), 404, "proxy not found")
    create(http)
    assert_error(http("POST", "/proxies/p/toxics", raw=b""), 400, "bad request body: EOF")
    for stream in ("", "both"):
        assert_error(http("POST", "/proxies/p/toxics", {"type": "latency", "stream": stream}), 400,
                     "stream was invalid, can be either upstream or downstream")
    assert_error(http("POST", "/proxies/p/toxics", {"type": "bogus", "stream": "both"}), 400,
                 "stream was invalid, can be either upstream or downstream")
    for type_ in ("LATENCY", "down", None):
        assert_error(http("POST", "/proxies/p/toxics", {"type": type_}), 400, "invalid toxic type")
    assert_error(http("POST", "/proxies/p/toxics", {"type": "latency", "attributes": {"latency": "1"}}), 400,
                 "bad request body: json: cannot unmarshal string into Go struct field "
                 "LatencyToxic.attributes.latency of type int64")
    assert http("POST", "/proxies/p/toxics", {"type": "latency", "attributes": {"latency": 1.5}}).status_code == 400
    http("POST", "/proxies/p/toxics", {"type": "latency", "name": "x", "stream": "upstream"})
    assert_error(http("POST", "/proxies/p/toxics", {"type": "noop", "name": "x"}), 409, "toxic already exists")
    assert [t["name"] for t in http("GET", "/proxies/p/toxics").json()] == ["x"]


def test_crashing_attributes_get_400_instead(http: Any) -> None:
    create(http)
    resp = http("POST", "/proxies/p/toxics", {"type": "bandwidth", "attributes": {"rate": -1}})
    assert resp.status_code == 400
    assert http("POST", "/proxies/p/toxics", {"type": "slicer", "attributes": {"average_size": 0}}).status_code == 400
    http("POST", "/proxies/p/toxics", {"type": "bandwidth", "attributes": {"rate": 5}})
    assert http("PATCH", "/proxies/p/toxics/bandwidth_downstream", {"attributes": {"rate": -5}}).status_code == 400
    assert http("GET", "/proxies/p/toxics").json()[0]["attributes"] == {"rate": 5}


def test_toxic_get_update_delete(http: Any) -> None:
    create(http)
    http("POST", "/proxies/p/toxics", {"type": "latency", "toxicity": 0.5, "attributes": {"latency": 10, "jitter": 3}})
    path = "/proxies/p/toxics/latency_downstream"
    assert http("GET", path).json()["attributes"] == {"latency": 10, "jitter": 3}
    assert_error(http("GET", "/proxies/p/toxics/nope"), 404, "toxic not found")
    assert_error(http("GET", "/proxies/nope/toxics/latency_downstream"), 404, "proxy not found")
    patched = http("PATCH", path, {"attributes": {"latency": 99}, "name": "z", "type": "noop", "stream": "upstream"})
    assert patched.status_code == 200
    assert patched.json() == {"attributes": {"latency": 99, "jitter": 3}, "name": "latency_downstream",
                              "type": "latency", "stream": "downstream", "toxicity": 0.5}
    posted = http("POST", path, {"toxicity": 1})  # deprecated POST form; attributes kept
    assert posted.json()["toxicity"] == 1 and posted.json()["attributes"]["latency"] == 99
    assert_error(http("PATCH", path, raw=b"[1,"), 400, "bad request body: unexpected EOF")
    assert_error(http("PATCH", "/proxies/p/toxics/nope", {"toxicity": 1}), 404, "toxic not found")
    assert http("DELETE", path).status_code == 204
    assert_error(http("DELETE", path), 404, "toxic not found")
    assert_error(http("DELETE", "/proxies/nope/toxics/x"), 404, "proxy not found")


# Populate and reset

def test_populate_creates_keeps_and_replaces(http: Any, free_port: int) -> None:
    empty = http("POST", "/populate", [])
    assert empty.status_code == 201 and empty.content == b'{"proxies":null}'
    fixed = {"name": "fixed", "listen": f"127.0.0.1:{free_port}", "upstream": "127.0.0.1:1"}
    resp = http("POST", "/populate", [fixed, {"name": "off", "listen": "127.0.0.1:0", "upstream": "u:2",
                                              "enabled": False, "toxics": [{"type": "latency"}]}])
    assert resp.status_code == 201
    assert resp.headers["Content-Type"] == "application/json"
    assert [p["name"] for p in resp.json()["proxies"]] == ["fixed", "off"]
    assert resp.json()["proxies"][1]["enabled"] is False and resp.json()["proxies"][1]["toxics"] == []
    http("POST", "/proxies/fixed/toxics", {"type": "noop"})
    http("POST", "/proxies/off/toxics", {"type": "noop"})
    again = http("POST", "/populate", [fixed, {"name": "off", "listen": "127.0.0.1:0", "upstream": "u:3"}])
    assert again.status_code == 201
    assert len(http("GET", "/proxies/fixed/toxics").json()) == 1  # same listen and upstream: kept untouched
    replaced = http("GET", "/proxies/off").json()
    assert replaced["upstream"] == "u:3" and replaced["toxics"] == [] and replaced["enabled"] is True


def test_populate_errors(http: Any, busy_port: int) -> None:
    for raw, message in ((b"", "bad request body: EOF"),
                         (b'{"name":"x"}', "bad request body: json: cannot unmarshal object into Go value of type "
                                           "[]proxy.Proxy"),
                         (b'[{"name":"a","upstream":"u:1"},{"upstream":"u:1"}]', "missing required field: name at proxy 2")):
        resp = http("POST", "/populate", raw=raw)
        assert resp.status_code == 400
        assert resp.headers["Content-Type"] == "application/json"
        assert resp.content == (b'{"error":%s,"status":400,"proxies":null}' % json.dumps(message).encode())
    assert http("GET", "/proxies").json() == {}  # validation runs before anything is created
    partial = http("POST", "/populate", [{"name": "ok", "listen": "127.0.0.1:0", "upstream": "u:1"},
                                         {"name": "bad", "listen": f"127.0.0.1:{busy_port}", "upstream": "u:1"}])
    assert partial.status_code == 500
    body = partial.json()
    assert body["error"] == f"listen tcp 127.0.0.1:{busy_port}: bind: address already in use"
    assert [p["name"] for p in body["proxies"]] == ["ok"]
    assert list(http("GET", "/proxies").json()) == ["ok"]  # processed ones stay created


def test_reset_enables_proxies_and_removes_toxics(http: Any) -> None:
    create(http, "a")
    create(http, "b", enabled=False)
    http("POST", "/proxies/a/toxics", {"type": "latency", "stream": "upstream"})
    http("POST", "/proxies/a/toxics", {"type": "timeout"})
    http("POST", "/proxies/a", {"enabled": False})
    resp = http("POST", "/reset", raw=b"ignored body")
    assert resp.status_code == 204 and resp.content == b""
    for proxy in http("GET", "/proxies").json().values():
        assert proxy["enabled"] is True and proxy["toxics"] == []


def test_metrics_route_exists_only_when_enabled(http: Any) -> None:
    assert http("GET", "/metrics").status_code == 404
    with BackgroundServer("127.0.0.1", 0, runtime_metrics=True) as srv:
        resp = requests.get(srv.url + "/metrics", timeout=5)
        assert resp.status_code == 200
        assert "process_cpu_seconds_total" in resp.text


def test_disabled_proxy_gets_its_resolved_listen_when_enabled(http: Any, free_port: int) -> None:
    create(http, "later", enabled=False, listen=f"localhost:{free_port}")
    enabled = http("PATCH", "/proxies/later", {"enabled": True})
    assert enabled.status_code == 200
    assert enabled.json()["listen"] == f"127.0.0.1:{free_port}" and enabled.json()["enabled"] is True


def test_background_server_reports_a_busy_port(busy_port: int) -> None:
    with pytest.raises(OSError, match="address already in use"):
        BackgroundServer("127.0.0.1", busy_port).start()
