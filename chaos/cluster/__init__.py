"""Control a local raftwork cluster for chaos tests: processes, Toxiproxy links and faults.

::

    from chaos.cluster import ChaosCluster

    async with ChaosCluster(n=3, apps=("counter",), data_dir=tmp_path) as c:
        leader = await c.wait_for_leader()
        await c.isolate(leader)          # cut its links (Toxiproxy proxies disabled)
        await c.kill("n2"); await c.restart("n2")
        await c.heal()

See ``docs/chaos-cluster.md``.
"""

from chaos.cluster._protocol import Cluster, FaultCluster
from chaos.cluster._cluster import ChaosCluster
from chaos.cluster._model import ClusterError, NodeInfo, agreed_leader
from chaos.cluster._links import Link
from consensus.testing.procs import pid_alive
from chaos.cluster._topology import complete_groups, groups_grudge, grudge_links

__all__ = ["ChaosCluster", "Cluster", "FaultCluster", "ClusterError", "Link", "NodeInfo", "agreed_leader", "complete_groups", "groups_grudge", "grudge_links",
           "pid_alive"]
