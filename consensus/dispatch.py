"""Apply log entries to named state machines: the one total dispatcher.

Every committed entry goes through ``Dispatcher.apply``, which never raises: a command that
fails (bad shape, unknown machine, an exception inside the machine) becomes an error *value*
for its caller while every replica keeps applying. pysyncobj, left alone, retries an entry
whose apply raised forever, wedging the whole cluster.

An entry is a stamped payload (``consensus.engine.payload``: a tag and an 8-byte time slot the
leader fills with its clock when it appends the entry) around msgpack
``[1, [[machine, command, key | None], ...]]``: ``command`` is the msgpack bytes of the command
(encoded once, when it was validated), ``key`` an optional idempotency key. The entry's term
comes from the log itself, not from the payload.

An op may carry a client session ``[client id, seq, lowest unacknowledged]`` as a fourth
element (``consensus.sessions``): then it applies once per (client, seq), its outcome is kept
until the client acknowledges it, and a request of an unknown client is a definite
``session_expired``. Without a session, the idempotency key alone makes it exactly-once within
the idempotency window. Both tables, and every limit on them, are replicated state.

System commands travel to the reserved machine ``SYSTEM`` (""): ``{"op": "register_client"}``
(returns a client id), ``{"op": "close_client", "client_id": c}`` and
``{"op": "set_limits", "limits": {...}}``.
"""

from __future__ import annotations

import collections
import hashlib
import logging
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from consensus import codec
from consensus.engine import payload
from consensus.errors import (
    Compacted,
    ConsensusError,
    Indeterminate,
    InvalidRequest,
    QuotaExceeded,
    Rejected,
    SessionExpired,
)
from consensus.machine import ApplyContext, StateMachine
from consensus.sessions import SessionTable

log = logging.getLogger("consensus.dispatch")

ENTRY_VERSION = 1
SYSTEM = ""  # the reserved machine name of session and limit commands


@dataclass(frozen=True)
class Outcome:
    """What applying one command produced: ``kind`` is "ok", "rejected" or "invalid"."""

    kind: str
    value: Any = None  # the result for "ok", the reason for the others
    detail: Any = None
    duplicate: bool = False  # True when replayed from the idempotency table
    code: str | None = None  # the error code for "rejected"/"invalid" (consensus.errors), if specific

    def to_wire(self) -> list[Any]:
        return [self.kind, self.value, self.detail, self.code]

    @classmethod
    def from_wire(cls, data: list[Any], duplicate: bool = False) -> "Outcome":
        return cls(data[0], data[1], data[2], duplicate, data[3] if len(data) > 3 else None)


def error_outcome(exc: Exception) -> Outcome:
    """Turn an exception raised by a machine into the outcome its caller gets (never raises).

    ``Rejected`` (and its subclasses) keep their reason, detail and code; other raftwork errors
    with a definite, request-shaped code (invalid request, not found) become "invalid" with their
    code; anything else is the machine's bug and is reported as "rejected".
    """
    if isinstance(exc, Rejected):
        return Outcome("rejected", exc.reason, exc.detail, code=exc.code)
    code = getattr(exc, "code", None)
    if isinstance(exc, InvalidRequest):
        detail = {"oldest_revision": exc.oldest_revision} if isinstance(exc, Compacted) else None
        return Outcome("invalid", exc.message, detail, code=exc.code)
    if isinstance(exc, ConsensusError):  # its code says what the caller gets (definite or not)
        return Outcome("rejected", exc.message, code=exc.code)
    if code in ("invalid_request", "not_found"):
        return Outcome("invalid", f"{type(exc).__name__}: {exc}", code=code)
    return Outcome("rejected", f"{type(exc).__name__}: {exc}")


def encode_entry(time_ns: int, ops: list[list[Any]]) -> bytes:
    """Build a log entry; the leader replaces ``time_ns`` with its own clock when it appends it."""
    return payload.with_time(time_ns, codec.pack([ENTRY_VERSION, ops]))


_SESSION_ERRORS = {
    "expired": lambda c, s: SessionExpired(f"client session {c} expired or was evicted; open a new one"),
    "mismatch": lambda c, s: InvalidRequest(f"request {s} of client {c} was used for a different request"),
    "acknowledged": lambda c, s: Indeterminate(f"request {s} of client {c} was already answered and acknowledged"),
    "full": lambda c, s: QuotaExceeded(f"client {c} has too many unacknowledged requests"),
}


def _digest(machine: str, command_bytes: bytes) -> bytes:
    return hashlib.blake2b(machine.encode() + b"\0" + command_bytes, digest_size=8).digest()


