"""Client sessions over HTTP on a real `consensus cluster`: numbered writes apply once, however
late the retry, and an expired session is a definite 409 (never a silent second apply)."""

from __future__ import annotations

import uuid

import pytest
import requests

from consensus.client import Client
from consensus.errors import Indeterminate, SessionExpired
from tests.integration.server_procs import LocalCluster, pid_alive

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = LocalCluster(tmp_path_factory.mktemp("sessions"), nodes=3)
    try:
        c.start()
        c.leader_index()
        yield c
    finally:
        c.stop()
        assert not [pid for pid in c.all_pids() if pid_alive(pid)]


def counter() -> str:
    return "s-" + uuid.uuid4().hex[:10]


def incr(url: str, name: str, session: str | None, key: str | None = None) -> requests.Response:
    headers = {"X-Raft-Session": session} if session else {}
    if key:
        headers["Idempotency-Key"] = key
    return requests.post(f"{url}/v1/counters/{name}/incr", json={"by": 1}, headers=headers, timeout=10)


def test_a_retried_number_applies_once_on_any_node(cluster):
    opened = requests.post(f"{cluster.url(0)}/v1/clients", timeout=10)
    assert opened.status_code == 201
    client_id = opened.json()["client_id"]
    assert opened.json()["session_ttl_ms"] == 3600 * 1000
    name = counter()
    first = incr(cluster.url(0), name, f"{client_id}:1:1")
    # The same request number retried through another node (a follower forwards it).
    again = incr(cluster.url(1), name, f"{client_id}:1:1")
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json() == {"name": name, "value": 1}
    assert incr(cluster.url(2), name, f"{client_id}:2:2").json()["value"] == 2


def test_a_closed_session_is_a_definite_409_and_applies_nothing(cluster):
    client_id = requests.post(f"{cluster.url(0)}/v1/clients", timeout=10).json()["client_id"]
    assert requests.delete(f"{cluster.url(1)}/v1/clients/{client_id}", timeout=10).json() == {"closed": client_id}
    name = counter()
    refused = incr(cluster.url(0), name, f"{client_id}:1:1")
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "session_expired" and refused.json()["error"]["definite"] is True
    assert requests.get(f"{cluster.url(0)}/v1/counters/{name}", timeout=10).json()["value"] == 0
    assert requests.delete(f"{cluster.url(0)}/v1/clients/{client_id}", timeout=10).status_code == 404


@pytest.mark.parametrize("header", ["1:2", "0:1:1", "1:1:2", "x:y:z", "1:1:1:1", "9" * 30 + ":1:1"])
def test_a_malformed_session_header_is_400(cluster, header):
    response = incr(cluster.url(0), counter(), header)
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_request"


def test_two_clients_using_the_same_key_string_do_not_collide(cluster):
    a = requests.post(f"{cluster.url(0)}/v1/clients", timeout=10).json()["client_id"]
    b = requests.post(f"{cluster.url(0)}/v1/clients", timeout=10).json()["client_id"]
    name = counter()
    assert incr(cluster.url(0), name, f"{a}:1:1", key="req-17").json()["value"] == 1
    assert incr(cluster.url(0), name, f"{b}:1:1", key="req-17").json()["value"] == 2


async def test_the_client_numbers_its_writes_and_reopens_an_expired_session(cluster):
    async with Client(cluster.urls, timeout=10) as client:
        name = counter()
        for _ in range(3):
            await client.request("POST", f"/v1/counters/{name}/incr", body={"by": 1}, write=True)
        first = client.client_id
        assert first is not None
        requests.delete(f"{cluster.url(0)}/v1/clients/{first}", timeout=10)  # as if it had expired
        answer = await client.request("POST", f"/v1/counters/{name}/incr", body={"by": 1}, write=True)
        assert answer.body["value"] == 4  # nothing was applied under the dead session: a new one goes on
        assert client.client_id not in (None, first)


async def test_an_expired_session_after_an_unknown_outcome_is_never_a_silent_second_apply(cluster):
    # The client saw no answer to its first attempt (it may have applied), then learns the session
    # is gone: it must say "unknown", not open a new session and apply the write again.
    from consensus.client import _client

    async with Client(cluster.urls, timeout=3, attempt_timeout=None) as client:
        name = counter()
        await client.request("POST", f"/v1/counters/{name}/incr", body={"by": 1}, write=True)
        client_id = client.client_id
        original = client._send
        calls = {"n": 0}

        async def first_answer_lost(url, method, path, body, params, key, remaining, session=None):
            calls["n"] += 1
            response = await original(url, method, path, body, params, key, remaining, session)
            if calls["n"] == 1:
                requests.delete(f"{cluster.url(0)}/v1/clients/{client_id}", timeout=10)
                raise _client._Lost("answer lost on the way back")
            return response

        client._send = first_answer_lost
        with pytest.raises(Indeterminate):
            await client.request("POST", f"/v1/counters/{name}/incr", body={"by": 1}, write=True)
    assert requests.get(f"{cluster.url(0)}/v1/counters/{name}", timeout=10).json()["value"] == 2  # applied once


def test_session_expired_is_definite_in_the_error_table():
    assert SessionExpired.definite and SessionExpired.http_status == 409
