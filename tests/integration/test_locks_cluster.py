"""The lock service on real processes: three `consensus serve --apps counter,locks` nodes on loopback.

Clients are real too (a killed client is a child process killed with SIGKILL). Waiting is on
events or on polls with a deadline; nothing asserts how long anything took.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from apps.locks import LeaseLost, LockClient
from consensus.errors import LockHeld, SessionNotFound
from consensus.testing.local import LocalCluster, plan_nodes, start_with_retries
from consensus.testing.procs import child_env, pid_alive
from tests.integration.served import request, wait_for

pytestmark = pytest.mark.timeout(180)
ROOT = Path(__file__).resolve().parents[2]

HOLDER = """
import asyncio, sys
from apps.locks import LockClient

async def main():
    async with LockClient(sys.argv[1]) as locks:
        held = locks.lock("job", ttl=1.0)
        async with held as token:
            print(held.session.id, token, flush=True)
            await asyncio.sleep(600)

asyncio.run(main())
"""


async def cluster(tmp_path: Path) -> LocalCluster:
    return await start_with_retries(lambda: plan_nodes(3, tmp_path, apps=("counter", "locks"),
                                                       extra_args=("--fsync", "never")))


async def follower_url(c: LocalCluster) -> str:
    leader = await c.wait_for_leader()
    await c.wait_caught_up()
    return next(n.http for n in c.nodes if n.name != leader)


async def described(url: str, name: str) -> dict[str, Any]:
    status, body, _ = await request("GET", f"{url}/v1/locks/{name}")
    assert status == 200, body
    return body  # type: ignore[no-any-return]


async def test_a_killed_clients_lock_passes_to_the_next_waiter_once_its_session_expires(tmp_path):
    async with await cluster(tmp_path) as c:
        await c.wait_for_leader()
        holder = subprocess.Popen([sys.executable, "-c", HOLDER, ",".join(c.endpoints)], env=child_env(),
                                  stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout is not None
            session, token = holder.stdout.readline().split()
            async with LockClient(c.endpoints) as locks:
                mine = await locks.open_session(10000)
                waiting = asyncio.create_task(locks.acquire("job", mine.id, wait_ms=60000))
                await wait_for(lambda: _waits(locks, "job", mine.id), 20, "the waiter to queue")
                assert not waiting.done()
                os.kill(holder.pid, signal.SIGKILL)  # no release, no close: only the lease can end it
                holder.wait(10)
                grant = await asyncio.wait_for(waiting, 60)
                assert grant.session == mine.id and grant.token > int(token)
                with pytest.raises(SessionNotFound):
                    await locks.get_session(session)
        finally:
            if holder.poll() is None:
                os.kill(holder.pid, signal.SIGKILL)
                holder.wait(10)


async def _waits(locks: LockClient, name: str, session: str) -> bool:
    return any(w["session"] == session for w in (await locks.describe(name)).waiters)


async def test_a_kept_alive_lock_survives_a_leader_failover_and_tokens_keep_increasing(tmp_path):
    async with await cluster(tmp_path) as c:
        leader = await c.wait_for_leader()
        await c.wait_caught_up()
        async with LockClient(c.endpoints) as locks:
            held = locks.lock("f", ttl=2.0)
            async with held as token:
                await c.kill(leader)  # kill -9
                await c.wait_for_leader(other_than=leader)
                renewed = held.renewals
                # Two TTLs' worth of renewals after the failover: a lost lease would have shown by now.
                await wait_for(lambda: _true(held.renewals >= renewed + 6), 60, "keepalives under the new leader")
                state = await locks.describe("f")
                assert state.holders == [{"session": held.session.id, "mode": "exclusive", "token": token}]
                assert held.lost is None
            again = await locks.open_session(5000)
            later = await locks.acquire("f", again.id)
            assert later.token > token
            await c.restart(leader)


async def _true(value: bool) -> bool:
    return value


async def test_shared_holders_coexist_and_an_exclusive_waiter_on_a_follower_waits_for_all_of_them(tmp_path):
    async with await cluster(tmp_path) as c:
        follower = await follower_url(c)
        async with LockClient(c.endpoints) as locks:
            s1, s2, s3 = [await locks.open_session(20000) for _ in range(3)]
            g1 = await locks.acquire("db", s1.id, "shared")
            g2 = await locks.acquire("db", s2.id, "shared")
            assert {h["session"] for h in (await locks.describe("db")).holders} == {s1.id, s2.id}
            # The exclusive waiter's request is answered by a follower: it wakes on the follower's own apply.
            waiting = asyncio.create_task(request("POST", f"{follower}/v1/locks/db/acquire", timeout=90,
                                                  json={"session": s3.id, "mode": "exclusive", "wait_ms": 60000}))
            await wait_for(lambda: _waits(locks, "db", s3.id), 20, "the exclusive waiter to queue")
            with pytest.raises(LockHeld):  # shared is compatible with the holders, but may not pass the waiter
                await locks.acquire("db", (await locks.open_session(20000)).id, "shared")
            await locks.release("db", s1.id, g1.token)
            state = await locks.describe("db")  # linearizable: the release has applied
            assert state.holders == [{"session": s2.id, "mode": "shared", "token": g2.token}]
            assert state.waiters == [{"session": s3.id, "mode": "exclusive"}]
            assert not waiting.done()
            await locks.release("db", s2.id, g2.token)
            # Granted (a 200 with a grant, not the 409 a run-out wait gives) long before its 60 s
            # wait could end: the last release woke it.
            status, grant, headers = await asyncio.wait_for(waiting, 60)
            assert status == 200, grant
            assert headers["X-Raft-Node"] != headers["X-Raft-Leader"]  # a follower answered
            assert grant["session"] == s3.id and grant["mode"] == "exclusive" and grant["token"] > g2.token
            assert (await locks.describe("db")).holders == [{"session": s3.id, "mode": "exclusive",
                                                             "token": grant["token"]}]


async def test_a_wait_that_runs_out_is_a_definite_409_and_the_waiter_is_gone_everywhere(tmp_path):
    async with await cluster(tmp_path) as c:
        follower = await follower_url(c)
        async with LockClient(c.endpoints) as locks:
            a, b = await locks.open_session(20000), await locks.open_session(20000)
            await locks.acquire("x", a.id)
            status, body, _ = await request("POST", f"{follower}/v1/locks/x/acquire",
                                            json={"session": b.id, "wait_ms": 300})
            assert status == 409 and body["error"]["code"] == "lock_held" and body["error"]["definite"] is True
            for node in c.nodes:  # removed by a replicated command: no replica still has it queued
                assert (await described(node.http, "x"))["waiters"] == []
            again = await locks.acquire("x", a.id)  # the holder asking again gets the same grant
            assert again == await locks.acquire("x", a.id)


BAD = [
    ("POST", "/v1/sessions", {"ttl_ms": 10}),  # below the replicated minimum
    ("POST", "/v1/sessions", {"ttl_ms": -1}),
    ("POST", "/v1/sessions", {"ttl_ms": "10s"}),
    ("POST", "/v1/sessions", {}),
    ("POST", "/v1/sessions", {"ttl_ms": 1000, "extra": 1}),
    ("POST", "/v1/sessions/bad%20id/keepalive", None),
    ("POST", "/v1/locks/x/acquire", {"session": "1", "mode": "upgrade"}),
    ("POST", "/v1/locks/x/acquire", {"session": "1", "wait_ms": 60001}),
    ("POST", "/v1/locks/x/acquire", {"session": "1", "wait_ms": 1.5}),
    ("POST", "/v1/locks/x/acquire", {"mode": "shared"}),
    ("POST", "/v1/locks/bad!name/acquire", {"session": "1"}),
    ("POST", "/v1/locks/x/release", {"session": "1"}),
    ("POST", "/v1/locks/x/release", {"session": "1", "token": -5}),
    ("GET", "/v1/locks/" + "n" * 129, None),
    ("GET", "/v1/sessions/1?consistency=sometimes", None),
]


async def test_bad_input_gets_400_and_changes_nothing(tmp_path):
    async with await cluster(tmp_path) as c:
        leader = await c.wait_for_leader()
        url = c.node(leader).http
        before = await c.status(leader, digest=True)
        for method, path, body in BAD:
            status, answer, _ = await request(method, url + path, json=body)
            assert status == 400 and answer["error"]["code"] == "invalid_request", (path, body, answer)
        after = await c.status(leader, digest=True)
        assert (after["state_digest"], after["commit_index"]) == (before["state_digest"], before["commit_index"])


def _lock_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "consensus", "lock", *args], cwd=ROOT, env=child_env(),
                          capture_output=True, text=True, timeout=timeout)


async def test_consensus_lock_runs_the_command_with_the_token_and_releases(tmp_path):
    async with await cluster(tmp_path) as c:
        await c.wait_for_leader()
        endpoints = ",".join(c.endpoints)
        code = "import os, sys; print(os.environ['RAFTWORK_LOCK_TOKEN'], os.environ['RAFTWORK_LOCK_NAME']); sys.exit(3)"
        done = await asyncio.to_thread(_lock_cli, "deploy", "--ttl", "5", "--endpoints", endpoints, "--",
                                       sys.executable, "-c", code)
        assert done.returncode == 3, done.stderr  # the command's own exit code
        token, name = done.stdout.split()
        assert int(token) > 0 and name == "deploy"
        assert (await described(c.endpoints[0], "deploy"))["holders"] == []  # released on exit
        bad = await asyncio.to_thread(_lock_cli, "deploy", "--endpoints", endpoints)
        assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1


async def test_consensus_lock_kills_the_command_when_the_lease_is_lost(tmp_path):
    async with await cluster(tmp_path) as c:
        await c.wait_for_leader()
        pid_file = tmp_path / "child.pid"
        code = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(600)"
        cli = subprocess.Popen([sys.executable, "-m", "consensus", "lock", "job", "--ttl", "5", "--endpoints",
                                ",".join(c.endpoints), "--", sys.executable, "-c", code], cwd=ROOT, env=child_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            await wait_for(lambda: _true(pid_file.exists() and pid_file.read_text() != ""), 30, "the command to start")
            child = int(pid_file.read_text())
            session = (await described(c.endpoints[0], "job"))["holders"][0]["session"]
            status, _, _ = await request("DELETE", f"{c.endpoints[0]}/v1/sessions/{session}")  # the lease ends
            assert status == 200
            _, err = await asyncio.to_thread(cli.communicate, timeout=60)
            assert cli.returncode == 1 and "lease" in err and "killed" in err, err
            assert not pid_alive(child)
        finally:
            if cli.poll() is None:
                cli.kill()
                cli.wait(10)


async def test_lease_lost_reaches_the_body_of_lock(tmp_path):
    async with await cluster(tmp_path) as c:
        await c.wait_for_leader()
        async with LockClient(c.endpoints) as locks:
            held = locks.lock("body", ttl=1.0)
            with pytest.raises(LeaseLost):
                async with held:
                    await locks.close_session(held.session.id)  # someone ends the lease under us
                    await asyncio.sleep(60)  # cancelled by the keeper, turned into LeaseLost
            assert "expired" in (held.lost or "")
