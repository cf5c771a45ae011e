"""The bench's local clusters: raftwork and etcd start, survive kill -9 and SIGSTOP, and stop by PID."""

from __future__ import annotations

import pytest

from consensus.bench import load
from consensus.bench.etcd import EtcdCluster, etcd_binary, etcd_version
from consensus.bench.faults import failover_sample
from consensus.bench.launch import RaftworkCluster
from consensus.bench.load import LoadSpec

needs_etcd = pytest.mark.skipif(etcd_binary() is None, reason="etcd is not installed (on Debian: apt-get install etcd-server)")


def _all_stopped(cluster) -> bool:
    return all(p.poll() is not None for p in cluster.started)


def test_a_raftwork_cluster_survives_a_kill_and_stops_every_process_even_a_paused_one(tmp_path):
    cluster = RaftworkCluster(3, tmp_path)
    with cluster:
        leader = cluster.leader()
        first_term = cluster.status(leader).term
        sample = failover_sample(cluster, "rw-incr", writers=4, window=5)
        assert sample is not None and 0 < sample < 5
        new_leader = cluster.leader()
        assert cluster.status(new_leader).term > first_term  # a new election happened
        cluster.pause(cluster.follower())  # left paused: stopping must still work
        assert len(cluster.running()) == 3
    assert _all_stopped(cluster) and len(cluster.started) == 4  # 3 + the failover victim, restarted


def test_a_cluster_that_fails_while_starting_stops_what_it_started(tmp_path):
    cluster = RaftworkCluster(3, tmp_path)
    cluster.wait_ready = lambda timeout=60.0: (_ for _ in ()).throw(RuntimeError("boom"))
    with pytest.raises(RuntimeError, match="boom"):
        with cluster:
            pass
    assert _all_stopped(cluster) and len(cluster.started) == 3


@needs_etcd
def test_etcd_is_3_4_and_takes_every_baseline_operation_through_its_gateway(tmp_path):
    assert etcd_version().startswith("3.4")
    cluster = EtcdCluster(3, tmp_path)
    with cluster:
        leader, follower = cluster.leader(), cluster.follower()
        for workload, locks in (("etcd-put", 1), ("etcd-range", 1), ("etcd-range-serializable", 1), ("etcd-lock", 1), ("etcd-lock", 8)):
            for node in (leader, follower):
                result = load.run(LoadSpec(workload, [cluster.urls[node]], concurrency=3, duration=0.3, warmup=0, locks=locks))
                assert result["ops"] > 0 and result["errors"] == {}, (workload, result["errors"])
        sample = failover_sample(cluster, "etcd-put", writers=4, window=5)
        assert sample is not None and 0 < sample < 5
        assert len(cluster.running()) == 3 and cluster.status(cluster.leader()).applied > 0
    assert _all_stopped(cluster) and len(cluster.started) == 4
