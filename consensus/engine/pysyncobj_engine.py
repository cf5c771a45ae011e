"""Run Raft on pysyncobj 0.3.17, behind raftwork's ``Engine`` contract.

What this adapter adds to pysyncobj, and why:

- Its own engine thread. pysyncobj's auto-tick thread exits when the thread that constructed the
  ``SyncObj`` exits, so a node built from a short-lived thread silently stops. We construct with
  ``autoTick=False`` and drive ``doTick`` from a thread we own, and ``stop`` joins it.
- Durable state always: ``journalFile`` and ``fullDumpFile`` under the data dir (the default journal
  is in memory, so a restarted node would forget its vote and its log).
- Failover tuned for seconds, not minutes: ``leaderFallbackTimeout`` 1.5 s (default 30 s: a
  partitioned leader would keep acting as leader for half a minute), reconnects every 0.5 s.
- No lost work on the wire for apply errors: the framework's ``apply`` hook never raises, so
  pysyncobj's apply loop cannot get stuck retrying one entry forever.
- Peer ports refuse to listen beyond loopback without a shared secret (the peer protocol is
  pickle: an open, unauthenticated peer port is remote code execution).
"""

from __future__ import annotations

import collections
import ipaddress
import logging
import os
import socket
import threading
import time
from typing import Any, Callable

from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, SyncObjConsumer, replicated
from pysyncobj.pipe_notifier import PipeNotifier

from consensus.engine.append_filter import trim_append
from consensus.engine.base import (
    EngineConfig,
    EngineEvent,
    EngineStatus,
    Failure,
    PeerStatus,
    Role,
    StateHooks,
    SubmitCallback,
)
from consensus.engine.routing import DialRouteNode, set_dial_route

log = logging.getLogger("consensus.engine")

_FAILURES = {
    FAIL_REASON.QUEUE_FULL: Failure.QUEUE_FULL,
    FAIL_REASON.MISSING_LEADER: Failure.NO_LEADER,
    FAIL_REASON.DISCARDED: Failure.DISCARDED,
    FAIL_REASON.NOT_LEADER: Failure.NOT_LEADER,
    FAIL_REASON.LEADER_CHANGED: Failure.LEADER_CHANGED,
    FAIL_REASON.REQUEST_DENIED: Failure.DENIED,
    FAIL_REASON.UNKNOWN_OUTCOME: Failure.UNKNOWN_OUTCOME,
}
_ROLES = {0: Role.FOLLOWER, 1: Role.CANDIDATE, 2: Role.LEADER}
_PEER_REFRESH_SECONDS = 0.25


class EngineStartError(RuntimeError):
    """The engine could not start (port in use, unsafe bind, bad data dir)."""


def _wrap(callback: SubmitCallback) -> Callable[[Any, Any], None]:
    """Translate pysyncobj's (result, FAIL_REASON) into (result, Failure | None)."""

    def on_result(result: Any, err: Any) -> None:
        if err == FAIL_REASON.SUCCESS:
            callback(result, None)
        else:
            callback(None, _FAILURES.get(err, Failure.UNKNOWN_OUTCOME))

    return on_result


class _Replicator(SyncObjConsumer):  # type: ignore[misc]
    """Carry framework payloads through the log and framework state through snapshots."""

    def __init__(self, hooks: StateHooks) -> None:
        super().__init__()
        self._hooks = hooks

    @replicated  # type: ignore[misc]
    def apply_payload(self, payload: bytes) -> Any:
        if not payload:  # a barrier: nothing to apply, its callback is the point
            return None
        # pysyncobj increments raftLastApplied after the apply, so the entry's index is one more.
        return self._hooks.apply(payload, self._syncObj.raftLastApplied + 1)

    def _serialize(self) -> bytes:
        return self._hooks.snapshot()

    def _deserialize(self, data: bytes) -> None:
        self._hooks.restore(data)


def is_loopback(address: str) -> bool:
    host = address.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_port_free(address: str) -> None:
    host, port = address.rsplit(":", 1)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, int(port)))
        except OSError as exc:
            raise EngineStartError(f"cannot listen for peers on {address}: {exc.strerror or exc}") from None


def _close_pipes(*notifiers: Any) -> None:
    """Close the wake-up pipes pysyncobj never closes, so a stopped node leaks no descriptors."""
    for notifier in notifiers:
        for name in ("_PipeNotifier__pipeR", "_PipeNotifier__pipeW"):
            fd = getattr(notifier, name, None)
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass


