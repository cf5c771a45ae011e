"""Errors raised by raftwork, each saying whether its outcome is definite.

::

    ConsensusError                 base ("internal"): something went wrong        (not definite)
    ├── InvalidRequest             malformed input; nothing was submitted          (definite)
    │   ├── NotFound               no such route, machine, key or member           (definite)
    │   │   ├── KeyNotFound        no such config-store key                        (definite)
    │   │   └── SessionNotFound    no such lock-service session (or it expired)    (definite)
    │   ├── Unauthorized           a mutating request without the bearer token     (definite)
    │   ├── MethodNotAllowed       the route exists, the method does not           (definite)
    │   ├── PayloadTooLarge        the request body is over the size limit         (definite)
    │   └── Compacted              a watch revision older than the retained window (definite)
    ├── NotLeader(leader_hint)     this node cannot take it; nothing submitted     (definite)
    ├── Unavailable                no leader or no quorum; nothing submitted       (definite)
    │   └── Overloaded             the node is at its connection or request cap    (definite)
    ├── Rejected(reason)           the state machine refused it                    (definite)
    │   ├── LockHeld               the lock is held and the wait ran out           (definite)
    │   ├── LockNotHeld            a release by a session not holding that token   (definite)
    │   ├── RevisionMismatch       a compare on a revision failed                  (definite)
    │   ├── QuotaExceeded          an app quota (keys, counters, sessions) is full (definite)
    │   ├── IntentHeld             a key is locked by another transaction's intent (definite)
    │   └── TxnAborted             a cross-group transaction was aborted           (definite)
    ├── SessionExpired             the client session expired or was evicted       (definite)
    └── Indeterminate              submitted, outcome unknown                      (not definite)

A definite error means the request did not change the replicated state. ``Indeterminate``
means it may or may not have: retrying with the same idempotency key (or, with a client
session, the same request number) is always safe. Never raise a definite error when the outcome
is unknown: the base class (HTTP ``internal``, any error the code did not foresee) is therefore
not definite.

Every error has a ``code`` (its JSON name) and ``from_dict`` rebuilds the right class from it;
``error_class(code)`` finds the class for a code (state machines raise these, and their code
travels through the log to the caller).
"""

from __future__ import annotations

from typing import Any


class ConsensusError(Exception):
    """Base class of every raftwork error."""

    code: str = "internal"
    definite: bool = False  # an error nobody foresaw: the request may have applied
    http_status: int = 500

    def __init__(self, message: str = "", *, leader: str | None = None) -> None:
        super().__init__(message or self.__class__.__name__)
        self.message = message or self.__class__.__name__
        self.leader = leader

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON error body used by the HTTP API."""
        return {"code": self.code, "message": self.message, "definite": self.definite, "leader": self.leader}


class InvalidRequest(ConsensusError):
    """The request is malformed; nothing was submitted."""

    code = "invalid_request"
    definite = True
    http_status = 400


class NotFound(InvalidRequest):
    """The named thing (machine, route, key, session) does not exist; nothing was submitted."""

    code = "not_found"
    http_status = 404


class Unauthorized(InvalidRequest):
    """A mutating request came without the node's bearer token; nothing was submitted."""

    code = "unauthorized"
    http_status = 401


class MethodNotAllowed(InvalidRequest):
    """The route exists but not with this HTTP method; nothing was submitted."""

    code = "method_not_allowed"
    http_status = 405


class PayloadTooLarge(InvalidRequest):
    """The request body is over the size limit; nothing was submitted."""

    code = "payload_too_large"
    http_status = 413


class KeyNotFound(NotFound):
    """The config-store key does not exist."""

    code = "key_not_found"


class SessionNotFound(NotFound):
    """The lock-service session does not exist (never opened, closed or expired)."""

    code = "session_not_found"


class Compacted(InvalidRequest):
    """A watch asked for revisions older than the retained window; ``oldest_revision`` is the first kept."""

    code = "compacted"
    http_status = 410

    def __init__(self, message: str = "", *, leader: str | None = None, oldest_revision: int = 0) -> None:
        super().__init__(message or f"revisions before {oldest_revision} were compacted", leader=leader)
        self.oldest_revision = oldest_revision

    def to_dict(self) -> dict[str, Any]:
        body = super().to_dict()
        body["oldest_revision"] = self.oldest_revision
        return body


