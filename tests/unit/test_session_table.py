"""Client sessions in the dispatcher: exactly-once however late the retry, limits in the log."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from consensus import codec
from consensus.dispatch import SYSTEM, Dispatcher, encode_entry
from consensus.testing.machines import KV

SECOND = 10**9


def op(machine, cmd, key=None, session=None):
    return [machine, codec.pack(cmd), key] + ([list(session)] if session else [])


class Log:
    """Feed one dispatcher entries with increasing index and leader time."""

    def __init__(self, dispatcher=None):
        self.d = dispatcher or Dispatcher({"kv": KV()})
        self.index = 1
        self.time = 1_000 * SECOND

    def apply(self, *ops, advance=0):
        self.index += 1
        self.time += advance
        return self.d.apply(encode_entry(self.time, list(ops)), self.index, 1)

    def register(self):
        [outcome] = self.apply(op(SYSTEM, {"op": "register_client"}))
        return outcome.value


INC = {"method": "incr", "args": ["n"]}


def test_a_retry_after_ten_minutes_of_other_traffic_returns_the_first_result():
    log = Log()
    # A small plain-key table, so other traffic overflows it many times over (the old failure:
    # 100,000 keys lasted 6.5 s at 15,000 writes/s, and a retry after that applied again).
    log.apply(op(SYSTEM, {"op": "set_limits", "limits": {"idempotency_capacity": 1_000}}))
    me = log.register()
    [first] = log.apply(op("kv", INC, session=(me, 1, 1)))
    assert first.value == 1
    # Ten minutes of leader time and 20,000 keyed requests of other clients later...
    for i in range(200):
        log.apply(*(op("kv", {"method": "incr", "args": [f"o{i % 50}"]}, f"other-{i}-{j}") for j in range(100)),
                  advance=3 * SECOND)
    assert len(log.d.dedup) <= 1_000
    [retry] = log.apply(op("kv", INC, session=(me, 1, 1)))
    assert retry.value == 1 and retry.duplicate  # the first result, not a second increment
    assert log.d.machines["kv"].data["n"] == 1


def test_an_expired_session_gets_a_definite_session_expired_never_a_second_apply():
    log = Log()
    log.apply(op(SYSTEM, {"op": "set_limits", "limits": {"session_ttl": 60 * SECOND}}))
    me = log.register()
    log.apply(op("kv", INC, session=(me, 1, 1)))
    log.apply(advance=61 * SECOND)  # a time entry past the session's TTL
    [retry] = log.apply(op("kv", INC, session=(me, 1, 1)))
    assert (retry.kind, retry.code) == ("rejected", "session_expired")
    assert log.d.machines["kv"].data["n"] == 1


def test_the_least_recently_active_session_is_evicted_beyond_the_limit():
    log = Log()
    log.apply(op(SYSTEM, {"op": "set_limits", "limits": {"max_sessions": 2}}))
    a, b = log.register(), log.register()
    log.apply(op("kv", INC, session=(a, 1, 1)))  # a is now more recent than b
    c = log.register()
    [from_b] = log.apply(op("kv", INC, session=(b, 1, 1)))
    assert from_b.code == "session_expired"
    assert log.apply(op("kv", INC, session=(c, 1, 1)))[0].kind == "ok"


def test_acknowledged_outcomes_are_dropped_and_late_copies_are_not_applied():
    log = Log()
    me = log.register()
    for seq in range(1, 4):
        log.apply(op("kv", INC, session=(me, seq, seq)))
    assert log.d.sessions.pending(me) == [3]  # the client acknowledged 1 and 2
    [stray] = log.apply(op("kv", INC, session=(me, 1, 4)))  # a duplicated copy of request 1
    assert stray.code == "indeterminate" and log.d.machines["kv"].data["n"] == 3


def test_two_clients_using_the_same_key_string_do_not_collide():
    log = Log()
    a, b = log.register(), log.register()
    [x] = log.apply(op("kv", {"method": "incr", "args": ["x"]}, "req-17", (a, 1, 1)))
    [y] = log.apply(op("kv", {"method": "incr", "args": ["y"]}, "req-17", (b, 1, 1)))
    assert (x.kind, y.kind) == ("ok", "ok") and not y.duplicate
    assert log.d.machines["kv"].data == {"x": 1, "y": 1}


def test_a_number_reused_for_another_request_is_refused():
    log = Log()
    me = log.register()
    log.apply(op("kv", INC, session=(me, 1, 1)))
    [other] = log.apply(op("kv", {"method": "incr", "args": ["m"]}, session=(me, 1, 1)))
    assert other.kind == "invalid" and "different request" in other.value


def test_a_client_that_never_acknowledges_is_bounded():
    log = Log()
    log.apply(op(SYSTEM, {"op": "set_limits", "limits": {"max_pending": 3}}))
    me = log.register()
    outcomes = [log.apply(op("kv", INC, session=(me, seq, 1)))[0] for seq in range(1, 6)]
    assert [o.code for o in outcomes] == [None, None, None, "quota_exceeded", "quota_exceeded"]
    assert log.d.machines["kv"].data["n"] == 3


def test_bad_limits_are_refused_and_change_nothing():
    log = Log()
    before = log.d.sessions.limits
    for limits in ({"nope": 1}, {"session_ttl": 0}, {"max_sessions": "many"}):
        [outcome] = log.apply(op(SYSTEM, {"op": "set_limits", "limits": limits}))
        assert outcome.kind == "invalid"
    assert log.d.sessions.limits == before


def test_sessions_survive_a_snapshot():
    log = Log()
    me = log.register()
    log.apply(op("kv", INC, session=(me, 1, 1)))
    copy = Dispatcher({"kv": KV()})
    copy.restore(log.d.snapshot())
    [retry] = copy.apply(encode_entry(log.time, [op("kv", INC, session=(me, 1, 1))]), log.index + 1, 1)
    assert retry.duplicate and retry.value == 1
    assert copy.state_digest() != Dispatcher({"kv": KV()}).state_digest()


@settings(max_examples=40)
@given(st.integers(0, 2**32), st.lists(st.integers(1, 40), min_size=3, max_size=3), st.integers(2, 299), st.integers(2, 299))
def test_replicas_decide_every_request_alike_whatever_limits_the_log_sets(seed, caps, cut_a, cut_b):
    """Random limits set by the log, sessions coming and going: a replica that applied the whole
    log and replicas that restarted from a snapshot at other points end in the same state (the
    least-recently-active order of sessions survives snapshots, or eviction would differ)."""
    rng = random.Random(seed)
    entries = []
    time_ns = 1_000 * SECOND
    for i in range(300):
        time_ns += rng.choice([0, 10**6, SECOND, 30 * SECOND])
        choice = rng.random()
        if choice < 0.05:
            cmd = op(SYSTEM, {"op": "set_limits", "limits": {"max_sessions": caps[0], "max_pending": caps[1],
                                                             "idempotency_capacity": caps[2],
                                                             "session_ttl": rng.choice([5, 60, 600]) * SECOND}})
        elif choice < 0.15:
            cmd = op(SYSTEM, {"op": "register_client"})
        else:
            seq = rng.randint(1, 6)
            cmd = op("kv", {"method": "incr", "args": [rng.choice("abc")]}, rng.choice([None, "k1", "k2"]),
                     (rng.randint(1, 400), seq, rng.randint(1, seq)))
        entries.append(encode_entry(time_ns, [cmd]))

    def replay(cut):
        d = Dispatcher({"kv": KV()})
        for index, data in enumerate(entries, start=2):
            if index == cut:
                fresh = Dispatcher({"kv": KV()})
                fresh.restore(d.snapshot())
                d = fresh
            d.apply(data, index, 1)
        return d.state_digest()

    assert len({replay(None), replay(cut_a), replay(cut_b)}) == 1
