"""A 3-node cluster started by `consensus cluster`, driven over HTTP: forwarding, exactly-once,
validation, failover through the client, restart and catch-up. Real processes over loopback."""

from __future__ import annotations

import time
import uuid

import pytest
import requests

from apps.counter import CounterClient, SyncCounterClient
from consensus.errors import Rejected
from tests.integration.server_procs import LocalCluster, get_json, pid_alive, run_cli, wait_for

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = LocalCluster(tmp_path_factory.mktemp("cluster"), nodes=3)
    try:
        c.start()
        c.leader_index()
        yield c
    finally:
        c.stop()
        left = [pid for pid in c.all_pids() if pid_alive(pid)]
        assert not left, f"processes left behind: {left}"


def follower_index(cluster: LocalCluster) -> int:
    leader = cluster.leader_index()
    return (leader + 1) % cluster.n


def name() -> str:
    return "c-" + uuid.uuid4().hex[:12]


def test_status_reports_one_leader_that_every_node_agrees_on(cluster):
    def agreed():
        statuses = cluster.statuses()
        roles = [s and s["role"] for s in statuses]
        return statuses if roles.count("leader") == 1 and roles.count("follower") == cluster.n - 1 else None

    statuses = wait_for(agreed, 20, "one leader and followers")
    leader = next(i for i, s in enumerate(statuses) if s["role"] == "leader")
    for i, status in enumerate(statuses):
        assert set(status) >= {"id", "role", "term", "leader", "commit_index", "last_applied", "peers"}
        assert status["id"] == cluster.nodes[i]["raft"]
        assert status["leader"] == cluster.nodes[leader]["raft"]
        assert status["http"] == cluster.url(i)
        assert {p["id"] for p in status["peers"]} == {n["raft"] for n in cluster.nodes} - {status["id"]}
        assert {p["http"] for p in status["peers"]} == set(cluster.urls) - {cluster.url(i)}


def test_write_sent_to_a_follower_is_applied_everywhere(cluster):
    follower = follower_index(cluster)
    key = name()
    response = requests.post(f"{cluster.url(follower)}/v1/counters/{key}/incr", json={"by": 41}, timeout=10)
    assert response.status_code == 200, response.text
    assert response.json() == {"name": key, "value": 41}
    leader_raft = cluster.nodes[cluster.leader_index()]["raft"]
    assert response.headers["X-Raft-Leader"] == leader_raft
    assert int(response.headers["X-Raft-Term"]) >= 1
    assert int(response.headers["X-Raft-Applied-Index"]) >= 1
    for url in cluster.urls:  # stale reads on every node converge
        wait_for(lambda u=url: get_json(f"{u}/v1/counters/{key}?consistency=stale") == {"name": key, "value": 41}, 10,
                 f"{url} to apply the write")
    read = requests.get(f"{cluster.url(follower)}/v1/counters/{key}", timeout=10)
    assert read.json() == {"name": key, "value": 41}
    assert int(read.headers["X-Raft-Applied-Index"]) >= int(response.headers["X-Raft-Applied-Index"])


def test_a_counter_never_written_reads_zero(cluster):
    for consistency in ("linearizable", "stale"):
        body = get_json(f"{cluster.url(follower_index(cluster))}/v1/counters/{name()}?consistency={consistency}")
        assert body["value"] == 0


def test_put_with_expect_is_compare_and_set(cluster):
    url, key = cluster.url(follower_index(cluster)), name()
    assert requests.put(f"{url}/v1/counters/{key}", json={"value": 5}, timeout=10).json()["value"] == 5
    mismatch = requests.put(f"{url}/v1/counters/{key}", json={"value": 9, "expect": 4}, timeout=10)
    assert mismatch.status_code == 409
    error = mismatch.json()["error"]
    assert error["code"] == "rejected" and error["definite"] is True
    assert error["detail"] == {"name": key, "value": 5}
    ok = requests.put(f"{url}/v1/counters/{key}", json={"value": 9, "expect": 5}, timeout=10)
    assert ok.status_code == 200 and ok.json() == {"name": key, "value": 9}


