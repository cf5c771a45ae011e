"""The cluster's plain data: node records, errors, and the rule that names the leader."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping


class ClusterError(Exception):
    """The cluster could not do what was asked (a node failed to start, a proxy is gone...)."""


@dataclass(frozen=True)
class NodeInfo:
    """One node as the harness sees it; ``pid`` is None while the node is killed."""

    name: str
    raft: str
    http: str
    pid: int | None
    log: Path


def agreed_leader(statuses: Mapping[str, Mapping[str, Any]], raft: Mapping[str, str], n: int) -> str | None:
    """Return the node that leads by the rule of :meth:`ChaosCluster.leader`, given the statuses
    of the reachable nodes (name -> ``/v1/status`` body), every node's Raft address and the size."""
    for name, status in statuses.items():
        if status.get("role") != "leader":
            continue
        term, me = status.get("term", 0), raft[name]
        supporters = sum(1 for s in statuses.values() if s.get("leader") == me and s.get("term") == term)
        conflicting = any(s.get("leader") not in (None, me) and s.get("term", 0) >= term for s in statuses.values())
        if supporters > n // 2 and not conflicting:
            return name
    return None


def _last_line(path: Path) -> str:
    try:
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""
