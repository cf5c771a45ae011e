"""What happens to cross-group transactions after the protocol: on real processes (3 groups x 3
nodes, the kv app, one cluster for the module).

- a plain GET that meets a write intent older than the intent timeout resolves it through the
  record (a client that died after prepare: aborted; a coordinator that died after deciding:
  committed), and reads the outcome;
- client sessions: a session's request retried (same client id and number) applies once, for a
  cross-group transaction, a single-group transaction and a plain put on a group that does not
  hold the session;
- garbage collection: finished transactions are dropped after ``txn_retention_s`` once forgotten,
  and a record whose locks are still held is kept however old.

The tests play a crashed coordinator by sending the protocol's steps themselves
(``POST /v1/kv-internal``) and stopping half way, as ``test_txn_groups.py`` does."""

from __future__ import annotations

import hashlib
import uuid

import aiohttp
import pytest
import pytest_asyncio

from consensus.shards import ShardMap
from consensus.testing.local import plan_groups, start_with_retries
from tests.integration.chaos_helpers import eventually
from tests.integration.test_txn_groups import get, keys_on, post, step

pytestmark = [pytest.mark.timeout(240), pytest.mark.asyncio(loop_scope="module")]
INTENT_TIMEOUT_MS = 1000


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def groups(tmp_path_factory):
    root = tmp_path_factory.mktemp("txn-lifecycle")
    env = {"RAFTWORK_INTENT_TIMEOUT_MS": str(INTENT_TIMEOUT_MS)}
    cluster = await start_with_retries(lambda: plan_groups(3, 3, root, apps=("kv",), log_level="warning",
                                                           extra_args=("--fsync", "never"), env=env))
    async with cluster:
        await cluster.wait_for_group_leaders()
        async with aiohttp.ClientSession() as session:
            yield cluster, ShardMap.load(root / "shards.json"), session


async def intent_on(s, url, group, key):
    return (await step(s, url, group, "query", {"op": "get_intent", "key": key}))["intent"]


async def aged(s, url, group, key, txn):
    """Wait until ``txn``'s write intent on ``key`` is older than the timeout (leader time: no sleep to guess)."""
    async def old():
        intent = await intent_on(s, url, group, key)
        assert intent is not None and intent["txn"] == txn, intent
        return intent["age_ms"] >= INTENT_TIMEOUT_MS
    await eventually(old, 30, f"the intent of {txn} on {key} to age")


async def prepare_by_hand(s, url, txn, writes: dict[str, tuple[str, str]]):
    """Begin ``txn`` on g1 and prepare ``writes`` ({group: (key, value)}): a coordinator that stops here."""
    record = await step(s, url, "g1", "command", {"op": "txn_begin", "id": txn, "participants": sorted(writes)})
    assert record["state"] == "pending"
    for group, (key, value) in writes.items():
        vote = await step(s, url, group, "command", {"op": "txn_prepare", "id": txn, "coordinator": "g1", "reads": [],
                                                     "writes": [{"put": {"key": key, "value": value}}]})
        assert vote == {"vote": "yes"}


