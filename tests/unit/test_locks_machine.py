"""The lock-service machine against a plain Python model (Hypothesis stateful), plus its edges.

The model is written from the rules, not from the machine: a list of holders and a FIFO queue per
lock, leases as deadlines, a new term giving one extra TTL, tokens from a command counter. Steps
are driven as the dispatcher drives the machine: ``advance_time`` with a fresh sequence number
whenever stamped time moves or the term changes (while it wants time), then the command.
"""

from __future__ import annotations

import hypothesis.strategies as st
import msgpack
import pytest
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from apps.locks.machine import MS, LocksMachine
from consensus.errors import InvalidRequest, LockHeld, LockNotHeld, QuotaExceeded, SessionNotFound
from consensus.machine import ApplyContext

NAMES = ("a", "b")


class Model:
    """What the lock service should do, as plainly as it can be said."""

    def __init__(self) -> None:
        self.sessions: dict[str, list[int]] = {}  # id -> [ttl_ns, deadline_ns]
        self.holders: dict[str, list[tuple[str, str, int]]] = {n: [] for n in NAMES}  # (session, mode, token)
        self.queue: dict[str, list[tuple[int, str, str, int]]] = {n: [] for n in NAMES}  # (id, session, mode, deadline)
        self.outcome: dict[int, tuple[str, int | None]] = {}  # waiter id -> (status, token)
        self.term = 0

    def fits(self, name: str, mode: str) -> bool:
        held = self.holders[name]
        return not held or (mode == "shared" and all(m == "shared" for _, m, _ in held))

    def promote(self, name: str, token: int) -> None:
        while self.queue[name] and self.fits(name, self.queue[name][0][2]):
            wid, session, mode, _ = self.queue[name].pop(0)
            self.holders[name].append((session, mode, token))
            self.outcome[wid] = ("granted", token)

    def end(self, session: str, token: int) -> None:
        del self.sessions[session]
        for name in NAMES:
            self.holders[name] = [h for h in self.holders[name] if h[0] != session]
            for w in [w for w in self.queue[name] if w[1] == session]:
                self.queue[name].remove(w)
                self.outcome[w[0]] = ("session_gone", None)
            self.promote(name, token)

    def tick(self, now: int, term: int, token: int) -> None:
        if term > self.term:
            self.term = term
            for lease in self.sessions.values():
                lease[1] = max(lease[1], now + lease[0])
        for session in sorted((s for s, lease in self.sessions.items() if lease[1] <= now), key=int):
            self.end(session, token)
        for name in NAMES:
            late = [w for w in self.queue[name] if w[3] <= now]
            for w in late:
                self.queue[name].remove(w)
                self.outcome[w[0]] = ("timed_out", None)
            if late:
                self.promote(name, token)


class LocksAgainstModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.machine = LocksMachine()
        self.model = Model()
        self.now = 1_000 * MS
        self.term = 1
        self.seq = 0
        self.index = 0
        self.grants: dict[str, list[tuple[int, str]]] = {n: [] for n in NAMES}  # every grant's (token, mode), in order
        self.waiters: list[int] = []

    # -- driving the machine as the dispatcher does ------------------------------------------

    def _ctx(self) -> ApplyContext:
        self.seq += 1
        return ApplyContext(index=self.index, term=self.term, time_ns=self.now, seq=self.seq)

    def _entry(self, dt_ms: int = 0, new_term: bool = False) -> None:
        self.index += 1
        if dt_ms or new_term:
            self.now += dt_ms * MS
            self.term += int(new_term)
            if self.machine.wants_time():
                ctx = self._ctx()
                before = self._holder_tokens()
                self.machine.advance_time(ctx)
                self.model.tick(self.now, self.term, ctx.seq)
                self._record_grants(before)


    def _apply(self, command: dict) -> tuple[object, int]:
        self._entry()
        ctx = self._ctx()
        before = self._holder_tokens()
        self.model.tick(self.now, self.term, ctx.seq)  # the machine too catches up before each command
        try:
            result: object = self.machine.apply(command, ctx)
        except (InvalidRequest, LockHeld, LockNotHeld, QuotaExceeded) as exc:
            result = exc
        self._record_grants(before)
        return result, ctx.seq

    def _holder_tokens(self) -> set[tuple[str, str, int]]:
        return {(n, h["session"], h["token"]) for n in NAMES for h in self.machine.query({"op": "lock", "name": n})["holders"]}

    def _record_grants(self, before: set[tuple[str, str, int]]) -> None:
        for name in NAMES:
            for h in self.machine.query({"op": "lock", "name": name})["holders"]:
                if (name, h["session"], h["token"]) not in before:
                    self.grants[name].append((h["token"], h["mode"]))

    # -- rules -------------------------------------------------------------------------------

    @rule(ttl=st.sampled_from([500, 1000, 3000]))
    def open(self, ttl: int) -> None:
        result, seq = self._apply({"op": "open", "ttl_ms": ttl})
        assert result == {"id": str(seq), "ttl_ms": ttl}
        self.model.sessions[str(seq)] = [ttl * MS, self.now + ttl * MS]

    def _session(self, data: st.DataObject) -> str:
        known = sorted(self.model.sessions, key=int)
        return data.draw(st.sampled_from(known + ["999999"]) if known else st.just("999999"))

    @rule(data=st.data())
    def keepalive(self, data: st.DataObject) -> None:
        session = self._session(data)
        result, _ = self._apply({"op": "keepalive", "session": session})
        if session in self.model.sessions:
            self.model.sessions[session][1] = self.now + self.model.sessions[session][0]
            assert result == {"id": session, "ttl_ms": self.model.sessions[session][0] // MS}
        else:
            assert isinstance(result, SessionNotFound)

    @rule(data=st.data())
    def close(self, data: st.DataObject) -> None:
        session = self._session(data)
        if session not in self.model.sessions:
            assert isinstance(self._apply({"op": "close", "session": session})[0], SessionNotFound)
            return
        held = sorted(n for n in NAMES if any(h[0] == session for h in self.model.holders[n]))
        result, seq = self._apply({"op": "close", "session": session})
        self.model.end(session, seq)
        assert result == {"id": session, "released": held}

    @rule(data=st.data(), name=st.sampled_from(NAMES), mode=st.sampled_from(["exclusive", "shared"]),
          wait_ms=st.sampled_from([0, 200, 1000, 5000]))
    def acquire(self, data: st.DataObject, name: str, mode: str, wait_ms: int) -> None:
        session = self._session(data)
        command = {"op": "acquire", "name": name, "session": session, "mode": mode, "wait_ms": wait_ms}
        if session not in self.model.sessions:
            assert isinstance(self._apply(command)[0], SessionNotFound)
            return
        result, seq = self._apply(command)
        model = self.model
        mine = [h for h in model.holders[name] if h[0] == session]
        waiting = [w for w in model.queue[name] if w[1] == session]
        if mine or waiting:  # asked again: the same grant or the same waiter, or a refusal for another mode
            same_mode = (mine[0][1] if mine else waiting[0][2]) == mode
            if not same_mode:
                assert isinstance(result, LockHeld)
            elif mine:
                assert result == {"granted": {"name": name, "mode": mode, "session": session, "token": mine[0][2]}}
            else:
                assert result == {"waiting": waiting[0][0], "index": self.index}
        elif not model.queue[name] and model.fits(name, mode):
            model.holders[name].append((session, mode, seq))
            assert result == {"granted": {"name": name, "mode": mode, "session": session, "token": seq}}
        elif wait_ms == 0:
            assert isinstance(result, LockHeld), result
        else:
            model.queue[name].append((seq, session, mode, self.now + wait_ms * MS))
            assert result == {"waiting": seq, "index": self.index}
            self.waiters.append(seq)

    @rule(data=st.data(), name=st.sampled_from(NAMES), wrong=st.booleans())
    def release(self, data: st.DataObject, name: str, wrong: bool) -> None:
        holders = self.model.holders[name]
        if holders and not wrong:
            session, _, token = data.draw(st.sampled_from(holders))
        else:
            session, token = self._session(data), data.draw(st.integers(0, self.seq + 1))
        ok = (session, token) in {(h[0], h[2]) for h in holders}
        if session not in self.model.sessions:
            result, _ = self._apply({"op": "release", "name": name, "session": session, "token": token})
            assert isinstance(result, SessionNotFound)
            return
        result, seq = self._apply({"op": "release", "name": name, "session": session, "token": token})
        if not ok:
            assert isinstance(result, LockNotHeld)
            return
        assert result == {"name": name, "session": session, "token": token, "released": True}
        self.model.holders[name] = [h for h in holders if h[0] != session]
        self.model.promote(name, seq)

    @rule(dt_ms=st.sampled_from([50, 300, 800, 2500]), new_term=st.booleans())
    def time_passes(self, dt_ms: int, new_term: bool) -> None:
        self._entry(dt_ms, new_term)

    @rule()
    def snapshot_and_restore(self) -> None:
        blob = self.machine.snapshot()
        fresh = LocksMachine()
        fresh.restore(blob)
        assert fresh.snapshot() == blob
        self.machine = fresh  # the rest of the run goes on from the restored copy

    # -- invariants --------------------------------------------------------------------------

    @invariant()
    def same_locks_as_the_model(self) -> None:
        for name in NAMES:
            got = self.machine.query({"op": "lock", "name": name})
            assert got["holders"] == [{"session": s, "mode": m, "token": t} for s, m, t in self.model.holders[name]]
            assert got["waiters"] == [{"session": s, "mode": m} for _, s, m, _ in self.model.queue[name]]

    @invariant()
    def same_sessions_as_the_model(self) -> None:
        assert set(self.machine.sessions) == set(self.model.sessions)
        for session, (ttl, deadline) in self.model.sessions.items():
            assert self.machine.sessions[session].deadline_ns == deadline
            held = self.machine.query({"op": "session", "session": session})["held"]
            assert {h["name"] for h in held} == {n for n in NAMES if any(x[0] == session for x in self.model.holders[n])}

    @invariant()
    def waiters_end_as_the_model_says(self) -> None:
        for wid in self.waiters:
            got = self.machine.query({"op": "waiter", "waiter": wid})
            expected = self.model.outcome.get(wid)
            if expected is None:
                assert got == {"status": "waiting", "grant": None}
            else:
                assert got["status"] == expected[0]
                assert (got["grant"] or {}).get("token") == expected[1]

    @invariant()
    def exclusive_means_alone_and_tokens_increase(self) -> None:
        for name in NAMES:
            holders = self.model.holders[name]
            assert len(holders) <= 1 or all(m == "shared" for _, m, _ in holders)
            grants = self.grants[name]
            for (before, before_mode), (after, after_mode) in zip(grants, grants[1:]):
                # shared holders granted together share a token; any exclusive grant has a newer one
                assert after > before or (after == before and before_mode == after_mode == "shared")

    @invariant()
    def wants_time_while_sessions_exist(self) -> None:
        assert self.machine.wants_time() == bool(self.model.sessions)


TestLocksAgainstModel = LocksAgainstModel.TestCase
TestLocksAgainstModel.settings = settings(max_examples=200, stateful_step_count=50, deadline=None)


# -- edges -------------------------------------------------------------------------------------


def ctx(seq: int, time_ms: int = 1000, term: int = 1, index: int = 1) -> ApplyContext:
    return ApplyContext(index=index, term=term, time_ns=time_ms * MS, seq=seq)


def test_a_new_term_gives_every_lease_one_more_ttl_before_anything_expires():
    m = LocksMachine()
    session = m.apply({"op": "open", "ttl_ms": 1000}, ctx(1, 1000))["id"]
    # The election took longer than the lease: without the extra TTL it would expire here.
    m.advance_time(ctx(2, 5000, term=2))
    assert session in m.sessions and m.sessions[session].deadline_ns == 6000 * MS
    m.advance_time(ctx(3, 5999, term=2))
    assert session in m.sessions
    m.advance_time(ctx(4, 6000, term=2))
    assert session not in m.sessions  # the same term again gives nothing more


def test_expiry_releases_the_locks_and_grants_the_next_waiter_a_newer_token():
    m = LocksMachine()
    a = m.apply({"op": "open", "ttl_ms": 1000}, ctx(1, 1000))["id"]
    b = m.apply({"op": "open", "ttl_ms": 5000}, ctx(2, 1000))["id"]
    first = m.apply({"op": "acquire", "name": "x", "session": a, "mode": "exclusive", "wait_ms": 0}, ctx(3))["granted"]
    waiting = m.apply({"op": "acquire", "name": "x", "session": b, "mode": "exclusive", "wait_ms": 60000}, ctx(4))
    m.advance_time(ctx(5, 2000))
    status = m.query({"op": "waiter", "waiter": waiting["waiting"]})
    assert status["status"] == "granted" and status["grant"]["token"] == 5 > first["token"]
    assert m.query({"op": "lock", "name": "x"})["holders"] == [{"session": b, "mode": "exclusive", "token": 5}]


def test_a_shared_request_queues_behind_an_exclusive_waiter():
    m = LocksMachine()
    s = [m.apply({"op": "open", "ttl_ms": 10000}, ctx(i))["id"] for i in (1, 2, 3)]
    m.apply({"op": "acquire", "name": "x", "session": s[0], "mode": "shared", "wait_ms": 0}, ctx(4))
    m.apply({"op": "acquire", "name": "x", "session": s[1], "mode": "exclusive", "wait_ms": 5000}, ctx(5))
    with pytest.raises(LockHeld):  # compatible with the holder, but someone waits: no jumping the queue
        m.apply({"op": "acquire", "name": "x", "session": s[2], "mode": "shared", "wait_ms": 0}, ctx(6))
    assert m.apply({"op": "acquire", "name": "x", "session": s[2], "mode": "shared", "wait_ms": 5000}, ctx(7)) == \
        {"waiting": 7, "index": 1}
    m.apply({"op": "release", "name": "x", "session": s[0], "token": 4}, ctx(8))
    state = m.query({"op": "lock", "name": "x"})
    assert state["holders"] == [{"session": s[1], "mode": "exclusive", "token": 8}]
    assert state["waiters"] == [{"session": s[2], "mode": "shared"}]


def test_limits_are_replicated_and_enforced():
    m = LocksMachine()
    assert m.apply({"op": "set_limits", "limits": {"max_sessions": 1, "max_waiters_per_lock": 1}}, ctx(1))["max_sessions"] == 1
    a = m.apply({"op": "open", "ttl_ms": 1000}, ctx(2))["id"]
    with pytest.raises(QuotaExceeded):
        m.apply({"op": "open", "ttl_ms": 1000}, ctx(3))
    for bad in ({"ttl_ms": 10}, {"ttl_ms": 10**8}):
        with pytest.raises(InvalidRequest):
            m.apply({"op": "open", **bad}, ctx(4))
    with pytest.raises(InvalidRequest):
        m.apply({"op": "acquire", "name": "x", "session": a, "mode": "shared", "wait_ms": 60001}, ctx(5))
    for bad_limits in ({"nope": 1}, {"min_ttl_ms": 4_000_000}, {"min_ttl_ms": 100}, {"max_wait_ms": 61_000}, {"max_sessions": 0}, {}):
        with pytest.raises(InvalidRequest):
            m.apply({"op": "set_limits", "limits": bad_limits}, ctx(6))
    blob = m.snapshot()
    again = LocksMachine()
    again.restore(blob)
    assert again.query({"op": "limits"})["max_sessions"] == 1


@pytest.mark.parametrize("command", [
    {"op": "acquire", "name": "bad name", "session": "1", "mode": "exclusive", "wait_ms": 0},
    {"op": "acquire", "name": "x", "session": "1", "mode": "upgrade", "wait_ms": 0},
    {"op": "acquire", "name": "x", "session": "1", "mode": "shared", "wait_ms": -1},
    {"op": "acquire", "name": "x", "session": "1", "mode": "shared"},
    {"op": "release", "name": "x", "session": "1", "token": True},
    {"op": "open", "ttl_ms": 1.5},
    {"op": "open", "ttl_ms": 1000, "extra": 1},
    {"op": "nope"},
    ["not", "a", "dict"],
])
def test_malformed_commands_are_refused_and_change_nothing(command):
    m = LocksMachine()
    before = m.snapshot()
    with pytest.raises(InvalidRequest):
        m.validate(command)
    with pytest.raises(InvalidRequest):
        m.apply(command, ctx(1))
    assert m.snapshot() == before


def test_the_snapshot_is_plain_msgpack_in_a_fixed_order():
    m = LocksMachine()
    for i, name in enumerate(("zeta", "alpha", "mid"), start=1):
        sid = m.apply({"op": "open", "ttl_ms": 10000}, ctx(10 * i))["id"]
        m.apply({"op": "acquire", "name": name, "session": sid, "mode": "exclusive", "wait_ms": 0}, ctx(10 * i + 1))
    state = msgpack.unpackb(m.snapshot(), raw=False)
    assert [lock[0] for lock in state["locks"]] == ["alpha", "mid", "zeta"]
    assert [s[0] for s in state["sessions"]] == ["10", "20", "30"]
