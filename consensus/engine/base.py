"""Define the engine contract: what the framework needs from a Raft implementation.

An engine replicates opaque byte payloads through a Raft log and calls back into the framework
to apply them, snapshot and restore. It owns its own thread (the *engine thread*); every
callback it makes (``apply``, ``snapshot``, ``restore``, submit callbacks, events) runs on that
thread, one at a time. Callers on other threads only use the methods below, which are safe to
call from any thread.

Proposals can be lost without notice (a leader crashes before replicating them, a callback is
never made): the caller must put a deadline on every wait and treat a missed deadline as an
unknown outcome.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol


class Role(str, enum.Enum):
    LEADER = "leader"
    FOLLOWER = "follower"
    CANDIDATE = "candidate"


class Failure(enum.Enum):
    """Why the engine could not apply a submitted payload, and whether that is certain."""

    NOT_LEADER = ("not_leader", True)  # refused before it reached a log
    NO_LEADER = ("no_leader", True)  # no leader known; nothing was submitted
    QUEUE_FULL = ("queue_full", True)  # the engine's queue is full; nothing was submitted
    DISCARDED = ("discarded", True)  # another entry took its log position: it will never apply
    DENIED = ("denied", True)  # the engine refused it (a membership change already pending, ...)
    LEADER_CHANGED = ("leader_changed", False)  # forwarded, then the leader changed: unknown
    UNKNOWN_OUTCOME = ("unknown_outcome", False)  # the engine lost track of it: unknown
    STOPPED = ("stopped", False)  # the engine stopped while it was in flight: unknown

    @property
    def definite(self) -> bool:
        return self.value[1]


SubmitCallback = Callable[[Any, "Failure | None"], None]


class StateHooks(Protocol):
    """The framework side of the engine: the replicated state, driven on the engine thread.

    Optionally ``capture() -> Callable[[], bytes]``: take a consistent, cheap copy of the state
    now (engine thread) and return a function that encodes it later on another thread; the
    engine then writes snapshots without stalling the engine thread for the encoding.
    """

    def apply(self, payload: bytes, index: int, term: int) -> Any:
        """Apply one committed payload at log ``index`` (entry ``term``); must not raise, must be deterministic."""

    def snapshot(self) -> bytes:
        """Return the whole replicated state as bytes (called on the engine thread)."""

    def restore(self, data: bytes) -> None:
        """Replace the whole replicated state with a snapshot."""


@dataclass(frozen=True)
class PeerStatus:
    id: str
    connected: bool
    match_index: int | None = None  # known only on the leader
    next_index: int | None = None


@dataclass(frozen=True)
class EngineStatus:
    id: str
    role: Role
    term: int
    leader: str | None
    commit_index: int
    last_applied: int
    peers: tuple[PeerStatus, ...] = ()
    has_quorum: bool = False
    log_size: int = 0
    healthy: bool = True  # False: cannot persist; it neither votes nor appends
    problem: str | None = None  # why not healthy


@dataclass(frozen=True)
class EngineEvent:
    """A change seen by the engine: ``kind`` is "role", "leader" or "term"."""

    kind: str
    old: Any
    new: Any
    term: int


@dataclass
class EngineConfig:
    """Engine settings. Only the engine module turns these into pysyncobj's configuration."""

    node_id: str  # "host:port": identity and peer listen address
    peers: list[str]
    data_dir: str
    secret: str | None = None
    bind_address: str | None = None  # defaults to node_id
    election_timeout: tuple[float, float] = (0.4, 1.4)
    heartbeat_interval: float = 0.1
    leader_fallback_timeout: float = 1.5
    connection_retry_time: float = 0.5
    connection_timeout: float = 3.5
    compaction_min_entries: int = 5000
    compaction_min_time: float = 300.0
    queue_size: int = 100_000
    fsync: str = "always"  # "always": sync before acknowledging or voting; "never": survive process crashes only
    max_message_bytes: int = 4 << 20  # AppendEntries batch size; entries are bounded far below it
    dial_routes: dict[str, tuple[str, int]] = field(default_factory=dict)


class Engine(Protocol):
    """A Raft engine: replicates payloads, reports status, changes membership."""

    def start(self) -> None:
        """Bind the peer port and start the engine thread; raise OSError-like errors on failure."""

    def stop(self) -> None:
        """Stop the engine thread, close every socket and file, and join the thread."""

    def submit(self, payload: bytes, callback: SubmitCallback) -> None:
        """Append ``payload`` to the log; ``callback(result, failure)`` runs on the engine thread."""

    def barrier(self, callback: SubmitCallback) -> None:
        """Append an empty entry; ``callback(None, None)`` runs right after it applies here.

        Everything committed before the call has then been applied on this node, which is
        what a linearizable read needs.
        """

    def read_index(self, callback: SubmitCallback) -> None:
        """Call ``callback(None, None)`` once this node has applied everything committed before the call.

        Like ``barrier``, without a log entry: the leader confirms its leadership with one
        heartbeat round (ReadIndex, Raft dissertation 6.4); followers ask the leader. Every
        failure is definite (nothing was written): retry.
        """

    def call_soon(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the engine thread as soon as possible."""

    def status(self) -> EngineStatus:
        """Return the latest status snapshot (cheap, any thread)."""

    def add_member(self, address: str, callback: SubmitCallback) -> None: ...

    def remove_member(self, address: str, callback: SubmitCallback) -> None: ...

    def transfer_leadership(self, to: str | None, callback: SubmitCallback) -> None: ...

    def subscribe(self, listener: Callable[[EngineEvent], None]) -> None:
        """Call ``listener`` on the engine thread for every role, leader and term change."""

    def force_compaction(self) -> None:
        """Take a snapshot and compact the log at the next opportunity."""
