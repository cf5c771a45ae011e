"""Errors raised by raftwork, each saying whether its outcome is definite.

::

    ConsensusError                 base; .definite tells whether the outcome is known
    ├── InvalidRequest             malformed input; nothing was submitted          (definite)
    │   ├── NotFound               no such route, machine, key or member           (definite)
    │   ├── Unauthorized           a mutating request without the bearer token     (definite)
    │   ├── MethodNotAllowed       the route exists, the method does not           (definite)
    │   └── PayloadTooLarge        the request body is over the size limit         (definite)
    ├── NotLeader(leader_hint)     this node cannot take it; nothing submitted     (definite)
    ├── Unavailable                no leader or no quorum; nothing submitted       (definite)
    ├── Rejected(reason)           the state machine refused it                    (definite)
    └── Indeterminate              submitted, outcome unknown                      (not definite)

A definite error means the request did not change the replicated state. ``Indeterminate``
means it may or may not have: retrying with the same idempotency key is always safe.
Never raise a definite error when the outcome is unknown.
"""

from __future__ import annotations

from typing import Any


class ConsensusError(Exception):
    """Base class of every raftwork error."""

    code: str = "internal"
    definite: bool = True
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


class NotLeader(ConsensusError):
    """This node is not the leader and cannot take the request; nothing was submitted."""

    code = "not_leader"
    http_status = 503

    def __init__(self, message: str = "", *, leader: str | None = None) -> None:
        super().__init__(message or f"not the leader (leader: {leader or 'unknown'})", leader=leader)

    @property
    def leader_hint(self) -> str | None:
        return self.leader


class Unavailable(ConsensusError):
    """No leader or no quorum is reachable; nothing was submitted."""

    code = "unavailable"
    http_status = 503


class Rejected(ConsensusError):
    """The state machine applied the command and refused it (CAS mismatch, lock held, ...)."""

    code = "rejected"
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


class Indeterminate(ConsensusError):
    """The request was submitted but its outcome is unknown (timeout, leader change)."""

    code = "indeterminate"
    definite = False
    http_status = 504


def from_dict(body: dict[str, Any]) -> ConsensusError:
    """Rebuild an error from its JSON form (the inverse of ``ConsensusError.to_dict``)."""
    code = body.get("code")
    message = str(body.get("message", ""))
    leader = body.get("leader")
    for cls in (
        InvalidRequest,
        NotFound,
        Unauthorized,
        MethodNotAllowed,
        PayloadTooLarge,
        NotLeader,
        Unavailable,
        Rejected,
        Indeterminate,
    ):
        if cls.code == code:
            if cls is Rejected:
                return Rejected(message, leader=leader, detail=body.get("detail"))
            return cls(message, leader=leader)
    # An unknown code from a newer server: we cannot tell what happened.
    return Indeterminate(message or f"unknown error code {code!r}", leader=leader)


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
    "from_dict",
]