def test_a_retried_request_with_the_same_idempotency_key_applies_once(cluster):
    key, idem = name(), uuid.uuid4().hex
    leader = cluster.leader_index()
    answers = []
    for i in (follower_index(cluster), leader, follower_index(cluster)):  # the retry may land anywhere
        response = requests.post(f"{cluster.url(i)}/v1/counters/{key}/incr", json={"by": 7},
                                 headers={"Idempotency-Key": idem}, timeout=10)
        assert response.status_code == 200, response.text
        answers.append(response.json())
    assert answers == [{"name": key, "value": 7}] * 3
    assert get_json(f"{cluster.url(leader)}/v1/counters/{key}")["value"] == 7
    reused = requests.post(f"{cluster.url(leader)}/v1/counters/{key}/incr", json={"by": 8},
                           headers={"Idempotency-Key": idem}, timeout=10)
    assert reused.status_code == 400  # the same key for a different request is refused
    assert get_json(f"{cluster.url(leader)}/v1/counters/{key}")["value"] == 7


HUGE = b'{"by": 1, "pad": "' + b"x" * 200_000 + b'"}'
MALFORMED = [
    ("POST", "/v1/counters/a/incr", b"{not json", 400, "invalid_request"),
    ("POST", "/v1/counters/a/incr", b"", 400, "invalid_request"),
    ("POST", "/v1/counters/a/incr", b"[1, 2]", 400, "invalid_request"),
    ("POST", "/v1/counters/a/incr", b'{"by": "1"}', 400, "invalid_request"),
    ("POST", "/v1/counters/a/incr", b'{"by": true}', 400, "invalid_request"),
    ("POST", "/v1/counters/a/incr", b'{"by": 1.5}', 400, "invalid_request"),
    ("POST", "/v1/counters/a/incr", b'{"by": 9223372036854775808}', 400, "invalid_request"),
    ("POST", "/v1/counters/a/incr", b'{"by": NaN}', 400, "invalid_request"),
    ("POST", "/v1/counters/a/incr", b'{"by": 1, "extra": 0}', 400, "invalid_request"),
    ("POST", "/v1/counters/a/incr", b'{}', 400, "invalid_request"),
    ("POST", "/v1/counters/a/incr", b"\xff\xfe", 400, "invalid_request"),
    ("POST", "/v1/counters/a/incr", b"[" * 100_00 + b"]" * 100_00, 400, "invalid_request"),
    ("POST", "/v1/counters/a/incr", HUGE, 413, "payload_too_large"),
    ("PUT", "/v1/counters/a", b'{"expect": 1}', 400, "invalid_request"),
    ("PUT", "/v1/counters/a", b'{"value": null}', 400, "invalid_request"),
    ("PUT", "/v1/counters/a", b'{"value": -9223372036854775809}', 400, "invalid_request"),
    ("GET", "/v1/counters/a?consistency=eventual", b"", 400, "invalid_request"),
    ("GET", "/v1/counters/a?bogus=1", b"", 400, "invalid_request"),
    ("GET", "/v1/counters/a", b'{"unexpected": "body"}', 400, "invalid_request"),
    ("GET", "/v1/counters/" + "x" * 129, b"", 400, "invalid_request"),
    ("GET", "/v1/counters/a%20b", b"", 400, "invalid_request"),
    ("GET", "/v1/counters/%C3%A9", b"", 400, "invalid_request"),
    ("POST", "/v1/counters/a/decr", b'{"by": 1}', 404, "not_found"),
    ("POST", "/v1/counters/a/reset", b"", 404, "not_found"),
    ("GET", "/v1/nothing", b"", 404, "not_found"),
    ("DELETE", "/v1/counters/a", b"", 405, "method_not_allowed"),
    ("POST", "/v1/members", b'{"id": "no-port"}', 400, "invalid_request"),
    ("POST", "/v1/members", b'{"id": "127.0.0.1:70000"}', 400, "invalid_request"),
    ("DELETE", "/v1/members/not-an-address", b"", 400, "invalid_request"),
    ("DELETE", "/v1/members/127.0.0.1:1", b"", 404, "not_found"),
    ("POST", "/v1/leader/transfer", b'{"to": 7}', 400, "invalid_request"),
]


