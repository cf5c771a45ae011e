"""A 3-node cluster with a bearer token: followers forward the token, and the CLI's
`leader transfer` and `members add|remove` work through any endpoint."""

from __future__ import annotations

import subprocess

import pytest
import requests

from tests.integration.server_procs import ROOT, LocalCluster, env, free_port_range, get_json, pid_alive, run_cli, wait_for

pytestmark = pytest.mark.timeout(240)
TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("auth")
    (tmp / "token").write_text(TOKEN)
    c = LocalCluster(tmp / "data", nodes=3, extra=("--token-file", str(tmp / "token")))
    c.token_file = str(tmp / "token")
    try:
        c.start()
        c.leader_index()
        yield c
    finally:
        c.stop()
        assert not [pid for pid in c.all_pids() if pid_alive(pid)]


def test_a_follower_checks_and_forwards_the_token(cluster):
    follower = (cluster.leader_index() + 1) % 3
    url = cluster.url(follower) + "/v1/counters/t/incr"
    denied = requests.post(url, json={"by": 1}, timeout=10)
    assert denied.status_code == 401 and denied.json()["error"]["code"] == "unauthorized"
    ok = requests.post(url, json={"by": 1}, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert ok.status_code == 200 and ok.json() == {"name": "t", "value": 1}
    # The follower proposed it itself; its engine took it to the leader over the peer link.
    assert ok.headers["X-Raft-Node"] == cluster.nodes[follower]["raft"]
    assert requests.get(cluster.url(cluster.leader_index()) + "/v1/counters/t", timeout=10).json()["value"] == 1


def test_leader_transfer_from_the_cli(cluster):
    old = cluster.leader_index()
    target = cluster.nodes[(old + 2) % 3]["raft"]
    denied = run_cli("leader", "transfer", "--to", target, "--endpoints", cluster.url((old + 1) % 3))
    assert denied.returncode == 1 and "token" in denied.stderr
    out = run_cli("leader", "transfer", "--to", target, "--endpoints", cluster.url((old + 1) % 3),
                  "--token-file", cluster.token_file, "--timeout", "15")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"leader is now {target}"
    assert cluster.nodes[cluster.leader_index()]["raft"] == target


def test_members_add_and_remove_from_the_cli(cluster, tmp_path):
    base = free_port_range(2)
    raft, http = f"127.0.0.1:{base}", f"127.0.0.1:{base + 1}"
    out = run_cli("members", "add", raft, "--http", f"http://{http}", "--endpoints", ",".join(cluster.urls),
                  "--token-file", cluster.token_file, "--timeout", "15")
    assert out.returncode == 0, out.stderr
    peers = ",".join([f"{n['raft']}={n['http']}" for n in cluster.nodes] + [f"{raft}=http://{http}"])
    with open(tmp_path / "n4.log", "wb") as log:
        newcomer = subprocess.Popen(
            [*cluster.nodes[0]["argv"][:4], "--id", raft, "--peers", peers, "--http", http, "--data-dir", str(tmp_path / "n4"),
             "--token-file", cluster.token_file],
            cwd=ROOT, env=env(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        requests.post(cluster.url(0) + "/v1/counters/m/incr", json={"by": 4}, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
        wait_for(lambda: get_json(f"http://{http}/v1/counters/m?consistency=stale") == {"name": "m", "value": 4}, 30,
                 "the new member to catch up")
        leader = cluster.leader_index()
        assert raft in {p["id"] for p in get_json(cluster.url(leader) + "/v1/status")["peers"]}
        out = run_cli("members", "remove", raft, "--endpoints", ",".join(cluster.urls), "--token-file", cluster.token_file,
                      "--timeout", "15")
        assert out.returncode == 0, out.stderr
        wait_for(lambda: raft not in {p["id"] for p in get_json(cluster.url(cluster.leader_index()) + "/v1/status")["peers"]},
                 15, "the member to be removed")
    finally:
        newcomer.terminate()
        newcomer.wait(15)
    assert cluster.leader_index() in (0, 1, 2)
