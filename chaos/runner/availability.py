"""Availability figures of a run: how long clients stall when the leader is lost, and how long the
cluster takes to serve again after the final heal.

``leader_loss_stalls(history)`` is a pure function of the history: every nemesis start op carries
the leader agreed just before it (``leader``, recorded by the runner). A fault loses the leader
when it kills, pauses or restarts that node, moves leadership (restart-follower), or cuts the
leader off from a majority. Its stall is the time from the fault's start until the first ``ok``
completion of a client op invoked after the start and answered by a node (the lock workload's
fenced writes never reach the cluster): how long a client that arrived then waited.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any, Sequence

from chaos.history import Op

__all__ = ["Availability", "leader_loss_stalls", "loses_leader", "availability"]

_DOWN = ("kill", "pause")  # faults that take their ``nodes`` down (latency slows its nodes, no more)


def loses_leader(op: Op) -> bool:
    """Return whether the nemesis start ``op`` took the leader it names (extra ``leader``) away."""
    leader, value = op.get("leader"), op.value
    if not leader or not isinstance(value, dict):
        return False
    if op.f == "restart-follower" or (op.f in _DOWN and leader in (value.get("nodes") or ())):
        return True
    broken = {frozenset(pair) for key in ("cut", "one_way") for pair in value.get(key) or () if len(pair) == 2}
    members = op.get("members") or sorted({n for pair in broken for n in pair} | {leader})
    # The leader keeps its majority only with the nodes it still both hears from and reaches.
    reached = [n for n in members if n == leader or frozenset((leader, n)) not in broken]
    return len(reached) <= len(members) // 2


def leader_loss_stalls(history: Sequence[Op]) -> list[float]:
    """Return the client stall, in seconds, after every fault that lost the leader (see module doc)."""
    stalls = []
    began: int | None = None  # when the nemesis invoked the op being completed: the fault starts then
    began_at = 0
    for i, op in enumerate(history):
        if op.is_client or op.time is None:
            continue
        if op.type == "invoke":
            began, began_at = op.time, i
            continue
        if op.get("phase") != "start" or op.get("error") or began is None or not loses_leader(op):
            continue
        invoked_after: set[Any] = set()
        for later in history[began_at + 1:]:
            if not later.is_client or later.time is None:
                continue
            if later.type == "invoke":
                invoked_after.add(later.process)
            elif later.type == "ok" and later.process in invoked_after and later.node is not None:
                stalls.append((later.time - began) / 1e9)
                break
    return stalls


@dataclass(frozen=True)
class Availability:
    """Stalls per leader loss (seconds) and the recovery time after the final heal (None: not measured)."""

    stalls: tuple[float, ...]
    recovery_seconds: float | None = None

    @property
    def median_stall(self) -> float | None:
        return statistics.median(self.stalls) if self.stalls else None

    def to_dict(self) -> dict[str, Any]:
        return {"leader_losses": len(self.stalls), "stalls_s": [round(s, 3) for s in self.stalls],
                "median_stall_s": None if self.median_stall is None else round(self.median_stall, 3),
                "recovery_s": None if self.recovery_seconds is None else round(self.recovery_seconds, 3)}


def availability(history: Sequence[Op], recovery_seconds: float | None = None) -> Availability:
    """Return the run's availability figures."""
    return Availability(tuple(leader_loss_stalls(history)), recovery_seconds)
