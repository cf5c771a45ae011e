"""Every error path of the HTTP error table answers its status, code and definiteness.

Each row is reached for real: nodes in this process behind real aiohttp servers, no error raised
by hand. The documented table in docs/http.md is checked against ``consensus.errors`` too.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from consensus import errors
from consensus.server import AppSpec, Call, Route
from consensus.server.routing import FORWARDED_HEADER
from tests.integration.served import ServedCluster, request

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parents[2]
TOKEN = "table-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def _apply_then_fail(call: Call) -> Any:
    # A bug after the write committed: the answer must not claim that nothing happened.
    await call.server.propose(call, "counter", {"op": "incr", "key": "boom", "by": 1})
    raise RuntimeError("a bug in a handler")


BOOM = AppSpec(name="boom", machines=dict, routes=lambda: [
    Route("POST", "/test/boom", _apply_then_fail, "boom", "apply, then raise", mutating=True, on_leader=lambda c: True),
])

# (name, method, path, headers, raw body, expected status, code, definite); path "{follower}"-relative
# rows go to the follower, the others to the leader.
ROWS = [
    ("bad json", "POST", "/v1/counters/a/incr", AUTH, b"{", 400, "invalid_request", True),
    ("unknown field", "PUT", "/v1/counters/a", AUTH, b'{"value": 1, "x": 2}', 400, "invalid_request", True),
    ("timeout below 1 ms", "GET", "/v1/counters/a", {"X-Request-Timeout": "0.0009"}, b"", 400, "invalid_request", True),
    ("timeout 5e-324", "GET", "/v1/counters/a", {"X-Request-Timeout": "5e-324"}, b"", 400, "invalid_request", True),
    ("no token", "POST", "/v1/counters/a/incr", {}, b'{"by": 1}', 401, "unauthorized", True),
    ("no route", "GET", "/v1/nothing", {}, b"", 404, "not_found", True),
    ("wrong method", "DELETE", "/v1/counters/a", AUTH, b"", 405, "method_not_allowed", True),
    ("body too large", "PUT", "/v1/counters/a", AUTH, b'{"value": 1}' + b" " * 70000, 413, "payload_too_large", True),
    ("cas mismatch", "PUT", "/v1/counters/a", AUTH, b'{"value": 1, "expect": 99}', 409, "rejected", True),
    ("forwarded to a follower", "PUT", "follower:/v1/counters/a", {**AUTH, FORWARDED_HEADER: "x"}, b'{"value": 1}',
     503, "not_leader", True),
    ("a bug after the write", "POST", "/test/boom", AUTH, b"", 500, "internal", False),
    ("a bug, through a follower", "POST", "follower:/test/boom", AUTH, b"", 500, "internal", False),
]


async def test_every_error_path_is_labelled_right(tmp_path):
    async with ServedCluster(2, tmp_path, extra_apps=[BOOM], token=TOKEN) as served:
        leader = await served.leader_index()
        wrong = []
        for name, method, path, headers, body, status, code, definite in ROWS:
            node = leader
            if path.startswith("follower:"):
                node, path = 1 - leader, path.removeprefix("follower:")
            got_status, answer, got_headers = await request(method, served.urls[node] + path, data=body, headers=headers)
            error = answer.get("error", {}) if isinstance(answer, dict) else {}
            got = (got_status, error.get("code"), error.get("definite"))
            if got != (status, code, definite):
                wrong.append(f"{name}: expected {(status, code, definite)}, got {got} {answer}")
            if status == 405 and "PUT" not in got_headers.get("Allow", ""):
                wrong.append(f"{name}: no Allow header naming the allowed methods: {got_headers}")
        assert not wrong, "\n".join(wrong)
        _, answer, _ = await request("GET", served.urls[leader] + "/v1/counters/boom")
        assert answer["value"] == 2  # both buggy requests did apply: "internal" was right not to be definite


async def test_a_write_a_leader_cannot_commit_is_a_504_and_indeterminate(tmp_path):
    # The leader keeps its role without a quorum for leader_fallback_timeout: a write it takes then
    # is submitted but cannot commit before the deadline.
    async with ServedCluster(2, tmp_path, node_options={"leader_fallback_timeout": 60.0}) as served:
        leader = await served.leader_index()
        await served.cluster.stop_node(1 - leader)
        status, answer, _ = await request("POST", served.urls[leader] + "/v1/counters/a/incr", json={"by": 1},
                                          headers={"X-Request-Timeout": "0.5"})
        assert status == 504, answer
        assert answer["error"]["code"] == "indeterminate" and answer["error"]["definite"] is False


async def test_a_node_that_knows_no_leader_answers_a_definite_503(tmp_path):
    async with ServedCluster(2, tmp_path, only=[0]) as served:  # its only peer never starts
        for method, path, body in (("POST", "/v1/counters/a/incr", {"by": 1}), ("GET", "/v1/counters/a", None)):
            status, answer, _ = await request(method, served.urls[0] + path, json=body, headers={"X-Request-Timeout": "2"})
            assert status == 503, answer
            assert answer["error"]["code"] == "unavailable" and answer["error"]["definite"] is True


def documented_rows() -> list[tuple[int, str, bool]]:
    text = (ROOT / "docs" / "http.md").read_text()
    rows = []
    for status, codes, definite in re.findall(r"^\s*\| (\d{3}) \| ([^|]+) \| (yes|\*\*no\*\*) \|", text, re.M):
        for code in re.findall(r"`(\w+)`", codes):
            rows.append((int(status), code, definite == "yes"))
    return rows


def test_the_documented_error_table_matches_the_error_classes():
    rows = documented_rows()
    assert rows, "docs/http.md has no error table"
    for status, code, definite in rows:
        cls = errors.error_class(code)
        assert cls is not None, f"docs/http.md lists {code!r}, which no error class has"
        assert (cls.http_status, cls.definite) == (status, definite), code
    every_code = {getattr(errors, name).code for name in errors.__all__ if isinstance(getattr(errors, name), type)}
    assert every_code == {code for _, code, _ in rows}, "every error code is in the table, and no other"
