"""Several Raft groups on real processes: a process hosts a member of several groups, keys are
routed to their group by the shard map, any node relays a key of a group it does not host, and
``consensus status`` / ``consensus cluster --groups`` show every group."""

from __future__ import annotations

import json
import subprocess

import aiohttp
import pytest

from consensus.shards import ShardMap
from consensus.testing.local import NodeSpec, plan_groups, start_with_retries
from consensus.testing.procs import HOST, pick_ports
from tests.integration.server_procs import ROOT, consensus_cmd, env, free_port_range, run_cli

pytestmark = pytest.mark.timeout(180)


async def _request(session: aiohttp.ClientSession, method: str, url: str, body: object = None,
                   headers: dict[str, str] | None = None) -> tuple[int, dict, dict]:
    async with session.request(method, url, json=body, headers=headers or {},
                               timeout=aiohttp.ClientTimeout(total=10)) as r:
        return r.status, await r.json(), dict(r.headers)


def _names_per_group(shards: ShardMap, count: int = 40) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {g: [] for g in shards.groups}
    for i in range(count):
        found[shards.group_of(f"c{i}")].append(f"c{i}")
    return found


async def test_counters_live_in_their_key_group_and_every_node_sees_every_group(tmp_path):
    cluster = await start_with_retries(lambda: plan_groups(3, 3, tmp_path, log_level="warning",
                                                           extra_args=("--fsync", "never")))
    async with cluster:
        leaders = await cluster.wait_for_group_leaders()
        assert set(leaders) == {"g1", "g2", "g3"}
        shards = ShardMap.load(tmp_path / "shards.json")
        per_group = _names_per_group(shards)
        assert all(per_group.values())  # 40 names hash onto every one of 3 groups
        async with aiohttp.ClientSession() as s:
            # Write through node 1, one counter per group; each lands on the member of its own group.
            for group, names in per_group.items():
                status, body, headers = await _request(s, "POST", f"{cluster.endpoints[0]}/v1/counters/{names[0]}/incr",
                                                       {"by": 5})
                assert (status, body["value"]) == (200, 5)
                assert headers["X-Raft-Node"] == cluster.specs["n1"].groups[group]
            # Every node reads every counter, each from its group.
            for url in cluster.endpoints:
                for group, names in per_group.items():
                    status, body, headers = await _request(s, "GET", f"{url}/v1/counters/{names[0]}")
                    assert (status, body["value"]) == (200, 5), (url, group)
            # The counter is in its own group only: read in another group (explicit header), it was never written.
            name, group = per_group["g1"][0], "g2"
            status, body, headers = await _request(s, "GET", f"{cluster.endpoints[1]}/v1/counters/{name}",
                                                   headers={"X-Raft-Group": group})
            assert (status, body["value"]) == (200, 0)
            assert headers["X-Raft-Node"] == cluster.specs["n2"].groups["g2"]
            # Status: the first group's fields at the top, every hosted group under "groups".
            status, body, _ = await _request(s, "GET", f"{cluster.endpoints[2]}/v1/status")
            assert status == 200 and body["group"] == "g1"
            assert [(g["group"], g["id"]) for g in body["groups"]] == [(g, r) for g, r in cluster.specs["n3"].groups.items()]
            assert all(g["leader"] == cluster.specs[leaders[g["group"]]].groups[g["group"]] for g in body["groups"])
            # Bad input stays a 4xx JSON error.
            for headers, code, expected in (({"X-Raft-Group": "nosuch"}, 404, "not_found"),
                                            ({"X-Raft-Group": "bad name!"}, 400, "invalid_request")):
                status, body, _ = await _request(s, "GET", f"{cluster.endpoints[0]}/v1/counters/x", headers=headers)
                assert (status, body["error"]["code"]) == (code, expected)
            status, body, _ = await _request(s, "POST", f"{cluster.endpoints[0]}/v1/counters/x/incr", {"by": 1, "extra": 2})
            assert (status, body["error"]["code"]) == (400, "invalid_request")
            status, body, _ = await _request(s, "GET", f"{cluster.endpoints[0]}/v1/counters/x?nosuch=1")
            assert (status, body["error"]["code"]) == (400, "invalid_request")
        # consensus status: one row per (endpoint, group).
        out = run_cli("status", "--endpoints", ",".join(cluster.endpoints))
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        assert lines[0].split()[:2] == ["ENDPOINT", "GROUP"]
        assert sorted((line.split()[0], line.split()[1]) for line in lines[1:]) == sorted(
            (url, g) for url in cluster.endpoints for g in ("g1", "g2", "g3"))