async def test_a_plain_get_resolves_an_old_intent_through_the_record(groups):
    cluster, shards, s = groups
    a, b = keys_on(shards, "g1", "g2")
    url, reader = cluster.endpoints[0], cluster.endpoints[2]
    for key in (a, b):
        async with s.put(f"{url}/v1/kv/{key}", json={"value": "old"}) as r:
            assert r.status == 200
    # A client that died after prepare: the record is pending. The next plain reader aborts it.
    dead = "dead-" + uuid.uuid4().hex
    await prepare_by_hand(s, url, dead, {"g1": (a, "new"), "g2": (b, "new")})
    await aged(s, url, "g2", b, dead)
    assert (await get(s, reader, b))["value"] == "old"
    assert (await step(s, url, "g1", "query", {"op": "txn_record", "id": dead}))["state"] == "aborted"
    assert await intent_on(s, url, "g1", a) is None and await intent_on(s, url, "g2", b) is None  # every participant
    # A coordinator that died after deciding committed: the next plain reader finishes the commit.
    late = "late-" + uuid.uuid4().hex
    await prepare_by_hand(s, url, late, {"g1": (a, "moved"), "g2": (b, "moved")})
    decided = await step(s, url, "g1", "command", {"op": "txn_decide", "id": late, "decision": "committed",
                                                   "result": {"succeeded": True, "responses": [{"put": {"prev": None}}] * 2}})
    assert decided["state"] == "committed"
    await aged(s, url, "g1", a, late)
    assert (await get(s, reader, a))["value"] == "moved"
    assert await intent_on(s, url, "g2", b) is None and (await get(s, url, b))["value"] == "moved"
    # The reader forgot the record for it (the garbage collector may drop it after the retention).
    async def forgotten():
        return (await step(s, url, "g1", "query", {"op": "txn_record", "id": late}))["forgotten"]
    await eventually(forgotten, 10, "the resolver's txn_forget")
    # A young intent is not waited for: the read answers the last committed value at once.
    young = "young-" + uuid.uuid4().hex
    await prepare_by_hand(s, url, young, {"g1": (a, "y"), "g2": (b, "y")})
    assert (await get(s, reader, b))["value"] == "moved"
    await step(s, url, "g1", "command", {"op": "txn_decide", "id": young, "decision": "aborted"})
    for group in ("g1", "g2"):
        await step(s, url, group, "command", {"op": "txn_finish", "id": young, "decision": "aborted"})


async def test_a_session_retry_applies_once_across_groups(groups):
    cluster, shards, s = groups
    status, opened = await post(s, cluster.endpoints[1], "/v1/clients", None)
    assert status == 201, opened
    client = opened["client_id"]
    # Sessions live in the first group: one opened elsewhere would share client ids with it.
    status, refused = await post(s, cluster.endpoints[1], "/v1/clients", None, {"X-Raft-Group": "g2"})
    assert (status, refused["error"]["code"]) == (400, "invalid_request"), refused
    a, b, c = keys_on(shards, "g2", "g3", "g3")  # the first key (coordinator) is not on g1, the session's group
    created = [{"key": k, "target": "version", "op": "==", "value": 0} for k in (a, b)]
    body = {"compare": created, "success": [{"put": {"key": a, "value": "1"}}, {"put": {"key": b, "value": "1"}}]}
    session = {"X-Raft-Session": f"{client}:1:1"}
    first = await post(s, cluster.endpoints[0], "/v1/txn", body, session)
    again = await post(s, cluster.endpoints[2], "/v1/txn", body, session)  # the same request number, another node
    assert first[0] == again[0] == 200 and first[1]["succeeded"] and again[1]["succeeded"], (first, again)
    assert (await get(s, cluster.endpoints[0], a))["version"] == 1 and (await get(s, cluster.endpoints[0], b))["version"] == 1
    # A new number is a new request: the compares now fail.
    status, third = await post(s, cluster.endpoints[0], "/v1/txn", body, {"X-Raft-Session": f"{client}:2:2"})
    assert (status, third["succeeded"]) == (200, False)
    # One group that is not the session's: a single-group transaction and a plain put, each retried.
    one = {"compare": [{"key": c, "target": "version", "op": "==", "value": 0}], "success": [{"put": {"key": c, "value": "x"}}]}
    answers = [await post(s, url, "/v1/txn", one, {"X-Raft-Session": f"{client}:3:3"}) for url in cluster.endpoints[:2]]
    assert [a_[1]["succeeded"] for a_ in answers] == [True, True] and answers[0][1] == answers[1][1], answers
    puts = []
    for url in cluster.endpoints[1:]:
        async with s.put(f"{url}/v1/kv/{c}", json={"value": "y"}, headers={"X-Raft-Session": f"{client}:4:4"}) as r:
            puts.append((r.status, await r.json()))
    assert puts[0] == puts[1] and puts[0][0] == 200, puts
    assert (await get(s, cluster.endpoints[0], c))["version"] == 2
    # The client library with sessions on (its default) runs them too.
    from apps.kv import Compare, KVClient, Op
    from consensus.client import Client

    d, e = keys_on(shards, "g3", "g1")
    async with Client(cluster.endpoints, timeout=20.0) as library:
        result = await KVClient(library).txn([Compare.version(d, "==", 0)], [Op.put(d, "p"), Op.put(e, "q")])
        assert result.succeeded and library.client_id is not None
    assert (await get(s, cluster.endpoints[1], e))["value"] == "q"


