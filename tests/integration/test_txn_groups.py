"""Transactions across Raft groups on real processes (3 groups x 3 nodes, the kv app).

The test plays a crashed coordinator by sending the protocol's steps itself
(``POST /v1/kv-internal``) and stopping half way: the replicated record and intents are all a
survivor has, as when the coordinating process is killed."""

from __future__ import annotations

import asyncio
import uuid

import aiohttp
import pytest

from consensus.shards import ShardMap
from consensus.testing.local import plan_groups, start_with_retries

pytestmark = pytest.mark.timeout(240)
YOUNG_CHECK_TIMEOUT_MS = 3000


@pytest.fixture
async def groups(tmp_path, monkeypatch, request):
    # A test that checks "refused while the lock is young" asks for a longer intent timeout, so
    # that this holds on a loaded machine too (the default is 1 s).
    marker = request.node.get_closest_marker("intent_timeout_ms")
    if marker is not None:
        monkeypatch.setenv("RAFTWORK_INTENT_TIMEOUT_MS", str(marker.args[0]))
    cluster = await start_with_retries(lambda: plan_groups(3, 3, tmp_path, apps=("kv",), log_level="warning",
                                                           extra_args=("--fsync", "never")))
    async with cluster:
        await cluster.wait_for_group_leaders()
        async with aiohttp.ClientSession() as session:
            yield cluster, ShardMap.load(tmp_path / "shards.json"), session


def keys_on(shards: ShardMap, *groups: str) -> list[str]:
    """Return one fresh key on each named group."""
    tag = uuid.uuid4().hex[:6]
    found = []
    for group in groups:
        found.append(next(k for k in (f"k-{tag}-{i}" for i in range(1000)) if shards.group_of(k) == group and k not in found))
    return found


async def post(session, url, path, body, headers=None):
    async with session.post(url + path, json=body, headers=headers or {}, timeout=aiohttp.ClientTimeout(total=30)) as r:
        return r.status, await r.json()


async def step(session, url, group, kind, message):
    status, body = await post(session, url, "/v1/kv-internal", {kind: message}, {"X-Raft-Group": group})
    assert status == 200, body
    return body["result"]


async def get(session, url, key):
    async with session.get(f"{url}/v1/kv/{key}", timeout=aiohttp.ClientTimeout(total=30)) as r:
        body = await r.json()
        return body if r.status == 200 else None


def transfer(a: str, b: str, va: str, vb: str, compare=()) -> dict:
    return {"compare": list(compare), "success": [{"put": {"key": a, "value": va}}, {"put": {"key": b, "value": vb}}]}


async def test_a_cross_group_txn_commits_atomically_and_a_retry_under_its_key_applies_once(groups):
    cluster, shards, s = groups
    a, b = keys_on(shards, "g1", "g2")
    url = cluster.endpoints[1]
    body = transfer(a, b, "1", "2", [{"key": a, "target": "version", "op": "==", "value": 0}])
    status, first = await post(s, url, "/v1/txn", body, {"Idempotency-Key": "once-" + a})
    assert (status, first["succeeded"]) == (200, True), first
    assert [r["put"]["prev"] for r in first["responses"]] == [None, None]
    status, again = await post(s, cluster.endpoints[2], "/v1/txn", body, {"Idempotency-Key": "once-" + a})
    assert (status, again["succeeded"]) == (200, True)
    assert (await get(s, url, a))["version"] == 1 and (await get(s, url, b))["value"] == "2"
    # Without the key it is a new transaction: the compare now fails and nothing is written.
    status, second = await post(s, url, "/v1/txn", body)
    assert (status, second["succeeded"]) == (200, False)
    assert (await get(s, url, a))["version"] == 1
    # A read of both keys in one transaction.
    status, read = await post(s, cluster.endpoints[0], "/v1/txn", {"success": [{"get": {"key": a}}, {"get": {"key": b}}]})
    assert [r["get"]["value"] for r in read["responses"]] == ["1", "2"]