def _split_plan(tmp_path) -> list[NodeSpec]:
    """Two processes, one one-member group each: a hosts g1 only, b hosts g2 only."""
    raft_a, raft_b, http_a, http_b = pick_ports(4)
    shards = ShardMap.from_dict({"groups": {
        "g1": [{"raft": f"{HOST}:{raft_a}", "http": f"http://{HOST}:{http_a}"}],
        "g2": [{"raft": f"{HOST}:{raft_b}", "http": f"http://{HOST}:{http_b}"}]}})
    shards.write(tmp_path / "shards.json")
    return [NodeSpec(name=name, raft=f"{HOST}:{raft}", http=f"{HOST}:{http}", data_dir=tmp_path / name,
                     log=tmp_path / f"{name}.log", peers=shards.peers(group), groups={group: f"{HOST}:{raft}"},
                     shards_file=tmp_path / "shards.json", log_level="warning", extra_args=("--fsync", "never"))
            for name, group, raft, http in (("a", "g1", raft_a, http_a), ("b", "g2", raft_b, http_b))]


async def test_a_node_relays_a_key_of_a_group_it_does_not_host(tmp_path):
    cluster = await start_with_retries(lambda: _split_plan(tmp_path))
    async with cluster:
        shards = ShardMap.load(tmp_path / "shards.json")
        name = _names_per_group(shards)["g2"][0]
        a, b = cluster.endpoints
        await cluster.wait_for_group_leaders()
        async with aiohttp.ClientSession() as s:
            status, body, headers = await _request(s, "POST", f"{a}/v1/counters/{name}/incr", {"by": 3})
            assert (status, body["value"]) == (200, 3)
            assert headers["X-Raft-Node"] == cluster.specs["b"].raft  # answered by g2's member, in b
            status, body, _ = await _request(s, "GET", f"{b}/v1/counters/{name}")
            assert body["value"] == 3
            # With g2's only process down, a's relay fails definitely (nothing reached it), never a 500.
            await cluster.kill("b")
            status, body, _ = await _request(s, "GET", f"{a}/v1/counters/{name}")
            assert (status, body["error"]["code"], body["error"]["definite"]) == (503, "unavailable", True)


@pytest.mark.parametrize("args, phrase", [
    (["--group", "g1=127.0.0.1:7001"], "needs --shards"),
    (["--group", "bad name", "--id", "127.0.0.1:7001", "--peers", "127.0.0.1:7001"], "group name"),
    (["--group", "g1=127.0.0.1:7001", "--id", "127.0.0.1:7001"], "do not mix"),
])
def test_serve_refuses_bad_group_flags_in_one_line(args, phrase):
    out = run_cli("serve", *args, "--http", "127.0.0.1:8001", "--data-dir", "d")
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1 and phrase in out.stderr


def test_serve_refuses_a_member_missing_from_the_shard_map(tmp_path):
    (tmp_path / "shards.json").write_text(json.dumps({"groups": {"g1": [{"raft": "127.0.0.1:7001", "http": "http://127.0.0.1:8001"}]}}))
    out = run_cli("serve", "--group", "g1=127.0.0.1:7009", "--shards", str(tmp_path / "shards.json"),
                  "--http", "127.0.0.1:8001", "--data-dir", str(tmp_path / "d"))
    assert out.returncode == 2 and "not a member of group g1" in out.stderr
    (tmp_path / "bad.json").write_text('{"groups": {}}')
    out = run_cli("serve", "--group", "g1=127.0.0.1:7001", "--shards", str(tmp_path / "bad.json"),
                  "--http", "127.0.0.1:8001", "--data-dir", str(tmp_path / "d"))
    assert out.returncode == 2 and "at least one group" in out.stderr


def test_cluster_command_runs_groups_and_writes_the_shard_map(tmp_path):
    nodes, groups = 1, 2
    for _ in range(3):
        base = free_port_range(nodes * groups + nodes)
        proc = subprocess.Popen(consensus_cmd("cluster", "--groups", str(groups), "--nodes", str(nodes),
                                              "--base-port", str(base), "--http-base-port", str(base + nodes * groups),
                                              "--data-dir", str(tmp_path / "c"), "--log-level", "warning"),
                                cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines: list[str] = []
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append(line)
                if "cluster ready" in line or "in use" in line:
                    break
            if any("cluster ready" in line for line in lines):
                assert [line.split()[1] for line in lines if line.startswith("group ")] == ["g1", "g2"]
                shards = ShardMap.load(tmp_path / "c" / "shards.json")
                assert list(shards.groups) == ["g1", "g2"]
                assert shards.groups["g2"][0].raft == f"127.0.0.1:{base + 1}"
                out = run_cli("status", "--endpoints", f"http://127.0.0.1:{base + 2}", "--json")
                assert [g["group"] for g in json.loads(out.stdout)[0]["groups"]] == ["g1", "g2"]
                return
        finally:
            proc.terminate()
            assert proc.wait(30) == 0 or "in use" in "".join(lines)
    pytest.fail("no free ports for the cluster: " + "".join(lines))
