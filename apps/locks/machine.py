"""The lock-service state machine: sessions (leases) and exclusive or shared locks with fencing tokens.

Commands (plain data, as they travel in the log):

- ``{"op": "open", "ttl_ms": n}`` -> ``{"id", "ttl_ms"}``: a session whose lease runs ``ttl_ms``
  from this command's leader-stamped time; its id is ``str(ctx.seq)``;
- ``{"op": "keepalive", "session": id}`` -> ``{"id", "ttl_ms"}``: the lease runs ``ttl_ms`` from now;
- ``{"op": "close", "session": id}`` -> ``{"id", "released": [names]}``: releases its locks;
- ``{"op": "acquire", "name", "session", "mode": "exclusive"|"shared", "wait_ms"}`` ->
  ``{"granted": grant}`` or ``{"waiting": waiter id, "index": log index}``. A grant is
  ``{"name", "mode", "session", "token"}``; the token is ``ctx.seq`` of the command that granted
  it. Held (or others queue) and ``wait_ms`` 0: ``LockHeld``. The same session and mode again
  returns the same grant (or the same waiter);
- ``{"op": "release", "name", "session", "token"}`` -> ``{"name", "session", "token", "released": true}``;
  a lock the session does not hold with that token: ``LockNotHeld``;
- ``{"op": "set_limits", "limits": {...}}`` -> the limits: replicated quotas (``LockLimits``).

Queries: ``{"op": "session", "session"}``, ``{"op": "lock", "name"}`` ->
``{"name", "holders": [{"session", "mode", "token"}], "waiters": [{"session", "mode"}]}``,
``{"op": "waiter", "waiter": id}`` -> ``{"status": "waiting"|"granted"|"timed_out"|"session_gone"|"unknown",
"grant"?}`` and ``{"op": "limits"}``.

Time: only leader-stamped time (``ctx.time_ns``) moves leases and waiter deadlines, in
``advance_time`` (the node appends time entries while ``wants_time()``) and before each command.
The first entry of a new term gives every session one extra TTL from that entry's time
(DESIGN section 4): a new leader's clock may be ahead, and nobody could keep alive during the
election. Waiters are served first come first served: a request queues whenever anyone waits,
so an exclusive waiter is never starved by later shared requests.

A waiter that leaves the queue (granted, deadline passed, session gone) leaves a record under its
id, kept ``RESOLVED_RETENTION_NS`` of stamped time (at most ``RESOLVED_CAPACITY`` records), so the
node that answers the waiting HTTP request can look up the outcome in its own state once it
has applied that far. Pure and deterministic: no clocks, no I/O.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import msgpack

from apps.counter.machine import NAME_PATTERN, is_int64
from consensus.errors import InvalidRequest, LockHeld, LockNotHeld, QuotaExceeded, SessionNotFound
from consensus.machine import ApplyContext

MODES = ("exclusive", "shared")
MS = 1_000_000  # nanoseconds per millisecond
RESOLVED_RETENTION_NS = 120_000 * MS
RESOLVED_CAPACITY = 20_000
MIN_TTL_MS = 500
MAX_TTL_MS = 3_600_000
MAX_WAIT_MS = 60_000
_NAME = re.compile(NAME_PATTERN)

__all__ = ["LockLimits", "LocksMachine", "MODES", "NAME_PATTERN", "check_name"]


@dataclass(frozen=True)
class LockLimits:
    """Replicated quotas; change them with ``{"op": "set_limits"}``."""

    max_sessions: int = 10_000
    max_locks: int = 10_000  # locks with a holder or a waiter
    max_waiters_per_lock: int = 1_000
    max_locks_per_session: int = 1_000  # held or waited for
    # The defaults of these three are also their bounds (and the HTTP schema's): limits may narrow them.
    min_ttl_ms: int = MIN_TTL_MS
    max_ttl_ms: int = MAX_TTL_MS
    max_wait_ms: int = MAX_WAIT_MS  # an acquire's HTTP answer comes within about this, plus a second

    def changed(self, changes: Any) -> "LockLimits":
        if not isinstance(changes, dict) or not changes:
            raise InvalidRequest(f"limits is a non-empty object with fields of {sorted(asdict(self))}")
        for name, value in changes.items():
            if name not in asdict(self):
                raise InvalidRequest(f"unknown lock limit {str(name)[:40]!r}; limits are {sorted(asdict(self))}")
            if not is_int64(value) or not 1 <= value <= 86_400_000:
                raise InvalidRequest(f"lock limit {name} must be an integer from 1 to 86400000")
        new = replace(self, **changes)
        if not MIN_TTL_MS <= new.min_ttl_ms <= new.max_ttl_ms <= MAX_TTL_MS or new.max_wait_ms > MAX_WAIT_MS:
            raise InvalidRequest(f"ttl limits stay within {MIN_TTL_MS}..{MAX_TTL_MS} ms (min below max), "
                                 f"max_wait_ms at most {MAX_WAIT_MS}")
        if new.min_ttl_ms > new.max_ttl_ms:
            raise InvalidRequest("min_ttl_ms must not be above max_ttl_ms")
        return new


def check_name(name: Any, what: str = "a lock name") -> str:
    """Return ``name`` if it follows the counter's name rules, else raise ``InvalidRequest``."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidRequest(f"{what} is 1 to 128 characters of A-Z a-z 0-9 . _ ~ -, not {str(name)[:140]!r}")
    return name


