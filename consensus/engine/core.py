"""One Raft node: pysyncobj 0.3.17 with raftwork's rules installed, ticked by its owner.

``RaftCore`` builds a ``SyncObj`` and puts raftwork's rules between it and the network, without
editing pysyncobj:

=============================  ============================================  =====================
what                           Raft rule it restores                         simulation scenario
=============================  ============================================  =====================
``follower.FollowerRules``     Figure 2 AppendEntries receiver; 5.3 hints    ``lost_ack_resend``
  (snapshots)                  Figure 13: install only a snapshot that is new ``stale_refusal_snapshot``
``leader.LeaderRules``         replies carry terms; nextIndex never back     ``lost_ack_resend``
  (refusals)                   a late refusal does not move nextIndex        ``stale_refusal_snapshot``
``elections.ElectionRules``    pre-vote; no disruptive votes (thesis 9.6)    ``rejoin_no_term_bump``
``journal.DurableJournal``     persistent state before responding (Fig. 2)   ``crash_unsynced``
``_append_then_sync``          leader syncs in parallel (thesis 10.2.1)      ``crash_unsynced``
``stamping.LeaderClock``       leader time, bounded, never decreasing        ``clock_skew``
``snapshots.SnapshotStore``    durable snapshots, off the engine thread      ``snapshot_install_during_write``
``read_index.ReadIndex``       reads confirm leadership (thesis 6.4)         ``deposed_leader_reads``
``wire.check``                 malformed peer messages never raise           ``garbage_messages``
forwarded-callback sweep       no waiter is lost on a dropped connection     ``dropped_forward``
=============================  ============================================  =====================

The owner calls ``tick()`` in a loop: the real engine from its own thread (``PysyncobjEngine``),
the simulation (``consensus.testing.sim``) step by step on an in-memory network and clock. Both
run exactly this code.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Any, Callable, Iterator

from pysyncobj import SyncObj, SyncObjConf, SyncObjConsumer, replicated
from pysyncobj.monotonic import monotonic as pysyncobj_monotonic

from consensus.engine import wire
from consensus.engine.base import EngineConfig, StateHooks
from consensus.engine.elections import ElectionRules
from consensus.engine.follower import FollowerRules
from consensus.engine.internals import FOLLOWER, LEADER, Raft, check_version
from consensus.engine.journal import DurableJournal, JournalUnavailable
from consensus.engine.leader import LeaderRules
from consensus.engine.read_index import ReadIndex
from consensus.engine.routing import DialRouteNode
from consensus.engine.snapshots import Runner, SnapshotStore, thread_runner
from consensus.engine.stamping import LeaderClock, StampingQueue
from consensus.engine.storage import DiskStorage, Storage
from consensus.engine.transport import PeerTransport

log = logging.getLogger("consensus.engine")

# A forwarded command the leader never answered is failed as unknown after one to two sweeps.
FORWARD_SWEEP_SECONDS = 10.0
# How far leader time may jump when leadership changes (see stamping).
FIRST_STEP_NS = 3 * 10**9
_RAFT_MESSAGES = ("append_entries", "request_vote", "timeout_now", "rw_prevote")


class _Replicator(SyncObjConsumer):  # type: ignore[misc]
    """Carry framework payloads through the log; hand each to the hooks with its index and term."""

    def __init__(self, hooks: StateHooks) -> None:
        super().__init__()
        self._hooks = hooks
        self.raft: Raft | None = None

    @replicated  # type: ignore[misc]
    def apply_payload(self, payload: bytes) -> Any:
        if not payload:  # a barrier: nothing to apply, its callback is the point
            return None
        raft = self.raft
        assert raft is not None
        index = raft.last_applied + 1  # pysyncobj counts the entry applied after this returns
        term = raft.term_at(index)
        return self._hooks.apply(payload, index, raft.current_term if term is None else term)


class RaftCore:
    """pysyncobj plus raftwork's rules (see the table above); not thread-safe: one owner ticks it."""

    def __init__(
        self,
        config: EngineConfig,
        hooks: StateHooks,
        *,
        storage: Storage | None = None,
        transport: Any = None,
        clock: Callable[[], float] = pysyncobj_monotonic,
        wall_ns: Callable[[], int] | None = None,
        snapshot_runner: Runner = thread_runner,
        node_class: Callable[[str], Any] = DialRouteNode,
        forward_sweep_seconds: float = FORWARD_SWEEP_SECONDS,
    ) -> None:
        check_version()
        import time

        self.config = config
        self.node_id = config.node_id
        self.clock = clock
        data_dir = os.path.abspath(config.data_dir)
        os.makedirs(data_dir, exist_ok=True)
        durable = config.fsync == "always"
        self.journal = DurableJournal(storage or DiskStorage(data_dir, durable), config.node_id)
        self.snapshots = SnapshotStore(os.path.join(data_dir, "raft.snapshot"), hooks, node_class, durable=durable,
                                       runner=snapshot_runner, node_id=config.node_id)
        self.replicator = _Replicator(hooks)
        others = [node_class(p) for p in config.peers if p != config.node_id]
        extra = {"transport": transport} if transport is not None else {"transportClass": PeerTransport}
        self.so = SyncObj(node_class(config.node_id), others, conf=self._conf(data_dir), consumers=[self.replicator],
                          nodeClass=node_class, **extra)
        self.raft = raft = Raft(self.so)
        self.replicator.raft = raft
        self._adopt_journal()
        self._send_original = raft.transport.send
        self.follower = FollowerRules(raft, self._send, self._on_leader_contact, self.snapshots)
        self.leader = LeaderRules(raft, clock)
        self.elections = ElectionRules(raft, self._send, clock, config.election_timeout[0], self.blocked)
        self.reads = ReadIndex(raft, self._send, clock, raft.send_append_entries)
        self.leader_clock = LeaderClock(raft, wall_ns or time.time_ns, clock, FIRST_STEP_NS)
        self._install()
        self._keepalive_at = 0.0
        self._sweep_every = forward_sweep_seconds
        self._sweep_at = clock() + forward_sweep_seconds
        self._sweep_marker = 0
        self._transfer: tuple[Any, Callable[[Any, Any], None], float] | None = None
        self._pause_appends_until = 0.0
        self._stale_placed: set[int] = set()
        self.dropped_messages = 0

    def _conf(self, data_dir: str) -> SyncObjConf:
        c = self.config
        return SyncObjConf(
            autoTick=False,
            password=c.secret,
            # Bind exactly the configured address: pysyncobj binds every interface otherwise.
            bindAddress=c.bind_address or c.node_id,
            journalFile=None,  # replaced by the durable journal right after construction
            fullDumpFile=os.path.join(data_dir, "raft.snapshot"),
            serializer=self.snapshots.serialize,
            deserializer=self.snapshots.deserialize,
            serializeChecker=self.snapshots.check,
            raftMinTimeout=c.election_timeout[0],
            raftMaxTimeout=c.election_timeout[1],
            appendEntriesPeriod=c.heartbeat_interval,
            leaderFallbackTimeout=c.leader_fallback_timeout,
            connectionRetryTime=c.connection_retry_time,
            connectionTimeout=c.connection_timeout,
            # Send entries as soon as they are queued: the node already groups proposals.
            appendEntriesUseBatch=False,
            # Entries are bounded well below this (the node's batch limit), so pysyncobj's
            # chunked path for one oversized entry is never needed.
            appendEntriesBatchSizeBytes=c.max_message_bytes,
            commandsWaitLeader=False,
            commandsQueueSize=c.queue_size,
            logCompactionMinEntries=c.compaction_min_entries,
            logCompactionMinTime=c.compaction_min_time,
            dynamicMembershipChange=True,
            bindRetryTime=0.1,
            maxBindRetries=5,
        )

    def _adopt_journal(self) -> None:
        """Put the durable journal where pysyncobj made an in-memory one, and restore from it."""
        raft, journal = self.raft, self.journal
        raft.log = journal
        last_term = journal[-1][2]
        raft.current_term = max(journal.getCurrentTerm(), last_term)
        raft.voted_for = journal.getVotedForNodeId()
        raft.commit_index = min(journal.getRaftCommitIndex(), journal[-1][1])

    def _install(self) -> None:
        raft = self.raft
        transport = raft.transport
        self._pysyncobj_on_message = raft.handle_message()
        transport.setOnMessageReceivedCallback(self._on_message)
        transport.send = self._send
        self._pysyncobj_on_disconnect = self.so._SyncObj__onNodeDisconnected
        transport.setOnNodeDisconnectedCallback(self._on_disconnect)
        for utility in ("status", "add", "remove", "set_version", "transfer"):
            transport.setOnUtilityMessageCallback(utility, None)
        self._queue = raft.commands_queue = StampingQueue(raft.commands_queue, self.leader_clock, self.blocked,
                                                          self.appends_paused)
        self._queue.on_take = self._on_take
        self.wake: Callable[[], None] = lambda: None  # the owner wakes its tick loop (a pipe)
        self._change_cluster = raft.replace_method("doChangeCluster", self._on_change_cluster)
        self._take_commands = self.so._checkCommandsToApply
        self.so._checkCommandsToApply = self._append_then_sync

    # -- the tick ----------------------------------------------------------------------------

    def tick(self, timeout: float = 0.0) -> None:
        self._before_tick()
        self._queue.last_taken = None
        try:
            with self.message_round():
                self.so.doTick(timeout)
        except JournalUnavailable:
            # The journal logged it once; blocked() now keeps the node from voting or appending.
            # If the failed write was a command being appended, pysyncobj has dropped its callback.
            self._fail_taken(self._queue.last_taken)
        finally:
            self._after_tick()

    @contextlib.contextmanager
    def message_round(self) -> Iterator[None]:
        """Group commit on the follower: every message read in one poll is appended without a
        sync, its reply waits, and one sync at the end covers them all before the replies go out
        (Figure 2: persist before responding). Replies whose appends failed are never sent."""
        self.follower.begin_round()
        try:
            with self.journal.batch():
                yield
        except BaseException:
            self.follower.drop_round()
            raise
        self.follower.end_round()

    def _append_then_sync(self) -> None:
        """Append the queued commands, send them, and only then sync them (one sync for all).

        Raft thesis 10.2.1: the leader may write its log to disk in parallel with replicating
        it; it must count itself towards a commit only once its own copy is durable. pysyncobj
        appends each command and sends AppendEntries right away; inside one journal batch the
        append no longer syncs first, so the followers write while the leader does, and the
        sync at the end of the batch comes before this tick's poll, where acknowledgements are
        read, and before the next tick's commit count, where the leader counts itself.
        """
        with self.journal.batch():
            self._take_commands()
        self.journal.sync()  # now, not at the end of the tick's batch: that comes after the poll's wait

    def _before_tick(self) -> None:
        self.elections.before_tick()

    # -- leadership transfer -----------------------------------------------------------------

    def transfer_leadership(self, target: Any, callback: Callable[[Any, Any], None]) -> None:
        """Hand leadership to ``target`` (a node, or None for the most caught-up follower).

        pysyncobj sends TimeoutNow only to a follower that holds the leader's whole log, and the
        leader keeps appending meanwhile, so under writes the target is never caught up, or its
        election fails because the old leader appended after the TimeoutNow. As etcd does, the
        leader stops taking new commands (they wait in the queue, then go to the new leader)
        until the target is caught up and the transfer completes, at most an election timeout.
        """
        from pysyncobj.config import FAIL_REASON

        if self.raft.state != LEADER:
            callback(None, FAIL_REASON.NOT_LEADER)
            return
        self._transfer = (target, callback, self.clock() + self.config.election_timeout[1])
        self._pause_appends_until = self._transfer[2] + self.config.election_timeout[1]

    def _advance_transfer(self) -> None:
        from pysyncobj.config import FAIL_REASON

        if self._transfer is None:
            return
        target, callback, deadline = self._transfer
        raft = self.raft
        if raft.state != LEADER:
            self._transfer = None
            callback(None, FAIL_REASON.LEADER_CHANGED)
            return
        if target is None:
            candidates = [(raft.match_index.get(n, 0), n.id, n) for n in raft.other_nodes if n in raft.connected_nodes]
            target = max(candidates)[2] if candidates else None
        if target is not None and raft.match_index.get(target, 0) == raft.last_index():
            self._transfer = None
            self.so.transferLeadership(target, callback=callback)
        elif self.clock() >= deadline:
            self._transfer = None
            self._pause_appends_until = 0.0
            callback(None, FAIL_REASON.REQUEST_DENIED)

    def appends_paused(self) -> bool:
        if self._pause_appends_until and self.clock() >= self._pause_appends_until:
            self._pause_appends_until = 0.0
        return bool(self._pause_appends_until) and (self.raft.state == LEADER or self.raft.leader is None)

    def _fail_taken(self, taken: Any) -> None:
        from pysyncobj.config import FAIL_REASON

        if taken is None:
            return
        command, callback = taken
        if callback is None or self.raft.log[-1][0] == command:
            return  # nobody waits, or it was appended (its callback is registered) before the failure
        if isinstance(callback, tuple):  # forwarded by a follower: answer it
            node, request_id = callback
            self._send(node, {"type": "apply_command_response", "request_id": request_id,
                              "error": FAIL_REASON.UNKNOWN_OUTCOME})
        else:
            callback(None, FAIL_REASON.UNKNOWN_OUTCOME)

    def _after_tick(self) -> None:
        raft = self.raft
        if raft.state == FOLLOWER and raft.leader is not None and \
                self.clock() - self.elections.last_leader_contact > 2 * self.config.election_timeout[1]:
            # pysyncobj keeps naming a leader it no longer hears from when it cannot campaign (a
            # node cut off from everyone, or removed from the cluster: the others drop it, and
            # it never learns). Say "no leader", so it stops reporting ready and serving as if
            # it were part of the cluster.
            log.warning("%s lost contact with leader %s at term %d", self.node_id, raft.leader.id, raft.current_term)
            raft.leader = None
        self._advance_transfer()
        self.reads.after_tick()
        if self._pause_appends_until and raft.state != LEADER and raft.leader is not None:
            self._pause_appends_until = 0.0  # the transfer completed: queued commands go to the new leader
        if self.journal.failure is not None and raft.state == LEADER:
            log.error("%s stepping down: its journal cannot be written", self.node_id)
            raft.set_state(FOLLOWER)
            raft.leader = None
        waiting = raft.waiting_commit
        if waiting and min(waiting) <= raft.last_applied:
            self._fail_skipped(raft.last_applied)
        now = self.clock()
        if now >= self._keepalive_at:
            self._keepalive()
            self._keepalive_at = now + self.config.connection_timeout / 4
        if now >= self._sweep_at:
            self._sweep_forwarded()
            self._sweep_at = now + self._sweep_every

    def _keepalive(self) -> None:
        """Keep links between followers alive: pysyncobj drops a connection when it *sends* after
        ``connectionTimeout`` without reading from it, and followers never talk to each other. So
        the first vote request after a leader dies was lost on the idle link, and both survivors
        campaigned in the same term (every failover took two or more rounds)."""
        raft = self.raft
        if raft.state == LEADER:
            return  # its heartbeats and the replies keep its links busy
        for node in list(raft.connected_nodes):
            if node != raft.leader and node in raft.other_nodes:
                self._send(node, {"type": "rw_ping"})

    def _fail_skipped(self, applied: int) -> None:
        """Fail callbacks for entries that will never apply here one by one: a snapshot skipped them.

        pysyncobj calls a command's callback when its log index applies; an installed snapshot
        moves the applied index past those entries, and their callbacks would wait forever.
        """
        from pysyncobj.config import FAIL_REASON

        waiting = self.raft.waiting_commit
        for index in [i for i in waiting if i <= applied]:
            for _term, callback in waiting.pop(index):
                callback(None, FAIL_REASON.UNKNOWN_OUTCOME)

    def _sweep_forwarded(self) -> None:
        """Fail callbacks that were still stuck at the previous sweep (unknown outcome).

        - forwarded commands the leader never answered (the message or its answer was lost);
        - commands placed at an index by the leader of an earlier term, not committed here: the
          entry may never reach this node's log (the next leader did not have it), and pysyncobj
          would wait until some later entry applies at that index, which in a quiet cluster is never.
        """
        from pysyncobj.config import FAIL_REASON

        raft = self.raft
        waiting = raft.waiting_reply
        for rid in [rid for rid in waiting if rid <= self._sweep_marker]:
            waiting.pop(rid)(None, FAIL_REASON.UNKNOWN_OUTCOME)
        self._sweep_marker = max(waiting, default=self._sweep_marker)
        placed = raft.waiting_commit
        term, commit = raft.current_term, raft.commit_index
        stale = {i for i, subscribers in placed.items() if i > commit and all(t < term for t, _ in subscribers)}
        for index in stale & self._stale_placed:
            for _, callback in placed.pop(index):
                callback(None, FAIL_REASON.UNKNOWN_OUTCOME)
        self._stale_placed = stale - self._stale_placed

    def destroy(self) -> None:
        self.so.destroy()

    # -- messages ----------------------------------------------------------------------------

    def _on_message(self, node: Any, message: Any) -> None:
        try:
            self._handle(node, message)
        except JournalUnavailable:
            pass  # the handler was cut short before it could answer: exactly what must happen

    def _handle(self, node: Any, message: Any) -> None:
        problem = wire.check(message)
        if problem is not None:
            self.dropped_messages += 1
            if self.dropped_messages <= 10 or self.dropped_messages % 1000 == 0:
                log.warning("%s dropped a peer message from %s: %s (%d dropped)", self.node_id,
                            getattr(node, "id", node), problem, self.dropped_messages)
            return
        kind = message["type"]
        if kind in _RAFT_MESSAGES and self.blocked() is not None:
            return  # cannot persist: neither vote nor append
        if kind == "append_entries":
            self.follower.on_append_entries(node, message)
        elif kind == "next_node_idx":
            self.leader.on_reply(node, message)
            self.reads.on_ack(node, message)
        elif kind == "rw_read_index":
            self.reads.on_request(node, message)
        elif kind == "rw_read_index_resp":
            self.reads.on_response(node, message)
        elif kind == "request_vote":
            if self.elections.accept_vote_request(message):
                self._pysyncobj_on_message(node, message)
        elif kind == "rw_prevote":
            self.elections.on_prevote(node, message)
        elif kind == "rw_prevote_resp":
            self.elections.on_prevote_reply(node, message)
        elif kind == "rw_ping":
            pass  # reading it was the point (see _keepalive)
        else:
            self._pysyncobj_on_message(node, message)

    def _send(self, node: Any, message: dict[str, Any]) -> Any:
        kind = message.get("type")
        if kind == "next_node_idx" and "term" not in message:
            message["term"] = self.raft.current_term  # pysyncobj's own replies (snapshot installed)
        if kind == "append_entries" and "serialized" in message and message["serialized"] is None:
            # pysyncobj's leader asks its serializer for the next snapshot chunk for a follower
            # behind the log's first entry; with no snapshot to send yet (one is being captured)
            # it gets None, sends that empty message, and asks again, in a loop that stops only
            # when a wall-clock tick has passed: a whole tick of empty messages on a real
            # network, and forever under the simulation's virtual clock (found by the sweep as
            # an out-of-memory run). Nothing is sent: the follower learns nothing from it. Moving
            # nextIndex past the end ends the loop; the follower's rejection of the next
            # heartbeat brings nextIndex back (Figure 2: decrement on rejection) and the
            # snapshot goes out once it is ready. Scenario: ``snapshot_while_capturing``.
            self.raft.next_index[node] = self.raft.last_index() + 1
            return True
        if kind == "append_entries":
            self.reads.tag(message)  # sent after every read of the current round arrived
            self.leader.tag(node, message)
        self.elections.on_send(message)
        sent = self._send_original(node, message)
        if sent is False and kind == "apply_command" and "request_id" in message:
            # pysyncobj forwards to the leader it knows and waits for an answer, even when the
            # link is down and nothing left: the command never went out, say so now.
            from pysyncobj.config import FAIL_REASON

            callback = self.raft.waiting_reply.pop(message["request_id"], None)
            if callback is not None:
                callback(None, FAIL_REASON.MISSING_LEADER)
        return sent

    def _on_leader_contact(self) -> None:
        self.elections.leader_contact()

    def _on_disconnect(self, node: Any) -> None:
        self._pysyncobj_on_disconnect(node)
        if node == self.raft.leader and self.raft.waiting_reply:
            # Forwarded commands on that connection may or may not have reached the leader.
            self.raft.on_leader_changed()

    def _on_change_cluster(self, request: Any, reverse: bool = False) -> bool:
        changed = self._change_cluster(request, reverse)
        kind, member = request[0], request[1]
        if changed:
            verb = {("add", False): "added", ("rem", False): "removed", ("add", True): "rolled back adding",
                    ("rem", True): "rolled back removing"}.get((kind, reverse), kind)
            log.warning("%s membership change: %s %s (term %d)", self.node_id, verb, member, self.raft.current_term)
        return changed

    # -- health ------------------------------------------------------------------------------

    def busy(self) -> bool:
        """True when the next tick has work without waiting for the network: a leader alone in
        its cluster commits its own entries one tick after it appends them (nothing else wakes it)."""
        raft = self.raft
        return raft.state == LEADER and not raft.other_nodes and raft.commit_index < raft.last_index()

    def _on_take(self) -> None:
        # A leader alone appends at the end of a tick and would then sleep in that tick's poll
        # for the whole tick period before committing: wake it (the owner's wake-up pipe).
        if not self.raft.other_nodes:
            self.wake()

    def blocked(self) -> str | None:
        """Why this node may neither vote nor append now, or None."""
        if self.journal.failure is not None:
            return f"journal unavailable: {self.journal.failure}"
        return None
