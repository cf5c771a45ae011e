"""The config store on a real three-node cluster (`consensus cluster --apps counter,kv`), over HTTP.

A failed compare-and-swap is a definite 409 with the current kv; bad input is a 400 (or 413)
that changes nothing; keys with '/' and percent signs round-trip through the client and raw
HTTP; pages walk every key once; a watch long-poll wakes when the write applies; a compacted
revision is a 410 naming the oldest one left; the CLI speaks etcdctl's words.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid

import pytest
import requests

from apps.kv import Compare, KVClient, Op, SyncKVClient
from consensus.errors import Compacted, RevisionMismatch
from tests.integration.server_procs import LocalCluster, consensus_cmd, env, pid_alive, run_cli, ROOT

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = LocalCluster(tmp_path_factory.mktemp("kv"), nodes=3, extra=("--apps", "counter,kv"))
    try:
        c.start()
        c.leader_index()
        yield c
    finally:
        c.stop()
        assert not [pid for pid in c.all_pids() if pid_alive(pid)]


def unique(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}/"


def follower(cluster) -> str:
    return cluster.url((cluster.leader_index() + 1) % 3)


def digest(cluster) -> str:
    return requests.get(cluster.url(cluster.leader_index()) + "/v1/status?digest=true", timeout=10).json()["state_digest"]


def test_a_cas_conflict_is_a_definite_409_with_the_current_kv(cluster):
    url, key = follower(cluster), unique() + "cas"
    first = requests.put(f"{url}/v1/kv/{key}", json={"value": "a", "prev_revision": 0}, timeout=10)
    assert first.status_code == 200 and first.json()["prev"] is None
    revision = first.json()["revision"]
    current = {"key": key, "value": "a", "create_revision": revision, "mod_revision": revision, "version": 1}
    for body in ({"value": "b", "prev_revision": revision + 1000}, {"value": "b", "prev_revision": 0}):
        refused = requests.put(f"{url}/v1/kv/{key}", json=body, timeout=10)
        assert refused.status_code == 409, refused.text
        error = refused.json()["error"]
        assert (error["code"], error["definite"], error["detail"]) == ("revision_mismatch", True, current)
    refused = requests.delete(f"{url}/v1/kv/{key}", params={"prev_revision": revision - 1}, timeout=10)
    assert refused.status_code == 409 and refused.json()["error"]["detail"] == current
    missing = requests.put(f"{url}/v1/kv/{key}-none", json={"value": "b", "prev_revision": 5}, timeout=10)
    assert missing.status_code == 409 and missing.json()["error"]["detail"] is None
    assert requests.get(f"{url}/v1/kv/{key}", timeout=10).json() == current  # nothing changed
    swapped = requests.put(f"{url}/v1/kv/{key}", json={"value": "c", "prev_revision": revision}, timeout=10)
    assert swapped.status_code == 200 and swapped.json()["prev"] == current


async def test_the_client_raises_revision_mismatch_and_runs_transactions(cluster):
    key = unique() + "k"
    async with KVClient(cluster.urls) as kv:
        put = await kv.put(key, "1")
        with pytest.raises(RevisionMismatch) as info:
            await kv.put(key, "2", prev_revision=put.revision + 1)
        assert info.value.definite and info.value.detail["mod_revision"] == put.revision
        lost = await kv.txn([Compare.value(key, "==", "nope")], [Op.put(key, "x")], [Op.get(key)])
        assert not lost.succeeded and lost.responses[0].value == "1" and lost.revision >= put.revision
        won = await kv.txn([Compare.version(key, "==", 1), Compare.mod_revision(key, "==", put.revision)],
                           [Op.put(key, "2"), Op.put(key + "2", "b"), Op.get(key)])
        assert won.succeeded and won.responses[0].revision == won.revision == won.responses[1].revision
        assert won.responses[2].value == "2" and won.responses[2].version == 2  # a txn reads its own writes
        assert (await kv.get(key + "2")).create_revision == won.revision  # both writes at one revision


BAD = [
    ("PUT", "/v1/kv/a%01b", {"value": "x"}, None, 400),
    ("PUT", "/v1/kv/" + "%C3%A9" * 257, {"value": "x"}, None, 400),  # 514 bytes
    ("PUT", "/v1/kv/" + "k" * 513, {"value": "x"}, None, 400),
    ("PUT", "/v1/kv/ok", {"value": "x" * (32 * 1024 + 1)}, None, 400),
    ("PUT", "/v1/kv/ok", {"value": "x" * (70 * 1024)}, None, 413),
    ("PUT", "/v1/kv/ok", {"value": 5}, None, 400),
    ("PUT", "/v1/kv/ok", {"value": "x", "prev_revision": -1}, None, 400),
    ("PUT", "/v1/kv/ok", {"value": "x", "extra": 1}, None, 400),
    ("DELETE", "/v1/kv/ok", None, {"prev_revision": "x"}, 400),
    ("POST", "/v1/txn", {"success": [{"put": {"key": "a", "value": "1"}}, {"delete": {"key": "a"}}]}, None, 400),
    ("POST", "/v1/txn", {"compare": [{"key": "a", "target": "version", "op": "==", "value": "1"}]}, None, 400),
    ("POST", "/v1/txn", {"compare": [{"key": "a", "target": "value", "op": "<=", "value": "1"}]}, None, 400),
    ("POST", "/v1/txn", {"success": [{"put": {"key": "a", "value": "1"}, "get": {"key": "a"}}]}, None, 400),
    ("POST", "/v1/txn", {"success": [{"put": {"key": "a\n", "value": "1"}}]}, None, 400),
    ("POST", "/v1/txn", {"success": [{"get": {"key": "a"}}] * 129}, None, 400),
    ("GET", "/v1/kv", None, {"limit": "0"}, 400),
    ("GET", "/v1/kv", None, {"prefix": "a\x02"}, 400),
    ("GET", "/v1/watch", None, {"timeout_ms": "60001"}, 400),
    ("GET", "/v1/watch", None, {"from_revision": "0"}, 400),
    ("PUT", "/v1/kv-settings", {"watch_window": 0}, None, 400),
    ("PUT", "/v1/kv-settings", {}, None, 400),
]


def test_bad_input_is_refused_and_changes_nothing(cluster):
    before = digest(cluster)
    for method, path, body, params, status in BAD:
        for url in (cluster.url(cluster.leader_index()), follower(cluster)):
            response = requests.request(method, url + path, json=body, params=params, timeout=10)
            assert response.status_code == status, (method, path[:60], response.text[:300])
            error = response.json()["error"]
            assert error["definite"] is True and error["code"] in ("invalid_request", "payload_too_large"), error
    assert digest(cluster) == before


async def test_keys_with_slashes_and_percent_signs_round_trip(cluster):
    base = unique("rt")
    keys = [base + k for k in ("a/b/c", "..", ".", "%2F", "100%", "sp ace", "q?x#y", "é/ü", "/", "a//b", "+")]
    async with KVClient(cluster.urls) as kv:
        for i, key in enumerate(keys):
            await kv.put(key, str(i))
        for i, key in enumerate(keys):
            assert (await kv.get(key)).value == str(i), key
        assert [x.key for x in (await kv.list(base)).kvs] == sorted(keys)
        assert [x.key for x in (await kv.list(base + "a/")).kvs] == [base + "a//b", base + "a/b/c"]
    # Raw HTTP: unencoded slashes are the same key as encoded ones.
    url = follower(cluster)
    assert requests.put(f"{url}/v1/kv/{base}app/db/host", json={"value": "h"}, timeout=10).status_code == 200
    encoded = f"{url}/v1/kv/" + requests.utils.quote(base + "app/db/host", safe="")
    assert requests.get(encoded, timeout=10).json()["value"] == "h"
    assert requests.get(f"{url}/v1/kv/{base}nope", timeout=10).json()["error"]["code"] == "key_not_found"


def test_pages_walk_every_key_once(cluster):
    base = unique("page")
    keys = sorted(f"{base}{i:03d}" for i in range(23))
    with SyncKVClient(cluster.urls) as kv:
        for key in reversed(keys):
            kv.put(key, key)
        kv.put(base[:-1] + "0", "outside the prefix")  # sorts right after the prefix's keys
        seen, after, pages = [], None, 0
        while True:
            page = kv.list(base, limit=7, after=after)
            pages += 1
            seen += [x.key for x in page.kvs]
            if not page.more:
                break
            after = page.last_key
        assert seen == keys and pages == 4
        stale = kv.list(base, limit=7, consistency="stale")
        assert [x.key for x in stale.kvs] == keys[:7] and stale.more


async def test_a_watch_wakes_when_the_write_applies(cluster):
    base = unique("w")
    async with KVClient([follower(cluster)]) as watcher, KVClient(cluster.urls) as writer:
        watch = watcher.watch(base, from_revision=await writer.revision() + 1)
        poll = asyncio.ensure_future(watch.poll())  # waits on the server until the put applies there
        put = await writer.put(base + "x", "1")
        events = await asyncio.wait_for(poll, 10)
        assert [(e.type, e.key, e.value, e.revision) for e in events] == [("put", base + "x", "1", put.revision)]
        deleted = await writer.delete(base + "x")
        events = await watch.poll()
        assert [(e.type, e.value, e.revision) for e in events] == [("delete", None, deleted.revision)]
    # A long-poll with nothing to say answers empty when its timeout_ms runs out.
    answer = requests.get(follower(cluster) + "/v1/watch", params={"prefix": base + "zzz", "timeout_ms": 50}, timeout=10)
    assert answer.status_code == 200 and answer.json()["events"] == []


async def test_a_compacted_revision_is_410_with_the_oldest_revision(cluster):
    url = cluster.url(0)
    base = unique("c")
    try:
        assert requests.put(url + "/v1/kv-settings", json={"watch_window": 3}, timeout=10).status_code == 200
        async with KVClient(cluster.urls) as kv:
            first = await kv.put(base + "0", "0")
            revisions = [(await kv.put(base + str(i), str(i))).revision for i in range(1, 6)]
            # A watch is answered from the answering node's own state: a linearizable read there
            # first makes that node apply every put above (it may be a follower that lags).
            assert requests.get(url + f"/v1/kv/{base}5", timeout=10).json()["mod_revision"] == revisions[-1]
            refused = requests.get(url + "/v1/watch", params={"from_revision": first.revision}, timeout=10)
            assert refused.status_code == 410
            error = refused.json()["error"]
            assert error["code"] == "compacted" and error["oldest_revision"] == revisions[-4] + 1
            with pytest.raises(Compacted) as info:
                await kv.watch(base, from_revision=first.revision).poll()
            assert info.value.oldest_revision == revisions[-4] + 1
            kept = await kv.watch(base, from_revision=error["oldest_revision"]).poll()
            assert [e.revision for e in kept] == revisions[-3:]
    finally:
        requests.put(url + "/v1/kv-settings", json={"watch_window": 10_000}, timeout=10)


def test_quotas_are_replicated_settings_with_a_409(cluster):
    url = cluster.url(1)
    status = requests.get(url + "/v1/kv-settings", timeout=10).json()
    try:
        requests.put(url + "/v1/kv-settings", json={"max_keys": status["keys"]}, timeout=10).raise_for_status()
        refused = requests.put(url + "/v1/kv/" + unique("q") + "new", json={"value": "x"}, timeout=10)
        assert refused.status_code == 409 and refused.json()["error"]["code"] == "quota_exceeded"
        assert refused.json()["error"]["definite"] is True
    finally:
        requests.put(url + "/v1/kv-settings", json={"max_keys": 1_000_000}, timeout=10)


def kv_cli(cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("kv", *args, "--endpoints", ",".join(cluster.urls))


def test_the_cli_speaks_etcdctl(cluster):
    base = unique("cli")
    put = kv_cli(cluster, "put", base + "db/host", "10.0.0.5")
    assert (put.returncode, put.stdout) == (0, "OK\n"), put.stderr
    got = kv_cli(cluster, "get", base + "db/host")
    assert got.stdout == f"{base}db/host\n10.0.0.5\n"
    revision = json.loads(kv_cli(cluster, "get", base + "db/host", "--json").stdout)["mod_revision"]
    conflict = kv_cli(cluster, "put", base + "db/host", "x", "--prev-revision", str(revision + 1))
    assert conflict.returncode == 1 and len(conflict.stderr.strip().splitlines()) == 1 and "mod_revision" in conflict.stderr
    assert kv_cli(cluster, "put", base + "db/host", "10.0.0.6", "--prev-revision", str(revision)).returncode == 0
    assert kv_cli(cluster, "put", base + "db/port", "5432").returncode == 0
    assert kv_cli(cluster, "get", base, "--prefix", "--print-value-only").stdout == "10.0.0.6\n5432\n"
    assert kv_cli(cluster, "list", base).stdout == f"{base}db/host\n{base}db/port\n"
    assert kv_cli(cluster, "get", base + "missing").stdout == ""  # as etcdctl: nothing, exit 0
    watch = subprocess.Popen(consensus_cmd("kv", "watch", base, "--prefix", "--rev", str(revision), "--count", "4",
                                           "--endpoints", ",".join(cluster.urls)),
                             cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert kv_cli(cluster, "del", base + "db/port").stdout == "1\n"
        out, err = watch.communicate(timeout=60)
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.wait()
    assert watch.returncode == 0, err
    assert out == (f"PUT\n{base}db/host\n10.0.0.5\nPUT\n{base}db/host\n10.0.0.6\n"
                   f"PUT\n{base}db/port\n5432\nDELETE\n{base}db/port\n\n")
    for bad in (["put", base + "x"], ["get", "a\tb"], ["watch", "k", "--rev", "0"], ["put", "k", "v", "extra"]):
        out = kv_cli(cluster, *bad)
        assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr, bad
