"""Linearizable reads without a log entry: ReadIndex (Raft dissertation, section 6.4).

A read is linearizable when it reflects every write acknowledged before it arrived. A log entry
(a barrier) gives that, at the cost of an append, a replication round and an fsync on every node.
ReadIndex gives it with one heartbeat round and no disk write:

1. The leader notes its commit index when the read arrives: the *read index*. It must hold an
   entry of its current term committed (section 6.4 step 1): until then its commit index may lag
   what an earlier leader committed. pysyncobj appends a no-op when a node becomes leader (the
   log barrier of that term), so reads arriving before it commits wait for it.
2. The leader confirms it is still the leader (step 2): a majority acknowledges an AppendEntries
   *sent after the read arrived*. Every AppendEntries carries ``rw_seq``, the number of the latest
   round started; followers echo it in their reply (``FollowerRules``). Reads arriving get the
   next round; starting a round sends a heartbeat to every peer at once. A reply echoing ``rw_seq
   >= r`` in this leader's term proves the follower had not joined a later term when it got a
   message sent after the reads of round ``r`` arrived, so no later leader had committed anything
   then (its majority would intersect ours). All reads waiting share one round; at most one round
   is in flight, the next starts when it completes (the later reads batch meanwhile).
3. The read is answered once the node has applied up to the read index (step 3-4).

A leader alone in its cluster is its own majority: it confirms at once. A follower forwards the
read (``rw_read_index``) to the leader, which answers with the read index after step 2
(``rw_read_index_resp``); the follower then waits until it has applied that index itself (section
6.4.1). A leader that loses its majority never confirms: its reads fail when it steps down, or the
caller's deadline expires; they never answer from state that may be stale (simulation scenario
``deposed_leader_reads``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Callable

from pysyncobj.config import FAIL_REASON

from consensus.engine.internals import LEADER, Raft

Callback = Callable[[Any, Any], None]  # pysyncobj style: (result, FAIL_REASON)
Send = Callable[[Any, dict[str, Any]], Any]

# A forwarded read the leader never answered is failed after this long (a read is always safe
# to retry: failing it is a definite "nothing happened").
FORWARD_TIMEOUT_SECONDS = 5.0


@dataclass
class _Read:
    """One read on the leader: answered through ``deliver(index)`` or ``fail(reason)``."""

    deliver: Callable[[int], None]
    fail: Callable[[int], None]
    index: int = 0
    round: int = 0


class ReadIndex:
    """The ReadIndex protocol for one node (engine thread only)."""

    def __init__(self, raft: Raft, send: Send, clock: Callable[[], float],
                 send_heartbeats: Callable[[], None]) -> None:
        self.raft = raft
        self.send = send
        self.clock = clock
        self.send_heartbeats = send_heartbeats
        self.seq = 0  # the latest round started; never reset, so a number names one round for good
        self._term = -1  # the term the leader-side state below belongs to
        self._acked: dict[Any, int] = {}  # peer -> highest rw_seq it echoed in this term
        self._confirmed = 0  # the highest round a majority acknowledged in this term
        self._unstarted: list[_Read] = []  # arrived; wait for the next round (or a commit in this term)
        self._in_round: list[_Read] = []  # waiting for a majority to acknowledge their round
        self._applying: list[tuple[int, Callback]] = []  # confirmed here: answered once applied >= index
        self._forwarded: dict[int, tuple[Callback, Any, float]] = {}  # request id -> (callback, leader, sent)
        self._request_ids = itertools.count(1)
        self.rounds = 0  # rounds started (for tests and metrics)

    # -- entry points ------------------------------------------------------------------------

    def read(self, callback: Callback) -> None:
        """Call ``callback(None, SUCCESS)`` once this node has applied everything committed before now."""
        raft = self.raft
        if raft.state == LEADER:
            self._add(_Read(lambda index: self._applying.append((index, callback)),
                            lambda reason: callback(None, reason)))
            self.answer_applied()  # a leader alone confirms at once: answer now, not after the next poll
            return
        leader = raft.leader
        if leader is None:
            callback(None, FAIL_REASON.MISSING_LEADER)
            return
        request_id = next(self._request_ids)
        self._forwarded[request_id] = (callback, leader, self.clock())
        if self.send(leader, {"type": "rw_read_index", "request_id": request_id}) is False:
            self._forwarded.pop(request_id, None)
            callback(None, FAIL_REASON.MISSING_LEADER)

    def on_request(self, node: Any, message: dict[str, Any]) -> None:
        """A follower forwarded a read: answer with the read index once leadership is confirmed."""
        request_id = message["request_id"]
        if self.raft.state != LEADER:
            self.send(node, {"type": "rw_read_index_resp", "request_id": request_id, "error": FAIL_REASON.NOT_LEADER})
            return
        self._add(_Read(
            lambda index: self.send(node, {"type": "rw_read_index_resp", "request_id": request_id, "index": index}),
            lambda reason: self.send(node, {"type": "rw_read_index_resp", "request_id": request_id, "error": reason}),
        ))

    def on_response(self, node: Any, message: dict[str, Any]) -> None:
        waiting = self._forwarded.pop(message["request_id"], None)
        if waiting is None:
            return
        callback, leader, _ = waiting
        if "error" in message or node != leader:
            callback(None, message.get("error", FAIL_REASON.LEADER_CHANGED))
            return
        self._applying.append((message["index"], callback))

    def on_ack(self, node: Any, message: dict[str, Any]) -> None:
        """An AppendEntries reply: count its echoed round towards this term's confirmations."""
        seq = message.get("rw_seq")
        raft = self.raft
        if seq is None or raft.state != LEADER or message.get("term") != raft.current_term:
            return  # a reply from another term proves nothing about this leadership
        self._sync_term()
        if seq > self._acked.get(node, 0):
            self._acked[node] = seq

    def tag(self, message: dict[str, Any]) -> None:
        """Mark an outgoing AppendEntries with the latest round: it was sent after its reads arrived."""
        message["rw_seq"] = self.seq

    # -- progress, after every tick ----------------------------------------------------------

    def after_tick(self) -> None:
        raft = self.raft
        if raft.state == LEADER:
            self._sync_term()
            self._confirm()
            self._start_round()
        elif self._unstarted or self._in_round:
            self._fail_leader_side(FAIL_REASON.NOT_LEADER)
        if self._forwarded:
            self._check_forwarded()
        self.answer_applied()

    def answer_applied(self) -> None:
        """Answer the confirmed reads whose read index this node has applied."""
        if not self._applying:
            return
        applied = self.raft.last_applied
        ready = [cb for index, cb in self._applying if index <= applied]
        if ready:
            self._applying = [(i, cb) for i, cb in self._applying if i > applied]
            for callback in ready:
                callback(None, FAIL_REASON.SUCCESS)

    def _add(self, read: _Read) -> None:
        self._sync_term()
        self._unstarted.append(read)
        self._start_round()

    def _sync_term(self) -> None:
        term = self.raft.current_term
        if term != self._term:
            # A new leadership: acknowledgements and reads of another term count for nothing.
            self._fail_leader_side(FAIL_REASON.LEADER_CHANGED)
            self._term, self._acked, self._confirmed = term, {}, 0

    def _committed_in_term(self) -> bool:
        raft = self.raft
        return raft.term_at(raft.commit_index) == raft.current_term

    def _start_round(self) -> None:
        if not self._unstarted or self._in_round or not self._committed_in_term():
            return  # nothing to start, a round in flight, or the term's no-op not yet committed
        raft = self.raft
        commit = raft.commit_index  # >= every index committed before these reads arrived
        self.seq += 1
        self.rounds += 1
        for read in self._unstarted:
            read.index, read.round = commit, self.seq
        self._in_round, self._unstarted = self._unstarted, []
        if raft.other_nodes:
            self.send_heartbeats()  # tagged with the new seq (see tag)
        self._confirm()

    def _confirm(self) -> None:
        if not self._in_round:
            return
        round_ = self._in_round[0].round
        if not self._majority_acked(round_):
            return
        reads, self._in_round = self._in_round, []
        self._confirmed = round_
        for read in reads:
            read.deliver(read.index)
        if self._unstarted:
            self._start_round()

    def _majority_acked(self, round_: int) -> bool:
        """True when this leader and a majority of the others acknowledged round ``round_`` or later."""
        raft = self.raft
        acks = 1 + sum(1 for node in raft.other_nodes if self._acked.get(node, 0) >= round_)
        return acks >= raft.majority()

    def _fail_leader_side(self, reason: int) -> None:
        reads = self._unstarted + self._in_round
        self._unstarted, self._in_round = [], []
        for read in reads:
            read.fail(reason)

    def _check_forwarded(self) -> None:
        leader, now = self.raft.leader, self.clock()
        for request_id, (callback, sent_to, sent_at) in list(self._forwarded.items()):
            if sent_to != leader:
                reason = FAIL_REASON.LEADER_CHANGED
            elif now - sent_at > FORWARD_TIMEOUT_SECONDS:
                reason = FAIL_REASON.UNKNOWN_OUTCOME
            else:
                continue
            del self._forwarded[request_id]
            callback(None, reason)

    def pending(self) -> int:
        """Reads not yet answered on this node (any stage)."""
        return len(self._unstarted) + len(self._in_round) + len(self._applying) + len(self._forwarded)