@pytest.mark.parametrize("method, path, body, status, code", MALFORMED, ids=[f"{m} {p[:40]} {b[:20]!r}" for m, p, b, *_ in MALFORMED])
def test_malformed_requests_get_the_right_4xx_json_error(cluster, method, path, body, status, code):
    for i in (follower_index(cluster), cluster.leader_index()):
        response = requests.request(method, cluster.url(i) + path, data=body, timeout=10)
        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert error["code"] == code and error["definite"] is True and error["message"]
        assert "Traceback" not in response.text


def test_malformed_headers_get_a_400(cluster):
    url = cluster.url(follower_index(cluster)) + "/v1/counters/a/incr"
    for headers in ({"X-Request-Timeout": "soon"}, {"X-Request-Timeout": "-1"}, {"X-Request-Timeout": "nan"},
                    {"Idempotency-Key": "x" * 300}, {"Idempotency-Key": "has space"}):
        response = requests.post(url, json={"by": 1}, headers=headers, timeout=10)
        assert response.status_code == 400, (headers, response.text)
    assert all(get_json(u + "/livez") for u in cluster.urls)


def test_metrics_show_raft_state_requests_and_errors(cluster):
    text = requests.get(cluster.url(cluster.leader_index()) + "/metrics", timeout=10).text
    for metric in ("raftwork_raft_role{role=\"leader\"} 1.0", "raftwork_raft_term", "raftwork_raft_commit_index",
                   "raftwork_raft_last_applied", "raftwork_proposals_total", "raftwork_http_request_duration_seconds_bucket",
                   "raftwork_http_errors_total{code=\"invalid_request\"}"):
        assert metric in text, metric


def test_health_endpoints(cluster):
    for url in cluster.urls:
        assert requests.get(url + "/livez", timeout=5).status_code == 200
        ready = requests.get(url + "/readyz", timeout=5)
        assert ready.status_code == 200 and ready.json()["ready"] is True


def test_live_openapi_document_lists_the_counter_routes(cluster):
    document = get_json(cluster.url(0) + "/openapi.json")
    assert document["openapi"].startswith("3.")
    assert set(document["paths"]["/v1/counters/{name}"]) == {"get", "put"}
    assert "post" in document["paths"]["/v1/counters/{name}/incr"]


async def test_client_writes_again_within_seconds_after_the_leader_is_killed(cluster):
    async with CounterClient(cluster.urls, timeout=20) as counters:
        key = name()
        assert await counters.incr(key, 1) == 1
        old = cluster.leader_index()
        cluster.kill(old)
        started = time.monotonic()
        assert await counters.incr(key, 1) == 2
        failover = time.monotonic() - started
        assert failover < 10, f"writes resumed only after {failover:.1f}s"
        assert await counters.get(key) == 2
        with pytest.raises(Rejected) as info:
            await counters.set(key, 10, expect=0)
        assert info.value.detail["value"] == 2

    survivors = tuple(i for i in range(cluster.n) if i != old)
    new = cluster.leader_index(among=survivors)
    assert new != old
    out = run_cli("status", "--endpoints", ",".join(cluster.urls))
    assert out.returncode == 1  # one endpoint is down, and it says so in one line
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
    rows = [line.split() for line in out.stdout.splitlines()[1:]]
    leader_row = [r for r in rows if len(r) > 3 and r[2] == "leader"]
    assert [r[1] for r in leader_row] == [cluster.nodes[new]["raft"]]

    # The killed node restarts on its data dir and catches up.
    cluster.restart(old)
    with SyncCounterClient([cluster.url(old)], timeout=10) as on_old:
        wait_for(lambda: on_old.get(key, consistency="stale") == 2, 30, "the restarted node to catch up")
    leader_commit = get_json(cluster.url(new) + "/v1/status")["commit_index"]
    wait_for(lambda: (get_json(cluster.url(old) + "/v1/status") or {}).get("last_applied", -1) >= leader_commit, 30,
             "the restarted node to apply the leader's log")
    cluster.leader_index()  # and every node agrees on one leader again