_FIELDS = {
    "open": {"ttl_ms"},
    "keepalive": {"session"},
    "close": {"session"},
    "acquire": {"name", "session", "mode", "wait_ms"},
    "release": {"name", "session", "token"},
    "set_limits": {"limits"},
    "session": {"session"},
    "lock": {"name"},
    "waiter": {"waiter"},
    "limits": set(),
}
COMMANDS = ("open", "keepalive", "close", "acquire", "release", "set_limits")
QUERIES = ("session", "lock", "waiter", "limits")


def _check(message: Any, ops: tuple[str, ...]) -> dict[str, Any]:
    """Check a command's or query's shape (not the state-dependent rules); raise ``InvalidRequest``."""
    if not isinstance(message, dict):
        raise InvalidRequest("a locks command must be a dict")
    op = message.get("op")
    if op not in ops:
        raise InvalidRequest(f"unknown locks op {str(op)[:40]!r}; expected one of {', '.join(ops)}")
    fields = set(message) - {"op"}
    if fields != _FIELDS[op]:
        raise InvalidRequest(f"locks op {op!r} takes fields {sorted(_FIELDS[op])}, got {sorted(map(str, fields))[:8]}")
    if "name" in message:
        check_name(message["name"])
    if "session" in message:
        check_name(message["session"], "a session id")
    if "mode" in message and message["mode"] not in MODES:
        raise InvalidRequest("mode is 'exclusive' or 'shared'")
    for number in ("ttl_ms", "wait_ms", "token", "waiter"):
        if number in message and not (is_int64(message[number]) and message[number] >= 0):
            raise InvalidRequest(f"{number} must be a non-negative 64-bit integer")
    return message


def _id_order(session_id: str) -> tuple[int, str]:
    return len(session_id), session_id  # numeric order for the decimal ids this machine makes


@dataclass
class _Session:
    ttl_ns: int
    deadline_ns: int
    locks: set[str] = field(default_factory=set)  # held or waited for


@dataclass
class _Waiter:
    id: int
    session: str
    mode: str
    deadline_ns: int


@dataclass
class _Lock:
    holders: dict[str, int] = field(default_factory=dict)  # session -> token, in grant order
    mode: str = "exclusive"  # of the holders (meaningless when there are none)
    waiters: list[_Waiter] = field(default_factory=list)  # first come first served

    def compatible(self, mode: str) -> bool:
        return not self.holders or (mode == "shared" and self.mode == "shared")


