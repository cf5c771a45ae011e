"""A fault-free stand-in for ``chaos.cluster.ChaosCluster`` in runner tests: the local-cluster
layer's ``LocalCluster`` with nothing between the nodes, so a heal has nothing to undo."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from consensus.testing.local import LocalCluster, plan_nodes


class PlainCluster(LocalCluster):
    @property
    def faults(self) -> dict[str, Any]:
        return {"killed": self.killed, "paused": sorted(self.paused)}

    async def heal(self) -> None:
        for name in sorted(self.paused):
            await self.resume(name)


def plain_factory(config: Any, data_dir: Path) -> PlainCluster:
    return PlainCluster(plan_nodes(config.nodes, data_dir))