@pytest.mark.intent_timeout_ms(YOUNG_CHECK_TIMEOUT_MS)
async def test_a_txn_whose_coordinator_dies_after_prepare_is_resolved_by_the_next_reader(groups):
    cluster, shards, s = groups
    a, b = keys_on(shards, "g1", "g2")
    url = cluster.endpoints[0]
    for key in (a, b):
        async with s.put(f"{url}/v1/kv/{key}", json={"value": "old"}) as r:
            assert r.status == 200
    txn = "dead-" + uuid.uuid4().hex
    assert (await step(s, url, "g1", "command", {"op": "txn_begin", "id": txn, "participants": ["g1", "g2"]}))["state"] == "pending"
    for group, key in (("g1", a), ("g2", b)):
        vote = await step(s, url, group, "command", {"op": "txn_prepare", "id": txn, "coordinator": "g1", "reads": [],
                                                     "writes": [{"put": {"key": key, "value": "new"}}]})
        assert vote == {"vote": "yes"}
    # The coordinator is gone. A write to a locked key is refused while the lock is young...
    async with s.put(f"{url}/v1/kv/{b}", json={"value": "x"}, headers={"X-Request-Timeout": "0.5"}) as r:
        refused = await r.json()
        assert (r.status, refused["error"]["code"], refused["error"]["definite"]) == (409, "intent_held", True)
        assert refused["error"]["detail"]["txn"] == txn
        age_ms = refused["error"]["detail"]["age_ms"]
    # Time itself is what makes a lock resolvable (no event to wait on): let it age past the timeout.
    await asyncio.sleep(max(0.0, (YOUNG_CHECK_TIMEOUT_MS - age_ms) / 1000) + 0.5)
    # ...and the next reader (a transaction reading both keys) aborts it through the record and reads.
    status, read = await post(s, cluster.endpoints[2], "/v1/txn", {"success": [{"get": {"key": a}}, {"get": {"key": b}}]})
    assert status == 200, read
    assert [r["get"]["value"] for r in read["responses"]] == ["old", "old"]
    record = await step(s, url, "g1", "query", {"op": "txn_record", "id": txn})
    assert record["state"] == "aborted"
    # The locks are gone everywhere, and a late retry of the prepare cannot lay them again.
    late = await step(s, url, "g2", "command", {"op": "txn_prepare", "id": txn, "coordinator": "g1", "reads": [],
                                                "writes": [{"put": {"key": b, "value": "new"}}]})
    assert late["vote"] == "finished" and late["state"] == "aborted"
    async with s.put(f"{url}/v1/kv/{b}", json={"value": "after"}) as r:
        assert r.status == 200


async def test_a_coordinator_group_that_loses_its_leader_mid_commit_still_finishes(groups):
    cluster, shards, s = groups
    a, b = keys_on(shards, "g1", "g2")
    leaders = await cluster.wait_for_group_leaders()
    survivor = next(n for n in cluster.names if n != leaders["g1"])
    url = cluster.specs[survivor].url
    txn = "mid-" + uuid.uuid4().hex
    await step(s, url, "g1", "command", {"op": "txn_begin", "id": txn, "participants": ["g1", "g2"]})
    for group, key in (("g1", a), ("g2", b)):
        await step(s, url, group, "command", {"op": "txn_prepare", "id": txn, "coordinator": "g1", "reads": [],
                                              "writes": [{"put": {"key": key, "value": "moved"}}]})
    decided = await step(s, url, "g1", "command", {"op": "txn_decide", "id": txn, "decision": "committed",
                                                   "result": {"succeeded": True, "responses": [{"put": {"prev": None}}] * 2}})
    assert decided["state"] == "committed"
    await cluster.kill(leaders["g1"])  # the coordinator group's leader, before any participant finished
    # A reader on a survivor meets the locks, finds the record committed (at g1's new leader) and finishes it.
    status, read = await post(s, url, "/v1/txn", {"success": [{"get": {"key": a}}, {"get": {"key": b}}]})
    assert status == 200, read
    assert [r["get"]["value"] for r in read["responses"]] == ["moved", "moved"]
    # And new transactions coordinated by g1 keep committing.
    status, body = await post(s, url, "/v1/txn", transfer(a, b, "x", "y"))
    assert (status, body["succeeded"]) == (200, True), body


async def test_two_conflicting_txns_never_both_commit(groups):
    cluster, shards, s = groups
    a, b = keys_on(shards, "g2", "g3")
    url = cluster.endpoints[0]
    async with s.put(f"{url}/v1/kv/{a}", json={"value": "start"}) as r:
        revision = (await r.json())["revision"]
    for round_ in range(8):
        bodies = [transfer(a, b, f"{round_}-{who}", f"{round_}-{who}",
                           [{"key": a, "target": "mod_revision", "op": "==", "value": revision}]) for who in ("p", "q")]
        answers = await asyncio.gather(*(post(s, cluster.endpoints[i], "/v1/txn", body) for i, body in enumerate(bodies)))
        won = [who for who, (status, answer) in zip("pq", answers) if status == 200 and answer["succeeded"]]
        for status, answer in answers:
            assert status == 200 or (status == 409 and answer["error"]["code"] == "txn_aborted"), answer
        assert len(won) <= 1, answers
        va, vb = (await get(s, url, a)), (await get(s, url, b))
        if won:
            assert va["value"] == vb["value"] == f"{round_}-{won[0]}"
        revision = va["mod_revision"]


async def test_a_malformed_internal_step_is_a_400_and_changes_nothing(groups):
    cluster, shards, s = groups
    url = cluster.endpoints[0]
    before = await step(s, url, "g1", "query", {"op": "txn_record", "id": "t"})
    for body in ({"command": {}, "query": {}}, {}, {"command": {"op": "nope"}}, {"command": {"op": "txn_begin"}},
                 {"query": {"op": "txn_record"}}, {"command": {"op": "txn_decide", "id": "t", "decision": "maybe"}}):
        status, answer = await post(s, url, "/v1/kv-internal", body, {"X-Raft-Group": "g1"})
        assert status == 400 and answer["error"]["code"] == "invalid_request", (body, answer)
    assert await step(s, url, "g1", "query", {"op": "txn_record", "id": "t"}) == before