class Dispatcher:
    """Route committed commands to machines; keep time, sequence and the idempotency table."""

    def __init__(self, machines: Mapping[str, StateMachine]) -> None:
        self.machines = dict(machines)
        self.sessions = SessionTable()
        self.time_ns = 0
        self.term = 0  # the term of the last entry applied
        self.seq = 0
        self.wants_time = False  # some machine holds expiring state (read by the node's time ticker)
        # key -> (time_ns, digest, outcome wire form); insertion order is time order.
        # Keys in the order they came (a deque: evicting from the front of a dict would scan the
        # holes that deletions leave); a plain dict and a deque both copy at memory speed (the
        # snapshot capture). Keys are never updated, only added and forgotten oldest first.
        self.dedup: dict[str, tuple[int, bytes, list[Any]]] = {}
        self._dedup_order: collections.deque[str] = collections.deque()
        self.last_index = 0

    # -- applying ----------------------------------------------------------------------------

    def apply(self, data: bytes, index: int, term: int = 0) -> list[Outcome]:
        """Apply the log entry ``data`` at ``index`` (of ``term``); never raises."""
        self.last_index = index
        try:
            if not payload.is_stamped_payload(data):
                raise ValueError("not a raftwork entry")
            time_ns = payload.time_of(data)
            version, ops = codec.unpack(payload.body_of(data))
            if version != ENTRY_VERSION or not isinstance(ops, list):
                raise ValueError(f"unknown entry version {version!r}")
        except Exception as exc:  # an entry we cannot read must not stop the log
            log.error("skipping unreadable log entry %d: %s", index, exc)
            return []
        advanced = term != self.term
        if time_ns > self.time_ns:
            self.time_ns = time_ns
            advanced = True
            self._expire()
            self.sessions.expire(time_ns)
        self.term = max(self.term, term)
        if advanced:
            self._advance_time(index, term)
        outcomes = []
        for op in ops:
            outcomes.append(self._apply_op(op, index, term))
        self.wants_time = self._any_wants_time()
        return outcomes

    def _advance_time(self, index: int, term: int) -> None:
        """Let time-dependent machines expire what the new leader-stamped time has passed."""
        for name, machine in self.machines.items():
            advance = getattr(machine, "advance_time", None)
            wants = getattr(machine, "wants_time", None)
            if advance is None or wants is None:
                continue
            try:
                if not wants():
                    continue
                self.seq += 1
                advance(ApplyContext(index=index, term=term, time_ns=self.time_ns, seq=self.seq))
            except Exception as exc:  # a machine's bug must not stop the log
                log.warning("%s raised while advancing time at entry %d: %r", name, index, exc)

    def _any_wants_time(self) -> bool:
        for machine in self.machines.values():
            wants = getattr(machine, "wants_time", None)
            if wants is not None:
                try:
                    if wants():
                        return True
                except Exception:
                    continue
        return False

    def _apply_op(self, op: Any, index: int, term: int) -> Outcome:
        try:
            machine_name, command_bytes, key = op[0], op[1], op[2]
            session = op[3] if len(op) > 3 else None
            command = codec.unpack(command_bytes)
            if session is not None:
                client_id, seq, lowest = (int(v) for v in session)
        except Exception:
            return Outcome("invalid", "malformed command envelope")
        digest = _digest(str(machine_name), command_bytes)
        if session is not None:
            decision, wire = self.sessions.lookup(client_id, seq, lowest, digest, self.time_ns)
            if decision == "replay":
                return Outcome.from_wire(wire, duplicate=True)
            if decision != "apply":
                return error_outcome(_SESSION_ERRORS[decision](client_id, seq))
            if key is not None:
                key = f"{client_id}/{key}"  # a client's keys are its own
        if key is not None:
            seen = self.dedup.get(key)
            if seen is not None:
                if seen[1] != digest:
                    return Outcome("invalid", f"idempotency key {key!r} was used for a different request")
                return Outcome.from_wire(seen[2], duplicate=True)
        if machine_name == SYSTEM:
            outcome = self._run_system(command)
        else:
            outcome = self._run(machine_name, command, index, term)
        wire = self._storable(outcome)
        if session is not None:
            self.sessions.record(client_id, seq, digest, wire)
        if key is not None:
            self._remember(key, digest, wire)
        return outcome

    def _run_system(self, command: Any) -> Outcome:
        op = command.get("op") if isinstance(command, dict) else None
        if op == "register_client":
            self.seq += 1
            return Outcome("ok", self.sessions.register(self.seq, self.time_ns))
        if op == "close_client":
            return Outcome("ok", self.sessions.close(command.get("client_id")))
        if op == "set_limits":
            try:
                self.sessions.limits = self.sessions.limits.changed(dict(command.get("limits") or {}))
            except (ValueError, TypeError) as exc:
                return Outcome("invalid", str(exc), code="invalid_request")
            self._expire()
            return Outcome("ok", self.sessions.limits.to_wire())
        return Outcome("invalid", f"unknown system command {str(op)[:40]!r}", code="invalid_request")

    def _run(self, machine_name: Any, command: Any, index: int, term: int) -> Outcome:
        machine = self.machines.get(machine_name) if isinstance(machine_name, str) else None
        if machine is None:
            return Outcome("invalid", f"no state machine named {machine_name!r}")
        if not isinstance(command, dict):
            return Outcome("invalid", "a command must be a dict")
        self.seq += 1
        ctx = ApplyContext(index=index, term=term, time_ns=self.time_ns, seq=self.seq)
        try:
            return Outcome("ok", machine.apply(command, ctx))
        except Exception as exc:  # the machine's bug becomes its caller's error, not a wedge
            if not isinstance(exc, ConsensusError):
                log.warning("%s raised while applying entry %d: %r", machine_name, index, exc)
            return error_outcome(exc)

    @staticmethod
    def _storable(outcome: Outcome) -> list[Any]:
        wire = outcome.to_wire()
        try:
            codec.pack(wire)
        except Exception:  # a result that cannot be stored is replayed as its text
            wire = [outcome.kind, repr(outcome.value), None, outcome.code]
        return wire

    def _remember(self, key: str, digest: bytes, wire: list[Any]) -> None:
        self.dedup[key] = (self.time_ns, digest, wire)
        self._dedup_order.append(key)
        while len(self.dedup) > self.sessions.limits.idempotency_capacity:
            del self.dedup[self._dedup_order.popleft()]

    def _expire(self) -> None:
        """Forget keys beyond the capacity and keys older than the window, oldest first."""
        order, limits = self._dedup_order, self.sessions.limits
        while len(self.dedup) > limits.idempotency_capacity:
            del self.dedup[order.popleft()]
        horizon = self.time_ns - limits.idempotency_ttl
        while order and self.dedup[order[0]][0] < horizon:
            del self.dedup[order.popleft()]

    # -- queries -----------------------------------------------------------------------------

    def query(self, machine_name: str, query: dict[str, Any]) -> Outcome:
        """Run a read-only query against the local state; never raises."""
        if machine_name == SYSTEM:
            if query.get("op") == "limits":
                return Outcome("ok", self.sessions.limits.to_wire())
            if query.get("op") == "sessions":
                return Outcome("ok", len(self.sessions.sessions))
            return Outcome("invalid", "unknown system query", code="invalid_request")
        machine = self.machines.get(machine_name)
        if machine is None:
            return Outcome("invalid", f"no state machine named {machine_name!r}")
        try:
            return Outcome("ok", machine.query(query))
        except Exception as exc:
            return error_outcome(exc)

    # -- snapshots ---------------------------------------------------------------------------

    def state_digest(self) -> str:
        """Return a hash of every machine's state and the exactly-once table (not of the index)."""
        h = hashlib.blake2b(digest_size=16)
        for name in sorted(self.machines):
            blob = self.machines[name].snapshot()
            h.update(name.encode() + b"\0" + len(blob).to_bytes(8, "big") + blob)
        h.update(codec.pack([[k, t, d, w] for k, (t, d, w) in self.dedup.items()]))
        h.update(codec.pack(SessionTable.encode(self.sessions.capture())))
        return h.hexdigest()

    def capture(self) -> Callable[[], bytes]:
        """Copy the state cheaply now; return a function that encodes that copy (any thread).

        A machine with a ``capture()`` of its own (a copy-on-write view) is encoded later; one
        without is snapshotted right here. The exactly-once table's values are immutable tuples,
        so a shallow copy of it is a consistent view.
        """
        parts: dict[str, Callable[[], bytes]] = {}
        for name, machine in self.machines.items():
            capture = getattr(machine, "capture", None)
            if capture is not None:
                parts[name] = capture()
            else:
                blob = machine.snapshot()
                parts[name] = lambda blob=blob: blob  # type: ignore[misc]
        dedup = self.dedup.copy()  # values are immutable tuples: a shallow copy is a consistent view
        sessions = self.sessions.capture()
        header = {"v": 1, "time_ns": self.time_ns, "term": self.term, "seq": self.seq, "index": self.last_index}

        def encode() -> bytes:
            return codec.pack(
                dict(header, machines={name: part() for name, part in parts.items()},
                     dedup=[[k, t, d, w] for k, (t, d, w) in dedup.items()], sessions=SessionTable.encode(sessions))
            )

        return encode

    def snapshot(self) -> bytes:
        return self.capture()()

    def restore(self, data: bytes) -> None:
        state = codec.unpack(data)
        self.time_ns = state["time_ns"]
        self.term = state.get("term", 0)
        self.seq = state["seq"]
        self.last_index = state.get("index", 0)
        for name, blob in state["machines"].items():
            machine = self.machines.get(name)
            if machine is None:
                log.warning("snapshot has state for machine %r, which this node does not run", name)
                continue
            machine.restore(blob)
        self.dedup = {k: (t, d, w) for k, t, d, w in state["dedup"]}
        self._dedup_order = collections.deque(self.dedup)
        self.sessions = SessionTable()
        if "sessions" in state:
            self.sessions.restore(state["sessions"])
        self.wants_time = self._any_wants_time()