async def test_finished_txns_are_collected_after_the_retention_and_held_ones_are_kept(groups):
    cluster, shards, s = groups
    url = cluster.endpoints[0]
    for group in ("g1", "g2", "g3"):
        async with s.put(f"{url}/v1/kv-settings", json={"txn_retention_s": 1}, headers={"X-Raft-Group": group}) as r:
            assert r.status == 200 and (await r.json())["txn_retention_s"] == 1
    a, b = keys_on(shards, "g1", "g3")
    key = "gc-" + uuid.uuid4().hex
    status, done = await post(s, url, "/v1/txn", {"success": [{"put": {"key": a, "value": "1"}}, {"put": {"key": b, "value": "1"}}]},
                              {"Idempotency-Key": key})
    assert (status, done["succeeded"]) == (200, True), done
    txn = hashlib.sha256(key.encode()).hexdigest()[:32] + ".0"  # the coordinator's id for attempt 0 of this key
    async def forgotten():
        record = await step(s, url, "g1", "query", {"op": "txn_record", "id": txn})
        assert record is not None and record["state"] == "committed"
        return record["forgotten"]
    await eventually(forgotten, 10, "the coordinator's txn_forget")
    # A transaction whose locks are still held (decided, never finished) must outlive the retention.
    held = "held-" + uuid.uuid4().hex
    c, d = keys_on(shards, "g1", "g2")
    await prepare_by_hand(s, url, held, {"g1": (c, "h"), "g2": (d, "h")})
    await step(s, url, "g1", "command", {"op": "txn_decide", "id": held, "decision": "committed",
                                         "result": {"succeeded": True, "responses": [{"put": {"prev": None}}] * 2}})

    async def collected():
        for group in ("g1", "g2", "g3"):  # the collector runs as commands apply: give each group one
            async with s.put(f"{url}/v1/kv/{keys_on(shards, group)[0]}", json={"value": "tick"}) as r:
                assert r.status == 200
        active = {g: await step(s, url, g, "query", {"op": "txn_active"}) for g in ("g1", "g2", "g3")}
        gone = await step(s, url, "g1", "query", {"op": "txn_record", "id": txn}) is None
        return gone and active["g3"]["finished"] == 0 and active
    active = await eventually(collected, 30, "the committed transaction to be collected everywhere")
    assert (await get(s, url, a))["value"] == "1"  # collecting the record changes no value
    record = await step(s, url, "g1", "query", {"op": "txn_record", "id": held})
    assert record["state"] == "committed" and not record["forgotten"]
    assert held in active["g1"]["prepared"] and held in active["g2"]["prepared"]
    # Its reader finishes it (committed), forgets it, and then it goes too.
    await aged(s, url, "g2", d, held)
    assert (await get(s, url, d))["value"] == "h"

    async def held_collected():
        async with s.put(f"{url}/v1/kv/{a}", json={"value": "tick"}) as r:
            assert r.status == 200
        return await step(s, url, "g1", "query", {"op": "txn_record", "id": held}) is None
    await eventually(held_collected, 30, "the resolved transaction to be collected")
    for group in ("g1", "g2", "g3"):
        async with s.put(f"{url}/v1/kv-settings", json={"txn_retention_s": 600}, headers={"X-Raft-Group": group}) as r:
            assert r.status == 200