class NotLeader(ConsensusError):
    """This node is not the leader and cannot take the request; nothing was submitted."""

    code = "not_leader"
    definite = True
    http_status = 503

    def __init__(self, message: str = "", *, leader: str | None = None) -> None:
        super().__init__(message or f"not the leader (leader: {leader or 'unknown'})", leader=leader)

    @property
    def leader_hint(self) -> str | None:
        return self.leader


class Unavailable(ConsensusError):
    """No leader or no quorum is reachable; nothing was submitted."""

    code = "unavailable"
    definite = True
    http_status = 503


class Overloaded(Unavailable):
    """The node is at its cap of connections or requests in flight; nothing was submitted."""

    code = "overloaded"


class Rejected(ConsensusError):
    """The state machine applied the command and refused it (CAS mismatch, lock held, ...)."""

    code = "rejected"
    definite = True
    http_status = 409

    def __init__(self, reason: str = "", *, leader: str | None = None, detail: Any = None) -> None:
        super().__init__(reason or "rejected by the state machine", leader=leader)
        self.reason = self.message
        self.detail = detail

    def to_dict(self) -> dict[str, Any]:
        body = super().to_dict()
        if self.detail is not None:
            body["detail"] = self.detail
        return body


class LockHeld(Rejected):
    """The lock is held in a conflicting mode and the acquire's wait ran out (or was 0)."""

    code = "lock_held"


class LockNotHeld(Rejected):
    """A release named a lock the session does not hold with that token (released, expired, wrong token)."""

    code = "lock_not_held"


class RevisionMismatch(Rejected):
    """A compare on a revision failed; ``detail`` is the key's current state (or None)."""

    code = "revision_mismatch"

    def to_dict(self) -> dict[str, Any]:
        body = super().to_dict()
        body["detail"] = self.detail  # null says "the key does not exist", so it is always there
        return body


class QuotaExceeded(Rejected):
    """An app quota is full (keys, counters, sessions, locks); nothing was changed."""

    code = "quota_exceeded"


class IntentHeld(Rejected):
    """A write met another transaction's intent (or read lock) on a key; nothing was changed.
    ``detail`` names the key and the holder: ``{"key", "txn", "coordinator", "age_ms"}``."""

    code = "intent_held"


class TxnAborted(Rejected):
    """A cross-group transaction was aborted (a conflict, a failed validation or a resolver won);
    none of its writes applied anywhere. ``detail`` says why."""

    code = "txn_aborted"


class SessionExpired(ConsensusError):
    """The client session expired or was evicted; the request was not applied (retry in a new session)."""

    code = "session_expired"
    definite = True
    http_status = 409


class Indeterminate(ConsensusError):
    """The request was submitted but its outcome is unknown (timeout, leader change)."""

    code = "indeterminate"
    definite = False
    http_status = 504


def _classes() -> list[type[ConsensusError]]:
    found: list[type[ConsensusError]] = []
    pending: list[type[ConsensusError]] = [ConsensusError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


def error_class(code: Any) -> type[ConsensusError] | None:
    """Return the error class whose ``code`` is ``code`` (None for an unknown code)."""
    for cls in _classes():
        if cls.code == code and cls.__module__ == __name__:
            return cls
    return None


def from_dict(body: dict[str, Any]) -> ConsensusError:
    """Rebuild an error from its JSON form (the inverse of ``ConsensusError.to_dict``)."""
    code = body.get("code")
    message = str(body.get("message", ""))
    leader = body.get("leader")
    cls = error_class(code)
    if cls is None or cls is ConsensusError:
        # An unknown code (a newer server) or "internal": we cannot tell what happened.
        return Indeterminate(message or f"unknown error code {code!r}", leader=leader)
    if issubclass(cls, Rejected):
        return cls(message, leader=leader, detail=body.get("detail"))
    if issubclass(cls, Compacted):
        return cls(message, leader=leader, oldest_revision=int(body.get("oldest_revision") or 0))
    return cls(message, leader=leader)


__all__ = [
    "ConsensusError",
    "InvalidRequest",
    "NotFound",
    "Unauthorized",
    "MethodNotAllowed",
    "PayloadTooLarge",
    "NotLeader",
    "Unavailable",
    "Rejected",
    "Indeterminate",
    "KeyNotFound",
    "SessionNotFound",
    "Compacted",
    "Overloaded",
    "LockHeld",
    "LockNotHeld",
    "RevisionMismatch",
    "QuotaExceeded",
    "IntentHeld",
    "TxnAborted",
    "SessionExpired",
    "error_class",
    "from_dict",
]
