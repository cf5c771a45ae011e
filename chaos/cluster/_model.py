"""The cluster's plain data, from the local-cluster layer: node records, errors, the leader rule."""

from __future__ import annotations

from consensus.testing.local import ClusterError, NodeInfo, agreed_leader

__all__ = ["ClusterError", "NodeInfo", "agreed_leader"]
