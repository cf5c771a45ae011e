"""Client sessions: a retried request applies once, however late the retry (Raft thesis 6.3).

A client registers once (a log entry) and gets a client id. Each of its requests carries
``(client id, sequence number, lowest unacknowledged number)``: the table keeps, per client, the
outcome of every request the client has not yet acknowledged, and drops those below the lowest
number the client still waits for. A retry of a request whose outcome is kept gets that outcome;
a request from a client the table no longer knows (it expired, was evicted, or closed) gets a
definite ``session_expired``: never a silent second apply.

Every limit lives in this replicated state (``Limits``): the defaults below, changed only by a
``set_limits`` log entry, so nodes configured differently can never decide differently.

- sessions expire after ``session_ttl`` of leader-stamped time without a request;
- at most ``max_sessions`` sessions: registering one more evicts the least recently active;
- at most ``max_pending`` outcomes kept per session (a client that never acknowledges): a
  request beyond that is refused definitely (``quota_exceeded``) before it applies;
- the plain idempotency-key table (requests without a session) keeps at most
  ``idempotency_capacity`` keys for ``idempotency_ttl`` of leader time; with a session, keys are
  scoped to the client, so two clients using the same key string never meet.
"""

from __future__ import annotations

import collections
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, NamedTuple

SECOND = 10**9


@dataclass(frozen=True)
class Limits:
    session_ttl: int = 3600 * SECOND  # ns of leader time without a request
    max_sessions: int = 100_000
    max_pending: int = 10_000
    idempotency_ttl: int = 600 * SECOND
    idempotency_capacity: int = 100_000

    def changed(self, changes: dict[str, Any]) -> "Limits":
        """Return limits with ``changes`` applied; raise ValueError for an unknown or bad value."""
        names = {f.name for f in fields(self)}
        for name, value in changes.items():
            if name not in names:
                raise ValueError(f"unknown limit {name!r}; known: {', '.join(sorted(names))}")
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"limit {name} must be a positive integer")
        return replace(self, **changes)

    def to_wire(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> "Limits":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


class Session(NamedTuple):
    """One client's entry: immutable, replaced on every change, so a snapshot's shallow copy of the
    table stays consistent while later entries apply (the copy-on-write capture)."""

    last_active: int
    lowest: int = 1
    results: tuple[tuple[int, bytes, list[Any]], ...] = ()  # (seq, request digest, outcome wire)


class SessionTable:
    """The replicated table of client sessions (pure: time and ids come from the log)."""

    def __init__(self) -> None:
        self.limits = Limits()
        # client id -> session, least recently active first
        self.sessions: collections.OrderedDict[int, Session] = collections.OrderedDict()

    def register(self, client_id: int, time_ns: int) -> int:
        self.sessions[client_id] = Session(time_ns)
        while len(self.sessions) > self.limits.max_sessions:
            self.sessions.popitem(last=False)  # the least recently active
        return client_id

    def close(self, client_id: int) -> bool:
        return self.sessions.pop(client_id, None) is not None

    def lookup(self, client_id: int, seq: int, lowest: int, digest: bytes, time_ns: int) -> tuple[str, Any]:
        """Decide a request: ("apply", None), ("replay", wire), ("expired", None),
        ("mismatch", None) (the number was used for another request), ("acknowledged", None) (a
        stray copy of a request the client already has the answer to) or ("full", None)."""
        session = self.sessions.get(client_id)
        if session is None:
            return "expired", None
        results = session.results
        if lowest > session.lowest:
            results = tuple(r for r in results if r[0] >= lowest)
        session = Session(max(session.last_active, time_ns), max(lowest, session.lowest), results)
        self.sessions[client_id] = session
        self.sessions.move_to_end(client_id)
        for kept_seq, kept_digest, wire in results:
            if kept_seq == seq:
                return ("replay", wire) if kept_digest == digest else ("mismatch", None)
        if seq < session.lowest:
            # The client said it has this outcome already: a stray copy of an old request.
            return "acknowledged", None
        if len(results) >= self.limits.max_pending:
            return "full", None
        return "apply", None

    def record(self, client_id: int, seq: int, digest: bytes, wire: list[Any]) -> None:
        session = self.sessions.get(client_id)
        if session is not None:
            self.sessions[client_id] = session._replace(results=session.results + ((seq, digest, wire),))

    def pending(self, client_id: int) -> list[int]:
        session = self.sessions.get(client_id)
        return [] if session is None else [r[0] for r in session.results]

    def expire(self, time_ns: int) -> None:
        horizon = time_ns - self.limits.session_ttl
        while self.sessions:
            client_id, session = next(iter(self.sessions.items()))
            if session.last_active >= horizon:
                break
            del self.sessions[client_id]

    # -- snapshots ---------------------------------------------------------------------------

    def capture(self) -> "tuple[Limits, collections.OrderedDict[int, Session]]":
        """A consistent copy with no per-session Python work: sessions are immutable values."""
        return self.limits, self.sessions.copy()

    @staticmethod
    def encode(captured: "tuple[Limits, collections.OrderedDict[int, Session]]") -> list[Any]:
        limits, sessions = captured
        return [limits.to_wire(), [[cid, s.last_active, s.lowest, [list(r) for r in s.results]]
                                   for cid, s in sessions.items()]]

    def restore(self, data: list[Any]) -> None:
        limits, sessions = data
        self.limits = Limits.from_wire(limits)
        self.sessions = collections.OrderedDict(
            (cid, Session(last, lowest, tuple((seq, digest, wire) for seq, digest, wire in results)))
            for cid, last, lowest, results in sessions
        )
