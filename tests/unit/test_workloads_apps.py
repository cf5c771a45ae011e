"""The kv, set and lock workloads' pure parts: generators (golden), the lock process's steps, and
their checkers on synthetic histories with known verdicts."""

from __future__ import annotations

import random
from itertools import count, islice

from chaos.checker import check_linearizable, check_lock, check_set, make_model
from chaos.runner import Recorder
from chaos.verdict import Verdict
from chaos.workloads import (KvWorkload, LockProcess, LockWorkload, OpSpec, SetWorkload, kv_ops, lock_step,
                             make_workload, set_ops)


def history(*ops):
    clock = iter(range(0, 10**9, 1000))
    rec = Recorder(clock_ns=lambda: next(clock))
    for op in ops:
        rec.record(*op[:4], **(op[4] if len(op) > 4 else {}))
    return rec.ops


# ---------------------------------------------------------------- generators


def test_kv_ops_golden_and_every_op_comes_up():
    assert list(islice(kv_ops(random.Random(42)), 5)) == [
        OpSpec("read", [2, None]), OpSpec("read", [2, None]), OpSpec("read", [0, None]),
        OpSpec("cas", [0, [4, 0]]), OpSpec("write", [2, 0])]
    assert {op.f for op in islice(kv_ops(random.Random(1)), 200)} == {"read", "write", "cas", "delete"}


def test_set_ops_add_unique_elements_and_retire_sets():
    ops = list(islice(set_ops(random.Random(3), keys=2, adds_per_key=10), 400))
    adds = [op.value for op in ops if op.f == "add"]
    assert [x for _, x in adds] == list(range(len(adds)))  # unique, in order
    per_set: dict[int, int] = {}
    for k, _ in adds:
        per_set[k] = per_set.get(k, 0) + 1
    assert max(per_set.values()) <= 10 and len(per_set) >= 30
    assert {op.f for op in ops} == {"add", "read"} and all(op.value[1] is None for op in ops if op.f == "read")
    assert ops == list(islice(set_ops(random.Random(3), keys=2, adds_per_key=10), 400))


def test_lock_process_cycles_acquire_write_release():
    state, values = LockProcess(), count()
    assert lock_step(state, values) == OpSpec("acquire")
    state.token = 7
    assert lock_step(state, values) == OpSpec("write", [7, 0])
    state.writes = 1
    assert lock_step(state, values) == OpSpec("release", 7)


def test_set_reads_fit_one_page():
    import pytest

    with pytest.raises(ValueError, match="one page"):
        SetWorkload(adds_per_key=1000)


# ---------------------------------------------------------------- kv


def test_kv_model_deletes_and_per_key_cas():
    good = history(("invoke", 0, "write", [1, 3]), ("ok", 0, "write", [1, 3]),
                   ("invoke", 0, "delete", [1, None]), ("ok", 0, "delete", [1, None]),
                   ("invoke", 1, "read", [1, None]), ("ok", 1, "read", [1, None]),
                   ("invoke", 1, "cas", [2, [None, 4]]), ("fail", 1, "cas", [2, [None, 4]]))
    assert KvWorkload().check(good)["linear"].valid is Verdict.VALID
    resurrected = history(("invoke", 0, "write", [1, 3]), ("ok", 0, "write", [1, 3]),
                          ("invoke", 0, "delete", [1, None]), ("ok", 0, "delete", [1, None]),
                          ("invoke", 1, "read", [1, None]), ("ok", 1, "read", [1, 3]))
    assert KvWorkload().check(resurrected)["linear"].valid is Verdict.INVALID


# ---------------------------------------------------------------- set


def test_keyed_set_lost_unexpected_never_read():
    h = history(("invoke", 0, "add", [0, 1]), ("ok", 0, "add", [0, 1]),
                ("invoke", 1, "add", [1, 2]), ("ok", 1, "add", [1, 2]),
                ("invoke", 2, "add", [1, 3]), ("ok", 2, "add", [1, 3]),
                ("invoke", 0, "read", [0, None]), ("ok", 0, "read", [0, []]),  # element 1 of set 0: lost
                ("invoke", 1, "read", [1, None]), ("ok", 1, "read", [1, [2, 3, 9]]),  # 9 never added
                ("invoke", 2, "add", [1, 4]), ("ok", 2, "add", [1, 4]))  # acknowledged after every read
    result = check_set(h, keyed=True)
    assert result.valid is Verdict.INVALID
    assert result.lost == ((0, 1),) and result.unexpected == ((1, 9),) and result.never_read == ((1, 4),)
    assert result.attempted == 4 and result.acknowledged == 4
    assert SetWorkload().check(h)["set"].valid is Verdict.INVALID


