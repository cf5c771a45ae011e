"""Raft's safety properties, checked while a simulated world runs (Raft paper, Figure 3).

- Election safety: at most one leader per term.
- Log matching: if two logs hold an entry with the same index and term, they are identical up to
  it (checked every few steps and at the end: it is a lemma, the others are the promises).
- Leader completeness: every committed entry is in the log of every leader of a later term.
  An entry is known committed when a node's commit index covers it or a client was told ok.
- State machine safety: no two nodes apply different entries at the same index.
- No acknowledged write lost: at the end, after every fault is healed, every node has applied
  every acknowledged command at the index and term it was acknowledged at.
- Linearizable reads: a read answered ok has observed every write acknowledged before it was
  invoked (a deposed leader must never answer from its stale state; ReadIndex, thesis 6.4).
- Every tick ends with the journal synced: a leader counts its own copy towards a commit at the
  start of the next tick, so its log must be durable by then (it syncs after sending, thesis
  10.2.1), and a follower syncs before it replies: no acknowledgement leaves a node whose
  journal holds unsynced entries (followers sync a whole tick's appends at once).
- Leader time never decreases along the log, and no CRITICAL line is logged.
"""

from __future__ import annotations

import hashlib
import logging
from typing import TYPE_CHECKING, Any

from consensus.engine import payload as payload_format
from consensus.engine.internals import LEADER
from consensus.engine.stamping import payload_of

if TYPE_CHECKING:
    from consensus.testing.sim.world import World

LOG_MATCH_EVERY = 25  # steps


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=8).digest()


class Violation(AssertionError):
    pass