class LocksMachine:
    """Sessions and locks; see the module docstring for the commands."""

    def __init__(self) -> None:
        self.sessions: dict[str, _Session] = {}
        self.locks: dict[str, _Lock] = {}
        self.resolved: OrderedDict[int, tuple[int, str, Any]] = OrderedDict()  # waiter -> (time, status, grant)
        self.limits = LockLimits()
        self.term = 0
        self.now_ns = 0  # the latest leader-stamped time applied

    # -- the StateMachine protocol -------------------------------------------------------------

    def validate(self, command: dict[str, Any]) -> None:
        """Refuse a malformed command, or one over the limits as applied here, before it is proposed."""
        _check(command, COMMANDS)
        self._check_bounds(command, self.limits)

    def validate_query(self, query: dict[str, Any]) -> None:
        _check(query, QUERIES)

    def wants_time(self) -> bool:
        return bool(self.sessions)

    def advance_time(self, ctx: ApplyContext) -> None:
        self._observe(ctx)

    def apply(self, command: dict[str, Any], ctx: ApplyContext) -> Any:
        _check(command, COMMANDS)
        self._observe(ctx)
        self._check_bounds(command, self.limits)  # the limits may have changed since it was proposed
        op = command["op"]
        if op == "open":
            return self._open(command["ttl_ms"], ctx)
        if op == "set_limits":
            self.limits = self.limits.changed(command["limits"])
            return asdict(self.limits)
        session_id = command["session"]
        session = self.sessions.get(session_id)
        if session is None:
            raise SessionNotFound(f"no session {session_id!r} (never opened, closed or expired)")
        if op == "keepalive":
            session.deadline_ns = ctx.time_ns + session.ttl_ns
            return {"id": session_id, "ttl_ms": session.ttl_ns // MS}
        if op == "close":
            released = self._end_session(session_id, ctx, "session_gone")
            return {"id": session_id, "released": released}
        if op == "acquire":
            return self._acquire(command, session_id, session, ctx)
        return self._release(command["name"], session_id, command["token"], ctx)

    def query(self, query: dict[str, Any]) -> Any:
        _check(query, QUERIES)
        op = query["op"]
        if op == "lock":
            return self._describe(query["name"])
        if op == "waiter":
            return self._waiter_status(query["waiter"])
        if op == "limits":
            return asdict(self.limits)
        session_id = query["session"]
        session = self.sessions.get(session_id)
        if session is None:
            raise SessionNotFound(f"no session {session_id!r} (never opened, closed or expired)")
        held = [{"name": name, "mode": self.locks[name].mode, "token": self.locks[name].holders[session_id]}
                for name in sorted(session.locks) if session_id in self.locks[name].holders]
        return {"id": session_id, "ttl_ms": session.ttl_ns // MS,
                "expires_in_ms": max(0, session.deadline_ns - self.now_ns) // MS, "held": held}

    # -- time ------------------------------------------------------------------------------------

    def _observe(self, ctx: ApplyContext) -> None:
        """Bring leases and waiters up to ``ctx``'s stamped time (and term), in a fixed order."""
        self.now_ns = max(self.now_ns, ctx.time_ns)
        if ctx.term > self.term:
            # A new leader: one extra TTL for every lease, before anything expires (section 4).
            self.term = ctx.term
            for session in self.sessions.values():
                session.deadline_ns = max(session.deadline_ns, ctx.time_ns + session.ttl_ns)
        # Sorted, not in dict order: a replica restored from a snapshot must end them in the same order.
        now = ctx.time_ns
        for session_id in sorted((s for s, session in self.sessions.items() if session.deadline_ns <= now), key=_id_order):
            self._end_session(session_id, ctx, "session_gone")
        for name in sorted(n for n, lock in self.locks.items() if any(w.deadline_ns <= now for w in lock.waiters)):
            lock = self.locks[name]
            for waiter in [w for w in lock.waiters if w.deadline_ns <= now]:
                self._drop_waiter(name, waiter, ctx, "timed_out")
            self._grant_waiters(name, ctx)
        while self.resolved and (len(self.resolved) > RESOLVED_CAPACITY
                                 or next(iter(self.resolved.values()))[0] < now - RESOLVED_RETENTION_NS):
            self.resolved.popitem(last=False)

    # -- sessions ---------------------------------------------------------------------------------

    @staticmethod
    def _check_bounds(command: dict[str, Any], limits: LockLimits) -> None:
        if "ttl_ms" in command and not limits.min_ttl_ms <= command["ttl_ms"] <= limits.max_ttl_ms:
            raise InvalidRequest(f"ttl_ms must be from {limits.min_ttl_ms} to {limits.max_ttl_ms}")
        if command.get("wait_ms", 0) > limits.max_wait_ms:
            raise InvalidRequest(f"wait_ms must be at most {limits.max_wait_ms}")

    def _open(self, ttl_ms: int, ctx: ApplyContext) -> dict[str, Any]:
        limits = self.limits
        if len(self.sessions) >= limits.max_sessions:
            raise QuotaExceeded(f"the lock service holds its limit of {limits.max_sessions} sessions")
        session_id = str(ctx.seq)
        self.sessions[session_id] = _Session(ttl_ms * MS, ctx.time_ns + ttl_ms * MS)
        return {"id": session_id, "ttl_ms": ttl_ms}

    def _end_session(self, session_id: str, ctx: ApplyContext, why: str) -> list[str]:
        """Drop a session: release its locks, drop its waiters, grant to those next in line."""
        session = self.sessions.pop(session_id)
        released = []
        for name in sorted(session.locks):
            lock = self.locks[name]
            if lock.holders.pop(session_id, None) is not None:
                released.append(name)
            for waiter in [w for w in lock.waiters if w.session == session_id]:
                self._drop_waiter(name, waiter, ctx, why)
            self._grant_waiters(name, ctx)
        return released

    # -- locks ------------------------------------------------------------------------------------

    def _acquire(self, command: dict[str, Any], session_id: str, session: _Session, ctx: ApplyContext) -> dict[str, Any]:
        name, mode, wait_ms = command["name"], command["mode"], command["wait_ms"]
        limits = self.limits
        lock = self.locks.get(name)
        if lock is not None:
            if session_id in lock.holders:
                if lock.mode != mode:
                    raise LockHeld(f"session {session_id} holds {name!r} {lock.mode}; release it first",
                                   detail=self._describe(name))
                return {"granted": self._grant_of(name, session_id)}
            for waiter in lock.waiters:
                if waiter.session == session_id:
                    if waiter.mode != mode:
                        raise LockHeld(f"session {session_id} waits for {name!r} {waiter.mode}",
                                       detail=self._describe(name))
                    return {"waiting": waiter.id, "index": ctx.index}
        if lock is None and len(self.locks) >= limits.max_locks:
            raise QuotaExceeded(f"the lock service holds its limit of {limits.max_locks} locks")
        if len(session.locks) >= limits.max_locks_per_session:
            raise QuotaExceeded(f"session {session_id} holds or waits for its limit of {limits.max_locks_per_session} locks")
        current = lock or _Lock()
        if not current.waiters and current.compatible(mode):
            self.locks[name] = current
            self._hold(name, session_id, mode, ctx.seq)
            return {"granted": self._grant_of(name, session_id)}
        if wait_ms == 0:
            raise LockHeld(f"lock {name!r} is held", detail=self._describe(name))
        if len(current.waiters) >= limits.max_waiters_per_lock:
            raise QuotaExceeded(f"lock {name!r} has its limit of {limits.max_waiters_per_lock} waiters")
        current.waiters.append(_Waiter(ctx.seq, session_id, mode, ctx.time_ns + wait_ms * MS))
        session.locks.add(name)
        return {"waiting": ctx.seq, "index": ctx.index}

    def _release(self, name: str, session_id: str, token: int, ctx: ApplyContext) -> dict[str, Any]:
        lock = self.locks.get(name)
        if lock is None or lock.holders.get(session_id) != token:
            raise LockNotHeld(f"session {session_id} does not hold {name!r} with token {token}",
                              detail=self._describe(name))
        del lock.holders[session_id]
        self.sessions[session_id].locks.discard(name)  # a holder never waits for the same lock
        self._grant_waiters(name, ctx)
        return {"name": name, "session": session_id, "token": token, "released": True}

    def _hold(self, name: str, session_id: str, mode: str, token: int) -> None:
        lock = self.locks[name]
        lock.holders[session_id] = token
        lock.mode = mode
        self.sessions[session_id].locks.add(name)

    def _grant_of(self, name: str, session_id: str) -> dict[str, Any]:
        lock = self.locks[name]
        return {"name": name, "mode": lock.mode, "session": session_id, "token": lock.holders[session_id]}

    def _grant_waiters(self, name: str, ctx: ApplyContext) -> None:
        """Grant to the head of the queue while it is compatible; forget a lock nobody uses."""
        lock = self.locks[name]
        while lock.waiters and lock.compatible(lock.waiters[0].mode):
            waiter = lock.waiters.pop(0)
            self._hold(name, waiter.session, waiter.mode, ctx.seq)
            self._resolve(waiter.id, ctx, "granted", self._grant_of(name, waiter.session))
        if not lock.holders and not lock.waiters:
            del self.locks[name]

    def _drop_waiter(self, name: str, waiter: _Waiter, ctx: ApplyContext, why: str) -> None:
        self.locks[name].waiters.remove(waiter)
        session = self.sessions.get(waiter.session)  # None when the session itself is ending
        if session is not None:
            session.locks.discard(name)  # a session never both holds and waits for one lock
        self._resolve(waiter.id, ctx, why, None)

    def _resolve(self, waiter_id: int, ctx: ApplyContext, status: str, grant: Any) -> None:
        self.resolved[waiter_id] = (ctx.time_ns, status, grant)

    def _waiter_status(self, waiter_id: int) -> dict[str, Any]:
        found = self.resolved.get(waiter_id)
        if found is not None:
            return {"status": found[1], "grant": found[2]}
        for lock in self.locks.values():
            if any(w.id == waiter_id for w in lock.waiters):
                return {"status": "waiting", "grant": None}
        return {"status": "unknown", "grant": None}

    def _describe(self, name: str) -> dict[str, Any]:
        lock = self.locks.get(name) or _Lock()
        return {"name": name,
                "holders": [{"session": s, "mode": lock.mode, "token": t} for s, t in lock.holders.items()],
                "waiters": [{"session": w.session, "mode": w.mode} for w in lock.waiters]}

    # -- snapshots ----------------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        # Sessions and locks sorted by key; holders and waiters keep their order (it is meaning).
        state = {
            "v": 1,
            "term": self.term,
            "now_ns": self.now_ns,
            "limits": asdict(self.limits),
            "sessions": [[sid, s.ttl_ns, s.deadline_ns, sorted(s.locks)] for sid, s in sorted(self.sessions.items(), key=lambda item: _id_order(item[0]))],
            "locks": [[name, lock.mode, list(lock.holders.items()),
                       [[w.id, w.session, w.mode, w.deadline_ns] for w in lock.waiters]]
                      for name, lock in sorted(self.locks.items())],
            "resolved": [[wid, t, status, grant] for wid, (t, status, grant) in self.resolved.items()],
        }
        return msgpack.packb(state, use_bin_type=True)  # type: ignore[no-any-return]

    def restore(self, data: bytes) -> None:
        state = msgpack.unpackb(data, raw=False, strict_map_key=False)
        self.term = state["term"]
        self.now_ns = state["now_ns"]
        self.limits = LockLimits(**state["limits"])
        self.sessions = {sid: _Session(ttl, deadline, set(locks)) for sid, ttl, deadline, locks in state["sessions"]}
        self.locks = {name: _Lock({s: t for s, t in holders}, mode, [_Waiter(*w) for w in waiters])
                      for name, mode, holders, waiters in state["locks"]}
        self.resolved = OrderedDict((wid, (t, status, grant)) for wid, t, status, grant in state["resolved"])