def test_set_with_a_crashed_add_seen_later_is_valid_and_linearizable():
    h = history(("invoke", 0, "add", [0, 1]), ("ok", 0, "add", [0, 1]),
                ("invoke", 1, "add", [0, 2]), ("info", 1, "add", [0, 2]),  # unknown, then seen: recovered
                ("invoke", 3, "add", [0, 5]), ("info", 3, "add", [0, 5]),  # unknown, never seen: not lost
                ("invoke", 2, "read", [0, None]), ("ok", 2, "read", [0, [1, 2]]))
    checks = SetWorkload().check(h)
    assert checks["set"].valid is Verdict.VALID and checks["set"].recovered == ((0, 2),)
    assert checks["linear"].valid is Verdict.VALID


def test_a_stale_set_read_is_not_linearizable():
    h = history(("invoke", 0, "add", [0, 1]), ("ok", 0, "add", [0, 1]),
                ("invoke", 1, "read", [0, None]), ("ok", 1, "read", [0, []]),  # began after the ack: stale
                ("invoke", 1, "read", [0, None]), ("ok", 1, "read", [0, [1]]))
    checks = SetWorkload().check(h)
    assert checks["set"].valid is Verdict.VALID and checks["set"].stale == ((0, 1),)
    assert checks["linear"].valid is Verdict.INVALID
    assert check_linearizable(h, make_model("kv-set")).valid is Verdict.INVALID


# ---------------------------------------------------------------- lock


def test_a_grant_inside_another_certain_hold_is_caught():
    h = history(("invoke", 0, "acquire", None), ("ok", 0, "acquire", {"token": 1}),
                ("invoke", 1, "acquire", None), ("ok", 1, "acquire", {"token": 2}),  # while 0 certainly holds
                ("invoke", 0, "release", 1), ("ok", 0, "release", 1))
    result = check_lock(h)
    assert result.valid is Verdict.INVALID and len(result.overlaps) == 1 and result.definite_holds == 1


def test_a_lost_lease_is_not_a_certain_hold():
    # Process 0's lease ran out (its release finds the lock not held): process 1's grant is fine.
    h = history(("invoke", 0, "acquire", None), ("ok", 0, "acquire", {"token": 1}),
                ("invoke", 1, "acquire", None), ("ok", 1, "acquire", {"token": 2}),
                ("invoke", 0, "release", 1), ("fail", 0, "release", 1, {"error": "lock_not_held"}),
                ("invoke", 1, "release", 2), ("ok", 1, "release", 2))
    result = check_lock(h)
    assert result.valid is Verdict.VALID and result.definite_holds == 1


def test_two_certain_holds_overlapping_and_token_order():
    overlapping = history(("invoke", 1, "acquire", None), ("invoke", 0, "acquire", None),
                          ("ok", 0, "acquire", {"token": 1}), ("ok", 1, "acquire", {"token": 2}),
                          ("invoke", 0, "release", 1), ("ok", 0, "release", 1),
                          ("invoke", 1, "release", 2), ("ok", 1, "release", 2))
    assert len(check_lock(overlapping).overlaps) == 1
    backwards = history(("invoke", 0, "acquire", None), ("ok", 0, "acquire", {"token": 5}),
                        ("invoke", 0, "release", 5), ("ok", 0, "release", 5),
                        ("invoke", 1, "acquire", None), ("ok", 1, "acquire", {"token": 4}))
    result = check_lock(backwards)
    assert result.valid is Verdict.INVALID and result.token_errors[0]["token"] == 4


def test_a_certain_holder_fenced_off_is_caught():
    h = history(("invoke", 0, "acquire", None), ("ok", 0, "acquire", {"token": 3}),
                ("invoke", 0, "write", [3, 0]), ("fail", 0, "write", [3, 0], {"error": "fenced"}),
                ("invoke", 0, "release", 3), ("ok", 0, "release", 3))
    result = check_lock(h)
    assert result.valid is Verdict.INVALID and result.fence_errors[0]["token"] == 3
    assert "fenced off" in result.summary()


def test_lock_workload_checks_the_mutex_model_without_the_writes():
    handover = history(("invoke", 0, "acquire", None), ("ok", 0, "acquire", {"token": 1}),
                       ("invoke", 0, "write", [1, 0]), ("ok", 0, "write", [1, 0]),
                       ("invoke", 1, "acquire", None), ("fail", 1, "acquire", None, {"error": "lock_held"}),
                       ("invoke", 0, "release", 1), ("ok", 0, "release", 1),
                       ("invoke", 1, "acquire", None), ("ok", 1, "acquire", {"token": 2}))
    checks = LockWorkload().check(handover)
    assert checks["lock"].valid is Verdict.VALID and checks["linear"].valid is Verdict.VALID
    double = history(("invoke", 0, "acquire", None), ("ok", 0, "acquire", {"token": 1}),
                     ("invoke", 1, "acquire", None), ("ok", 1, "acquire", {"token": 2}))
    assert LockWorkload().check(double)["linear"].valid is Verdict.INVALID
    assert make_workload("lock").describe()["ttl_ms"] == 10_000
