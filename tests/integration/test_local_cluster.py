"""The local-cluster layer (``consensus.testing.local``) on real ``consensus serve`` processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap

import pytest

from consensus.testing.local import ClusterError, LocalCluster, PortTaken, plan_nodes, start_with_retries
from consensus.testing.procs import child_env, pid_alive
from tests.integration.server_procs import wait_for

pytestmark = pytest.mark.timeout(180)


def test_plan_gives_every_node_its_ports_dirs_and_view(tmp_path):
    specs = plan_nodes(3, tmp_path, apps=("counter",), raft_ports=[21001, 21002, 21003], http_ports=[22001, 22002, 22003])
    assert [s.name for s in specs] == ["n1", "n2", "n3"]
    assert [s.raft for s in specs] == ["127.0.0.1:21001", "127.0.0.1:21002", "127.0.0.1:21003"]
    assert specs[1].url == "http://127.0.0.1:22002" and specs[1].data_dir == tmp_path.resolve() / "n2"
    assert specs[1].log == tmp_path.resolve() / "n2.log"
    argv = specs[0].argv()
    assert argv[argv.index("--id") + 1] == "127.0.0.1:21001"
    assert argv[argv.index("--peers") + 1] == ("127.0.0.1:21001=http://127.0.0.1:22001,127.0.0.1:21002=http://127.0.0.1:22002,"
                                               "127.0.0.1:21003=http://127.0.0.1:22003")
    assert "--exit-with-parent" in argv and "--dial-route" not in argv
    with pytest.raises(ValueError):
        plan_nodes(0, tmp_path)
    free = plan_nodes(2, tmp_path)
    ports = {s.raft for s in free} | {s.http for s in free}
    assert len(ports) == 4  # picked ports are distinct


async def test_kill_restart_pause_and_stop_by_pid(tmp_path):
    c = LocalCluster(plan_nodes(3, tmp_path))
    try:
        await c.start()
        pids = [n.pid for n in c.nodes]
        assert all(pid and pid_alive(pid) for pid in pids)
        leader = await c.wait_for_leader()
        await c.kill(leader)
        assert c.node(leader).pid is None and c.killed == [leader]
        new = await c.wait_for_leader(other_than=leader)
        assert new != leader
        await c.restart(leader)
        assert c.killed == [] and c.node(leader).pid not in (None, *pids)
        await c.wait_caught_up()
        follower = next(n for n in c.names if n != new)
        await c.pause(follower)
        assert await c.status(follower) is None and c.paused == {follower}
        await c.resume(follower)
        assert (await c.status(follower, timeout=5.0)) is not None
        with pytest.raises(ClusterError):
            await c.restart(follower)  # it runs
        with pytest.raises(ValueError):
            await c.kill("n9")
    finally:
        await c.stop()
    assert len(c.pids_seen) == 4 and not [p for p in c.pids_seen if pid_alive(p)]
    log = c.node(leader).log.read_text()
    assert log.count("--- local cluster: starting") == 2 and "serving HTTP" in log
    manifest = c.manifest()
    assert [n["name"] for n in manifest["nodes"]] == ["n1", "n2", "n3"] and manifest["pids_seen"] == sorted(c.pids_seen)
    await c.stop()  # idempotent


async def test_a_node_that_fails_to_start_stops_the_others(tmp_path):
    specs = plan_nodes(2, tmp_path, extra_args=("--apps", "no-such-app"))
    c = LocalCluster(specs)
    with pytest.raises(ClusterError, match="exited with code"):
        await c.start()
    assert c.pids_seen and not [p for p in c.pids_seen if pid_alive(p)]


async def test_a_taken_port_is_retried_with_new_ports(tmp_path):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    plans = []

    def plan():
        port = taken.getsockname()[1] if not plans else None
        specs = plan_nodes(1, tmp_path, http_ports=[port] if port else None)
        plans.append(specs)
        return specs

    try:
        c = await start_with_retries(plan)
        try:
            assert len(plans) == 2 and await c.wait_for_leader() == "n1"
        finally:
            await c.stop()
        with pytest.raises(PortTaken):
            await LocalCluster(plan_nodes(1, tmp_path / "again", http_ports=[taken.getsockname()[1]])).start()
    finally:
        taken.close()


def test_children_stop_when_the_parent_is_killed(tmp_path):
    script = textwrap.dedent(f"""
        import asyncio, json, sys
        from consensus.testing.local import LocalCluster, plan_nodes

        async def main():
            c = LocalCluster(plan_nodes(2, {str(tmp_path)!r}))
            await c.start()
            print(json.dumps([n.pid for n in c.nodes]), flush=True)
            await asyncio.sleep(600)

        asyncio.run(main())
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=child_env())
    pids: list[int] = []
    try:
        assert parent.stdout is not None
        pids = json.loads(parent.stdout.readline())
        assert len(pids) == 2 and all(pid_alive(p) for p in pids)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        wait_for(lambda: not any(pid_alive(p) for p in pids), 15, "the orphaned nodes to stop")
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        for pid in pids:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
