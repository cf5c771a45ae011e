"""Run Raft on pysyncobj 0.3.17, behind raftwork's ``Engine`` contract, on a thread we own.

The Raft rules raftwork adds to pysyncobj live in ``RaftCore`` (``core.py`` lists them, each with
the rule it restores and its simulation scenario). This module is the threaded owner:

- its own engine thread: pysyncobj's auto-tick thread exits when the thread that built the
  ``SyncObj`` exits, so a node built from a short-lived thread silently stops. We build with
  ``autoTick=False`` and tick from a thread we own; ``stop`` joins it;
- cross-thread calls (``call_soon``) wake the tick through a pipe;
- status snapshots (cheap, any thread) and role/leader/term events, published after each tick;
- the peer port is refused beyond loopback without a shared secret (the peer protocol is pickle:
  an open peer port is remote code execution), and a port in use is a clear start error.
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

from pysyncobj import FAIL_REASON
from pysyncobj.pipe_notifier import PipeNotifier

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
from consensus.engine.core import RaftCore
from consensus.engine.internals import CANDIDATE, LEADER, UnsupportedEngine
from consensus.engine.journal import JournalCorrupt
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
_PEER_REFRESH_SECONDS = 0.25


class EngineStartError(RuntimeError):
    """The engine could not start (port in use, unsafe bind, bad data dir, wrong pysyncobj)."""


def wrap_callback(callback: SubmitCallback) -> Callable[[Any, Any], None]:
    """Translate pysyncobj's (result, FAIL_REASON) into (result, Failure | None), at most once."""
    done = False

    def on_result(result: Any, err: Any) -> None:
        nonlocal done
        if done:
            return
        done = True
        if err == FAIL_REASON.SUCCESS:
            callback(result, None)
        else:
            callback(None, _FAILURES.get(err, Failure.UNKNOWN_OUTCOME))

    return on_result


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


def check_peer_security(config: EngineConfig) -> None:
    """Refuse to bind or dial beyond loopback without a shared secret (the peer protocol is pickle)."""
    if config.secret:
        return
    for address in [config.bind_address or config.node_id, *config.peers]:
        if not is_loopback(address):
            raise EngineStartError(
                f"refusing to {'listen on' if address == (config.bind_address or config.node_id) else 'dial'} "
                f"non-loopback peer address {address} without a shared secret "
                "(the peer protocol is pickle; set a secret file)"
            )


class PysyncobjEngine:
    """The ``Engine`` implementation on pysyncobj."""

    def __init__(self, config: EngineConfig, hooks: StateHooks) -> None:
        self._config = config
        self._hooks = hooks
        self._core: RaftCore | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._calls: collections.deque[Callable[[], None]] = collections.deque()
        self._wakeup: PipeNotifier | None = None
        self._listeners: list[Callable[[EngineEvent], None]] = []
        self._peers: tuple[PeerStatus, ...] = ()
        self._has_quorum = False
        self._log_size = 0
        self._peers_refreshed = 0.0
        self._status = EngineStatus(config.node_id, Role.FOLLOWER, 0, None, 0, 0)

    @property
    def core(self) -> RaftCore:
        if self._core is None:
            raise RuntimeError("engine not started")
        return self._core

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        c = self._config
        check_peer_security(c)
        for peer, (host, port) in c.dial_routes.items():
            set_dial_route(peer, host, port)
        _check_port_free(c.bind_address or c.node_id)
        try:
            self._core = RaftCore(c, self._hooks, node_class=DialRouteNode)
        except (JournalCorrupt, UnsupportedEngine) as exc:
            raise EngineStartError(f"cannot start the Raft engine on {c.node_id}: {exc}") from exc
        except Exception as exc:  # pysyncobj raises SyncObjException('BindError') and friends
            raise EngineStartError(f"cannot start the Raft engine on {c.node_id}: {exc}") from exc
        self._wakeup = PipeNotifier(self._core.so._poller, self._drain_calls)
        self._core.wake = self._notify
        self._thread = threading.Thread(target=self._run, name=f"raft-{c.node_id}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stopping.set()
        self._notify()
        self._thread.join()
        self._thread = None

    def _run(self) -> None:
        core = self.core
        try:
            while not self._stopping.is_set():
                try:
                    core.tick(0.0 if core.busy() else 0.05)
                    self._drain_calls()
                    self._publish()
                except Exception:  # a bug in the engine must not kill the node's only thread
                    log.exception("%s engine tick failed; continuing", self._config.node_id)
                    self._stopping.wait(0.05)
        finally:
            self._drain_calls()
            core.destroy()  # with autoTick=False this closes sockets and the journal at once
            _close_pipes(self._wakeup, getattr(core.so, "_SyncObj__pipeNotifier", None))

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
        core = self._core
        if core is None or self._stopping.is_set():
            callback(None, Failure.NO_LEADER)
            return
        # Thread-safe: pysyncobj queues the command and wakes its poller.
        core.replicator.apply_payload(payload, callback=wrap_callback(callback))

    def barrier(self, callback: SubmitCallback) -> None:
        self.submit(b"", callback)

    def read_index(self, callback: SubmitCallback) -> None:
        core = self._core
        if core is None or self._stopping.is_set():
            callback(None, Failure.NO_LEADER)
            return
        self.call_soon(lambda: core.reads.read(wrap_callback(callback)))

    def add_member(self, address: str, callback: SubmitCallback) -> None:
        self.core.so.addNodeToCluster(DialRouteNode(address), callback=wrap_callback(callback))

    def remove_member(self, address: str, callback: SubmitCallback) -> None:
        if address == self._config.node_id:
            # pysyncobj would happily remove the leader it runs on; ask for a transfer first.
            callback(None, Failure.DENIED)
            return
        self.core.so.removeNodeFromCluster(DialRouteNode(address), callback=wrap_callback(callback))

    def transfer_leadership(self, to: str | None, callback: SubmitCallback) -> None:
        core = self.core
        target = DialRouteNode(to) if to else None
        self.call_soon(lambda: core.transfer_leadership(target, wrap_callback(callback)))

    def force_compaction(self) -> None:
        self.call_soon(self.core.so.forceLogCompaction)

    # -- status and events -------------------------------------------------------------------

    def subscribe(self, listener: Callable[[EngineEvent], None]) -> None:
        self._listeners.append(listener)

    def status(self) -> EngineStatus:
        return self._status

    def _publish(self) -> None:
        """Refresh the status snapshot and emit events; runs on the engine thread after a tick."""
        core = self.core
        raft = core.raft
        leader_node = raft.leader
        leader = leader_node.id if leader_node is not None else None
        term = raft.current_term
        now = time.monotonic()
        if now - self._peers_refreshed > _PEER_REFRESH_SECONDS:
            self._refresh_peers(core)
            self._peers_refreshed = now
        problem = core.blocked()
        state = raft.state
        role = Role.LEADER if state == LEADER else Role.CANDIDATE if state == CANDIDATE else Role.FOLLOWER
        old = self._status
        new = EngineStatus(
            id=self._config.node_id,
            role=role,
            term=term,
            leader=leader,
            commit_index=raft.commit_index,
            last_applied=raft.last_applied,
            peers=self._peers,
            has_quorum=self._has_quorum,
            log_size=self._log_size,
            healthy=problem is None,
            problem=problem,
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

    def _refresh_peers(self, core: RaftCore) -> None:
        raw = core.so.getStatus()
        peers = []
        for node in sorted(core.so.otherNodes, key=lambda n: n.id):
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