class PysyncobjEngine:
    """The ``Engine`` implementation on pysyncobj."""

    def __init__(self, config: EngineConfig, hooks: StateHooks) -> None:
        self._config = config
        self._hooks = hooks
        self._syncobj: SyncObj | None = None
        self._replicator = _Replicator(hooks)
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._calls: collections.deque[Callable[[], None]] = collections.deque()
        self._wakeup: PipeNotifier | None = None
        self._listeners: list[Callable[[EngineEvent], None]] = []
        self._role = Role.FOLLOWER
        self._peers: tuple[PeerStatus, ...] = ()
        self._has_quorum = False
        self._log_size = 0
        self._peers_refreshed = 0.0
        self._status = EngineStatus(config.node_id, Role.FOLLOWER, 0, None, 0, 0)

    # -- lifecycle ---------------------------------------------------------------------------

    def _conf(self) -> SyncObjConf:
        c = self._config
        data_dir = os.path.abspath(c.data_dir)
        os.makedirs(data_dir, exist_ok=True)
        return SyncObjConf(
            autoTick=False,
            password=c.secret,
            bindAddress=c.bind_address,
            journalFile=os.path.join(data_dir, "raft.journal"),
            fullDumpFile=os.path.join(data_dir, "raft.snapshot"),
            raftMinTimeout=c.election_timeout[0],
            raftMaxTimeout=c.election_timeout[1],
            appendEntriesPeriod=c.heartbeat_interval,
            leaderFallbackTimeout=c.leader_fallback_timeout,
            connectionRetryTime=c.connection_retry_time,
            connectionTimeout=c.connection_timeout,
            # Send entries as soon as they are queued instead of on the next heartbeat: the
            # framework already groups concurrent proposals into one entry.
            appendEntriesUseBatch=False,
            commandsWaitLeader=False,
            commandsQueueSize=c.queue_size,
            logCompactionMinEntries=c.compaction_min_entries,
            logCompactionMinTime=c.compaction_min_time,
            dynamicMembershipChange=True,
            # Serialize in the engine thread: forking a process that runs an event loop and
            # several threads is how deadlocks are born, and our snapshots are small bytes.
            useFork=False,
            bindRetryTime=0.1,
            maxBindRetries=5,
            onStateChanged=self._on_state_changed,
        )

    def start(self) -> None:
        c = self._config
        bind = c.bind_address or c.node_id
        if not is_loopback(bind) and not c.secret:
            raise EngineStartError(
                f"refusing to listen for peers on non-loopback address {bind} without a shared secret "
                "(the peer protocol is pickle; set a secret file)"
            )
        for peer, (host, port) in c.dial_routes.items():
            set_dial_route(peer, host, port)
        _check_port_free(bind)
        others = [DialRouteNode(p) for p in c.peers if p != c.node_id]
        try:
            self._syncobj = SyncObj(
                DialRouteNode(c.node_id), others, conf=self._conf(), consumers=[self._replicator], nodeClass=DialRouteNode
            )
        except Exception as exc:  # pysyncobj raises SyncObjException('BindError') and friends
            raise EngineStartError(f"cannot start the Raft engine on {c.node_id}: {exc}") from exc
        self._install_append_filter(self._syncobj)
        self._wakeup = PipeNotifier(self._syncobj._poller, self._drain_calls)
        self._thread = threading.Thread(target=self._run, name=f"raft-{c.node_id}", daemon=True)
        self._thread.start()

    @staticmethod
    def _install_append_filter(so: SyncObj) -> None:
        """Put ``trim_append`` in front of pysyncobj's message handler (see append_filter)."""
        transport = so._SyncObj__transport
        handle = so._SyncObj__onMessageReceived
        raft_log = so._SyncObj__raftLog

        def on_message(node: Any, message: Any) -> None:
            if isinstance(message, dict) and message.get("type") == "append_entries" and len(raft_log):
                first, last = raft_log[0][1], raft_log[-1][1]

                def term_at(idx: int) -> int | None:
                    return raft_log[idx - first][2] if first <= idx <= last else None  # type: ignore[no-any-return]

                message = trim_append(message, term_at, last)
            handle(node, message)

        transport.setOnMessageReceivedCallback(on_message)

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stopping.set()
        self._notify()
        self._thread.join()
        self._thread = None

    def _run(self) -> None:
        so = self._syncobj
        assert so is not None
        try:
            while not self._stopping.is_set():
                try:
                    so.doTick(0.05)
                    self._drain_calls()
                    self._publish()
                except Exception:  # a bug in the engine must not kill the node's only thread
                    log.exception("%s engine tick failed; continuing", self._config.node_id)
                    self._stopping.wait(0.05)
        finally:
            self._drain_calls()
            so.destroy()  # with autoTick=False this closes sockets and the journal at once
            _close_pipes(self._wakeup, getattr(so, "_SyncObj__pipeNotifier", None))

    # -- cross-thread calls ------------------------------------------------------------------

    def _notify(self) -> None:
        wakeup = self._wakeup
        if wakeup is not None:
            try:
                wakeup.notify()
            except OSError:  # pipe full: the engine thread is already due to wake up
                pass

    def call_soon(self, fn: Callable[[], None]) -> None:
        self._calls.append(fn)
        self._notify()

    def _drain_calls(self) -> None:
        while self._calls:
            fn = self._calls.popleft()
            try:
                fn()
            except Exception:
                log.exception("%s engine call failed", self._config.node_id)

    def submit(self, payload: bytes, callback: SubmitCallback) -> None:
        if self._syncobj is None or self._stopping.is_set():
            callback(None, Failure.NO_LEADER)
            return
        # Thread-safe: pysyncobj queues the command and wakes its poller.
        self._replicator.apply_payload(payload, callback=_wrap(callback))

    def barrier(self, callback: SubmitCallback) -> None:
        self.submit(b"", callback)

    def add_member(self, address: str, callback: SubmitCallback) -> None:
        so = self._require()
        so.addNodeToCluster(DialRouteNode(address), callback=_wrap(callback))

    def remove_member(self, address: str, callback: SubmitCallback) -> None:
        so = self._require()
        if address == self._config.node_id:
            # pysyncobj would happily remove the leader it runs on; ask for a transfer first.
            callback(None, Failure.DENIED)
            return
        so.removeNodeFromCluster(DialRouteNode(address), callback=_wrap(callback))

    def transfer_leadership(self, to: str | None, callback: SubmitCallback) -> None:
        so = self._require()
        target = DialRouteNode(to) if to else None
        self.call_soon(lambda: so.transferLeadership(target, callback=_wrap(callback)))

    def force_compaction(self) -> None:
        so = self._require()
        self.call_soon(so.forceLogCompaction)

    def _require(self) -> SyncObj:
        if self._syncobj is None:
            raise RuntimeError("engine not started")
        return self._syncobj

    # -- status and events -------------------------------------------------------------------

    def subscribe(self, listener: Callable[[EngineEvent], None]) -> None:
        self._listeners.append(listener)

    def status(self) -> EngineStatus:
        return self._status

    def _on_state_changed(self, old: int, new: int) -> None:
        self._role = _ROLES.get(new, Role.FOLLOWER)

    def _publish(self) -> None:
        """Refresh the status snapshot and emit events; runs on the engine thread after a tick."""
        so = self._syncobj
        assert so is not None
        leader_node = so._getLeader()
        leader = leader_node.id if leader_node is not None else None
        term = so.raftCurrentTerm
        now = time.monotonic()
        if now - self._peers_refreshed > _PEER_REFRESH_SECONDS:
            self._refresh_peers(so)
            self._peers_refreshed = now
        old = self._status
        new = EngineStatus(
            id=self._config.node_id,
            role=self._role,
            term=term,
            leader=leader,
            commit_index=so.raftCommitIndex,
            last_applied=so.raftLastApplied,
            peers=self._peers,
            has_quorum=self._has_quorum,
            log_size=self._log_size,
        )
        self._status = new
        if self._listeners:
            for kind, before, after in (("term", old.term, term), ("role", old.role, new.role), ("leader", old.leader, leader)):
                if before != after:
                    event = EngineEvent(kind, before, after, term)
                    for listener in self._listeners:
                        try:
                            listener(event)
                        except Exception:
                            log.exception("event listener failed")

    def _refresh_peers(self, so: SyncObj) -> None:
        raw = so.getStatus()
        peers = []
        for node in sorted(so.otherNodes, key=lambda n: n.id):
            peers.append(
                PeerStatus(
                    id=node.id,
                    connected=raw.get("partner_node_status_server_" + node.id) == 2,
                    match_index=raw.get("match_idx_server_" + node.id),
                    next_index=raw.get("next_node_idx_server_" + node.id),
                )
            )
        self._peers = tuple(peers)
        self._has_quorum = bool(raw.get("has_quorum"))
        self._log_size = int(raw.get("log_len", 0))
