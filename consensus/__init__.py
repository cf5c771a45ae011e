"""raftwork's consensus layer: replicated state machines on a Raft log.

::

    from consensus import Node, NodeConfig, ReplicatedObject, command, query, Consistency
"""

from consensus.errors import (
    ConsensusError,
    Indeterminate,
    InvalidRequest,
    NotFound,
    NotLeader,
    Rejected,
    Unavailable,
)
from consensus.machine import ApplyContext, ReplicatedObject, StateMachine, command, query
from consensus.node import Consistency, MachineProxy, Node, NodeConfig, NodeEvent, NodeStatus, ReadResult

__all__ = [
    "ApplyContext",
    "ConsensusError",
    "Consistency",
    "Indeterminate",
    "InvalidRequest",
    "MachineProxy",
    "Node",
    "NodeConfig",
    "NodeEvent",
    "NodeStatus",
    "NotFound",
    "NotLeader",
    "ReadResult",
    "Rejected",
    "ReplicatedObject",
    "StateMachine",
    "Unavailable",
    "command",
    "query",
]