class Checks:
    def __init__(self, world: "World") -> None:
        self.world = world
        self.violations: list[str] = []
        self.leader_of_term: dict[int, str] = {}
        self.applied_at: dict[int, tuple[int, bytes]] = {}  # index -> (term, digest) first applied
        self.last_applied: dict[str, int] = {}
        self.committed: dict[int, tuple[int, bytes]] = {}  # index -> (term, digest of the command)
        self._committed_top = 0
        self._commit_seen: dict[str, int] = {}  # node -> commit index already recorded
        self._last_time = 0
        self.seen_leadership: set[tuple[str, int]] = set()
        self.steps = 0
        self.critical: list[str] = []

    def fail(self, what: str) -> None:
        line = f"t={self.world.now:.4f} {what}"
        if line not in self.violations:
            self.violations.append(line)
            self.world.note(f"VIOLATION {what}")

    # -- events from the world ---------------------------------------------------------------

    def on_start(self, node_id: str) -> None:
        self.last_applied[node_id] = 0

    def on_crash(self, node_id: str) -> None:
        self.last_applied[node_id] = 0
        self._commit_seen[node_id] = 0

    def on_restore(self, node_id: str, index: int) -> None:
        self.last_applied[node_id] = index

    def on_apply(self, node_id: str, index: int, term: int, data: bytes) -> None:
        if index <= self.last_applied.get(node_id, 0):
            self.fail(f"{node_id} applied index {index} after {self.last_applied[node_id]}")
        self.last_applied[node_id] = index
        mine = (term, _digest(data))
        first = self.applied_at.setdefault(index, mine)
        if first != mine:
            self.fail(f"state machine safety: {node_id} applied a different entry at index {index} "
                      f"(term {term}, first applied at term {first[0]})")

    def on_ack(self, command_id: int, index: int, term: int) -> None:
        self.world.note(f"ack command {command_id} at index {index} term {term}")

    def on_read(self, node_id: str, read_id: int, required: list[int], register: Any) -> None:
        """A read answered on ``node_id``: its state must hold every write acknowledged before it began."""
        missing = [cid for cid in required if cid not in register.applied]
        if missing:
            self.fail(f"stale read: read {read_id} on {node_id} answered without acknowledged command "
                      f"{missing[0]} ({len(missing)} missing)")
        else:
            self.world.note(f"read {read_id} on {node_id} ok ({len(register.applied)} commands applied)")

    def on_critical(self, message: str) -> None:
        self.fail(f"CRITICAL logged: {message}")

    # -- messages ------------------------------------------------------------------------------

    def on_send(self, node_id: str, message: Any) -> None:
        if not (isinstance(message, dict) and message.get("type") == "next_node_idx" and message.get("success")):
            return
        node = self.world.nodes.get(node_id)
        journal = node.core.journal if node is not None and node.core is not None else None
        if journal is not None and journal._dirty and journal.failure is None:
            self.fail(f"{node_id} acknowledged up to {message.get('next_node_idx', 0) - 1} before syncing its journal")

    # -- after every step ----------------------------------------------------------------------

    def after_step(self) -> None:
        self.steps += 1
        world = self.world
        for node_id in world.alive():
            core = world.core(node_id)
            raft = core.raft
            if core.journal._dirty and core.journal.failure is None:
                self.fail(f"{node_id} ended a step with unsynced journal entries")
            self._record_committed(node_id, raft)
            if raft.state != LEADER:
                continue
            term = raft.current_term
            holder = self.leader_of_term.setdefault(term, node_id)
            if holder != node_id:
                self.fail(f"election safety: {holder} and {node_id} both lead term {term}")
            if (node_id, term) not in self.seen_leadership:
                self.seen_leadership.add((node_id, term))
                self._check_leader_complete(node_id, raft, term)
        if self.steps % LOG_MATCH_EVERY == 0:
            self.check_log_matching()

    def _record_committed(self, node_id: str, raft: Any) -> None:
        """Record newly committed entries; each must be the one every other node committed there."""
        log = raft.log
        first = log[0][1]
        commit = min(raft.commit_index, log[-1][1])
        seen = self._commit_seen.get(node_id, 0)
        if commit <= seen:
            return
        for index in range(max(first, seen + 1), commit + 1):
            command, _, term = log[index - first]
            mine = (term, _digest(command))
            known = self.committed.setdefault(index, mine)
            if known != mine:
                self.fail(f"{node_id} committed a different entry at index {index} (term {term}, "
                          f"committed before at term {known[0]})")
            if index > self._committed_top:
                self._committed_top = index
                self._check_time(index, command)
        self._commit_seen[node_id] = commit

    def _check_time(self, index: int, command: bytes) -> None:
        data = payload_of(command)
        if data is None:
            return
        t = payload_format.time_of(data)
        if t < self._last_time:
            self.fail(f"leader time went backwards in the committed log at index {index}")
        self._last_time = max(self._last_time, t)

    def _check_leader_complete(self, node_id: str, raft: Any, term: int) -> None:
        first = raft.first_index()
        for index, (committed_term, digest) in self.committed.items():
            if committed_term >= term or index < first:
                continue
            if index > raft.last_index():
                self.fail(f"leader completeness: {node_id} leads term {term} without committed index {index}")
                return
            entry = raft.entry(index)
            if (entry[2], _digest(entry[0])) != (committed_term, digest):
                self.fail(f"leader completeness: {node_id} leads term {term} with a different entry at "
                          f"committed index {index}")
                return
        for command, (index, ack_term) in self.world.acked.items():
            if index >= first and raft.term_at(index) != ack_term:
                self.fail(f"acknowledged write lost: command {command} (index {index}, term {ack_term}) "
                          f"is not in the log of {node_id}, leader of term {term}")
                return

    def check_log_matching(self) -> None:
        """Compare the logs pairwise above their commit indexes (committed entries are checked as
        they commit, against the one entry committed at each index)."""
        alive = self.world.alive()
        logs = {n: self.world.core(n).raft for n in alive}
        for i, a in enumerate(alive):
            for b in alive[i + 1:]:
                ra, rb = logs[a], logs[b]
                la, lb = ra.log, rb.log
                fa, fb = la[0][1], lb[0][1]
                lo = max(fa, fb, min(ra.commit_index, rb.commit_index) - 1)
                hi = min(la[-1][1], lb[-1][1])
                top = next((x for x in range(hi, lo - 1, -1) if la[x - fa][2] == lb[x - fb][2]), None)
                if top is None:
                    continue
                for x in range(lo, top + 1):
                    if la[x - fa] != lb[x - fb]:
                        self.fail(f"log matching: {a} and {b} agree at index {top} but differ at {x}")
                        break

    # -- the end -----------------------------------------------------------------------------

    def final(self) -> None:
        """After the last heal and a quiet period: everyone agrees and every ack is applied."""
        self.check_log_matching()
        world = self.world
        for node_id in world.alive():
            register = world.nodes[node_id].hooks.register  # type: ignore[union-attr]
            for command, (index, term) in world.acked.items():
                got = register.applied.get(command)
                if got is None:
                    self.fail(f"acknowledged write lost: {node_id} never applied command {command} "
                              f"(acknowledged at index {index}, term {term})")
                    return
                if [index, term] not in got:
                    self.fail(f"acknowledged write moved: {node_id} applied command {command} at {got}, "
                              f"acknowledged at {[index, term]}")
                    return


class CriticalLines(logging.Handler):
    """Route CRITICAL log records (pysyncobj's "truncating already-applied", ours) to the checks."""

    def __init__(self, checks: Checks) -> None:
        super().__init__(logging.CRITICAL)
        self.checks = checks

    def emit(self, record: logging.LogRecord) -> None:
        self.checks.on_critical(record.getMessage())
