"""Each model against hand-written steps and small hand-written histories."""

from __future__ import annotations

from typing import Any

import pytest

from chaos.checker import UNKNOWN, ModelError, check_linearizable, make_model, model_names
from chaos.history import Op
from chaos.verdict import Verdict


def ops(*events: tuple[Any, ...]) -> list[Op]:
    """Build a history from (type, process, f, value) tuples, in real-time order."""
    return [Op(index=i, type=t, process=p, f=f, value=v) for i, (t, p, f, v) in enumerate(events)]


def seq(*steps: tuple[int, str, Any, Any]) -> list[Op]:
    """Build a sequential history: each (process, f, input, output) invoked then completed ok."""
    out: list[tuple[Any, ...]] = []
    for p, f, inp, outp in steps:
        out += [("invoke", p, f, inp), ("ok", p, f, outp)]
    return ops(*out)


def legal(model: Any, state: Any, f: str, inp: Any, out: Any) -> tuple[bool, Any]:
    """Return the model's step, checking that compile agrees with step."""
    ok, new = model.step(state, (f, inp), out)
    compiled = model.compiled((f, inp), out)(state)
    assert (compiled is not model_illegal()) == ok
    return ok, new


def model_illegal() -> Any:
    from chaos.checker import ILLEGAL
    return ILLEGAL


@pytest.mark.parametrize("name, init, f, inp, out, ok, new", [
    ("register", None, "read", None, None, True, None),
    ("register", None, "read", None, 1, False, None),
    ("register", 1, "write", 2, 2, True, 2),
    ("cas-register", 1, "cas", [1, 2], [1, 2], True, 2),
    ("cas-register", 1, "cas", [3, 2], [3, 2], False, 1),
    ("cas-register", 1, "cas", [3, 2], False, True, 1),  # returned false: register was not 3
    ("cas-register", 3, "cas", [3, 2], False, False, 3),
    ("cas-register", 3, "cas", [3, 2], UNKNOWN, True, 2),
    ("counter", 0, "add", 5, 5, True, 5),
    ("counter", 5, "read", None, 5, True, 5),
    ("counter", 5, "read", None, 4, False, 5),
    ("mutex", False, "acquire", None, None, True, True),
    ("mutex", True, "acquire", None, None, False, True),
    ("mutex", True, "release", None, None, True, False),
    ("mutex", False, "release", None, None, False, False),
    ("set", frozenset({1}), "add", 2, 2, True, frozenset({1, 2})),
    ("set", frozenset({1, 2}), "read", None, [2, 1], True, frozenset({1, 2})),
    ("set", frozenset({1}), "read", None, [1, 2], False, frozenset({1})),
    ("queue", (1,), "enqueue", 2, 2, True, (1, 2)),
    ("queue", (1, 2), "dequeue", None, 1, True, (2,)),
    ("queue", (1, 2), "dequeue", None, 2, False, (1, 2)),
    ("queue", (), "dequeue", None, None, True, ()),
    ("kv", 1, "cas", ["k", [1, 2]], ["k", [1, 2]], True, 2),
    ("kv", None, "cas", ["k", [1, 2]], ["k", [1, 2]], False, None),
    ("kv", 1, "read", ["k", None], ["k", 1], True, 1),
    ("kv-append", "ab", "append", ["k", "c"], ["k", "c"], True, "abc"),
    ("kv-append", "ab", "get", ["k", None], ["k", "ab"], True, "ab"),
    ("kv-append", "ab", "get", ["k", None], ["k", "a"], False, "ab"),
    ("kv-append", "ab", "put", ["k", "z"], ["k", "z"], True, "z"),
])
def test_step(name: str, init: Any, f: str, inp: Any, out: Any, ok: bool, new: Any) -> None:
    model = make_model(name)
    got_ok, got_new = legal(model, init, f, inp, out)
    assert got_ok is ok
    if ok:
        assert got_new == new


def test_multi_register_txn_reads_and_writes() -> None:
    model = make_model("multi-register", {"x": 0, "y": 0})
    state = model.init(None)
    ok, state = model.step(state, ("txn", [["write", "x", 1]]), [["write", "x", 1]])
    assert ok and dict(state) == {"x": 1, "y": 0}
    assert model.step(state, ("txn", [["read", "x", None], ["read", "y", None]]), [["read", "x", 1], ["read", "y", 0]])[0]
    assert not model.step(state, ("txn", [["read", "x", None]]), [["read", "x", 0]])[0]
    assert model.step(state, ("txn", [["read", "x", None]]), [["read", "x", None]])[0]  # nil matches anything


def test_unknown_model_and_bad_op_raise() -> None:
    with pytest.raises(ModelError):
        make_model("paxos")
    with pytest.raises(ModelError):
        make_model("register").compiled(("cas", [1, 2]), True)
    assert set(model_names()) == {"register", "cas-register", "multi-register", "kv", "kv-append", "counter",
                                  "mutex", "set", "kv-set", "queue"}


def test_states_are_hashable_for_every_model() -> None:
    for name in model_names():
        hash(make_model(name).init("k"))


# Small whole histories: verdicts a bug in the search or a model would flip.

def test_register_stale_read_after_write_is_illegal() -> None:
    history = seq((0, "write", 1, 1), (1, "write", 2, 2), (0, "read", None, 1))
    result = check_linearizable(history, make_model("register", 0))
    assert result.valid is Verdict.INVALID and result.failing.f == "read" and result.failing.output == 1


def test_concurrent_reads_may_see_either_value() -> None:
    history = ops(("invoke", 0, "write", 1), ("invoke", 1, "read", None), ("ok", 1, "read", 0),
                  ("invoke", 2, "read", None), ("ok", 2, "read", 1), ("ok", 0, "write", 1))
    assert check_linearizable(history, make_model("register", 0)).valid is Verdict.VALID
    # ...but not new then old once the write completed before the second read began.
    history = ops(("invoke", 0, "write", 1), ("invoke", 1, "read", None), ("ok", 0, "write", 1),
                  ("ok", 1, "read", 1), ("invoke", 2, "read", None), ("ok", 2, "read", 0))
    assert check_linearizable(history, make_model("register", 0)).valid is Verdict.INVALID


def test_crashed_write_may_take_effect_late_or_never() -> None:
    late = ops(("invoke", 0, "write", 1), ("info", 0, "write", None), ("invoke", 1, "read", None),
               ("ok", 1, "read", 0), ("invoke", 1, "read", None), ("ok", 1, "read", 1))
    assert check_linearizable(late, make_model("register", 0)).valid is Verdict.VALID
    never = ops(("invoke", 0, "write", 1), ("invoke", 1, "read", None), ("ok", 1, "read", 0))
    assert check_linearizable(never, make_model("register", 0)).valid is Verdict.VALID
    back = late + ops(("invoke", 2, "read", None), ("ok", 2, "read", 0))
    back = [Op(index=i, type=o.type, process=o.process, f=o.f, value=o.value) for i, o in enumerate(back)]
    assert check_linearizable(back, make_model("register", 0)).valid is Verdict.INVALID


def test_failed_op_did_not_happen() -> None:
    history = ops(("invoke", 0, "write", 1), ("fail", 0, "write", 1), ("invoke", 1, "read", None), ("ok", 1, "read", 1))
    assert check_linearizable(history, make_model("register", 0)).valid is Verdict.INVALID


def test_cas_that_returned_false_observes_the_register() -> None:
    # The register is 1: a cas from 2 may return false, a cas from 1 may not.
    base = seq((0, "write", 1, 1))
    fine = base + ops(("invoke", 1, "cas", [2, 3]), ("ok", 1, "cas", False))[0:2]
    fine = [Op(index=i, type=o.type, process=o.process, f=o.f, value=o.value) for i, o in enumerate(fine)]
    assert check_linearizable(fine, make_model("cas-register")).valid is Verdict.VALID
    bad = [Op(index=i, type=o.type, process=o.process, f=o.f, value=o.value if o.f != "cas" or o.type == "ok" else [1, 3])
           for i, o in enumerate(fine)]
    assert check_linearizable(bad, make_model("cas-register")).valid is Verdict.INVALID


def test_pruning_keeps_crashed_write_needed_by_a_failed_cas() -> None:
    # Only the crashed write of 5 (never read) can make the cas from 0 return false.
    history = ops(("invoke", 0, "write", 5), ("invoke", 1, "cas", [0, 1]), ("ok", 1, "cas", False))
    result = check_linearizable(history, make_model("cas-register", 0))
    assert result.valid is Verdict.VALID and not result.partitions[0].pruned


def test_pruning_drops_unobserved_crashed_writes_and_reads() -> None:
    history = ops(("invoke", 0, "write", 5), ("invoke", 2, "read", None), ("invoke", 1, "read", None), ("ok", 1, "read", 0))
    result = check_linearizable(history, make_model("cas-register", 0))
    assert result.valid is Verdict.VALID and len(result.partitions[0].pruned) == 2


def test_kv_partitions_by_key_and_reports_the_bad_key() -> None:
    history = seq((0, "write", ["a", 1], ["a", 1]), (1, "write", ["b", 2], ["b", 2]),
                  (0, "read", ["a", None], ["a", 1]), (1, "read", ["b", None], ["b", 3]))
    result = check_linearizable(history, make_model("kv"))
    assert result.valid is Verdict.INVALID and result.failing_key == "b" and len(result.partitions) == 2


def test_kv_init_per_key() -> None:
    history = seq((0, "read", ["a", None], ["a", 7]), (0, "read", ["b", None], ["b", None]))
    assert check_linearizable(history, make_model("kv", {"a": 7})).valid is Verdict.VALID
    assert check_linearizable(history, make_model("kv")).valid is Verdict.INVALID


def test_mutex_double_acquire_is_illegal() -> None:
    history = seq((0, "acquire", None, None), (1, "acquire", None, None))
    assert check_linearizable(history, make_model("mutex")).valid is Verdict.INVALID
    ok = seq((0, "acquire", None, None), (0, "release", None, None), (1, "acquire", None, None))
    assert check_linearizable(ok, make_model("mutex")).valid is Verdict.VALID


def test_a_lock_whose_holder_crashed_is_freed_when_its_lease_may_have_expired() -> None:
    # Process 0 got the lock, then its fenced write ended info and it never issued again (the
    # harness retires a process after an info op): its session expires and the service frees
    # the lock, so a later grant to 1 is no double holder.
    crashed = ops(("invoke", 0, "acquire", None), ("ok", 0, "acquire", None), ("invoke", 0, "write", 1),
                  ("info", 0, "write", None), ("invoke", 1, "acquire", None), ("ok", 1, "acquire", None))
    assert check_linearizable(crashed, make_model("mutex")).valid is Verdict.VALID
    # A holder that kept working (its ops completed) still holds the lock: two holders.
    alive = ops(("invoke", 0, "acquire", None), ("ok", 0, "acquire", None), ("invoke", 0, "write", 1),
                ("ok", 0, "write", 1), ("invoke", 1, "acquire", None), ("ok", 1, "acquire", None))
    assert check_linearizable(alive, make_model("mutex")).valid is Verdict.INVALID
    # A holder that released is checked as always: 1's grant before 0's release is illegal.
    early = ops(("invoke", 0, "acquire", None), ("ok", 0, "acquire", None), ("invoke", 1, "acquire", None),
                ("ok", 1, "acquire", None), ("invoke", 0, "release", None), ("info", 0, "release", None))
    assert check_linearizable(early, make_model("mutex")).valid is Verdict.INVALID


def test_queue_fifo_and_set_histories() -> None:
    fifo = seq((0, "enqueue", 1, 1), (0, "enqueue", 2, 2), (1, "dequeue", None, 2))
    assert check_linearizable(fifo, make_model("queue")).valid is Verdict.INVALID
    both = ops(("invoke", 0, "enqueue", 1), ("invoke", 1, "enqueue", 2), ("ok", 0, "enqueue", 1),
               ("ok", 1, "enqueue", 2), ("invoke", 2, "dequeue", None), ("ok", 2, "dequeue", 2))
    assert check_linearizable(both, make_model("queue")).valid is Verdict.VALID
    sets = seq((0, "add", 1, 1), (1, "read", None, [1]), (1, "read", None, []))
    assert check_linearizable(sets, make_model("set")).valid is Verdict.INVALID


def test_counter_history() -> None:
    history = ops(("invoke", 0, "add", 1), ("invoke", 1, "read", None), ("ok", 1, "read", 1), ("ok", 0, "add", 1),
                  ("invoke", 1, "read", None), ("ok", 1, "read", 0))
    assert check_linearizable(history, make_model("counter")).valid is Verdict.INVALID
    assert check_linearizable(history[:4], make_model("counter")).valid is Verdict.VALID


def test_timeout_gives_unknown_and_more_time_gives_the_verdict() -> None:
    from pathlib import Path

    from chaos.history import load

    path = Path(__file__).resolve().parents[1] / "data" / "histories" / "porcupine" / "jepsen" / "etcd_007.log"
    history = load(path).ops  # valid, but its search caches ~70,000 states
    result = check_linearizable(history, make_model("cas-register"), timeout=0.0)
    assert result.valid is Verdict.UNKNOWN and result.failing is None
    assert 0 < result.explored < 70_000
    assert len(result.partitions[0].linearization) > 40  # the longest prefix so far is kept


def test_crashed_ops_with_different_inputs_are_not_interchangeable() -> None:
    # Both crashed writes took effect, the later-invoked one first: 2 then 1.
    history = ops(("invoke", 0, "write", 1), ("invoke", 1, "write", 2), ("invoke", 2, "read", None),
                  ("ok", 2, "read", 2), ("invoke", 2, "read", None), ("ok", 2, "read", 1))
    result = check_linearizable(history, make_model("register", 0))
    assert result.valid is Verdict.VALID
    assert [c.input for c in result.partitions[0].calls if c.id in result.partitions[0].linearization[:1]] == [2]


def test_interchangeable_crashed_ops_still_allow_any_count() -> None:
    # Three crashed writes of 1; reads see 1, then 0 written, then 1 again: needs two of them.
    history = ops(("invoke", 0, "write", 1), ("invoke", 1, "write", 1), ("invoke", 2, "write", 1),
                  ("invoke", 3, "read", None), ("ok", 3, "read", 1), ("invoke", 3, "write", 0), ("ok", 3, "write", 0),
                  ("invoke", 3, "read", None), ("ok", 3, "read", 1), ("invoke", 3, "write", 0), ("ok", 3, "write", 0),
                  ("invoke", 3, "read", None), ("ok", 3, "read", 1))
    assert check_linearizable(history, make_model("register", 0)).valid is Verdict.VALID
    four = history + ops(("invoke", 3, "write", 0), ("ok", 3, "write", 0), ("invoke", 3, "read", None), ("ok", 3, "read", 1))
    four = [Op(index=i, type=o.type, process=o.process, f=o.f, value=o.value) for i, o in enumerate(four)]
    assert check_linearizable(four, make_model("register", 0)).valid is Verdict.INVALID


def test_read_only_declarations_match_the_steps() -> None:
    # read_only lets the search skip alternatives, so it must never claim a state change away.
    cases = [("register", ("read", None), 1, True), ("register", ("write", 1), 1, False),
             ("cas-register", ("cas", [1, 2]), False, True), ("cas-register", ("cas", [1, 2]), [1, 2], False),
             ("kv-append", ("get", ["k", None]), ["k", "a"], True), ("kv-append", ("append", ["k", "a"]), ["k", "a"], False),
             ("multi-register", ("txn", [["read", "x", None]]), [["read", "x", 1]], True),
             ("multi-register", ("txn", [["read", "x", None], ["write", "x", 2]]), [["read", "x", 1], ["write", "x", 2]], False),
             ("queue", ("dequeue", None), None, True), ("queue", ("dequeue", None), 1, False),
             ("counter", ("read", None), 3, True), ("set", ("read", None), [1], True), ("set", ("add", 1), 1, False)]
    for name, inp, out, expected in cases:
        model = make_model(name)
        assert model.read_only is not None and model.read_only(inp, out) is expected, (name, inp)
    assert make_model("mutex").read_only is None


def test_slow_key_cannot_hide_an_illegal_key() -> None:
    from pathlib import Path

    from chaos.history import load

    path = Path(__file__).resolve().parents[1] / "data" / "histories" / "porcupine" / "jepsen" / "etcd_007.log"
    slow = []  # etcd_007 (valid, ~56,000 states) as key "a" of a kv history
    for op in load(path).ops:
        value = op.value if op.value is False or (op.type != "invoke" and op.value is None and op.f != "read") \
            else ["a", op.value]
        slow.append(Op(index=len(slow), type=op.type, process=op.process, f=op.f, value=value))
    # Key "b" has more ops than "a" (so it is not simply checked first) and is quickly illegal.
    steps = [(100, "write", ["b", n], ["b", n]) for n in range(150)] + [(100, "read", ["b", None], ["b", 2])]
    bad = seq(*steps)
    assert len(bad) // 2 > len([o for o in slow if o.type == "invoke"])
    history = [Op(index=i, type=o.type, process=o.process, f=o.f, value=o.value) for i, o in enumerate(slow + bad)]
    result = check_linearizable(history, make_model("kv"), timeout=60)
    assert result.valid is Verdict.INVALID and result.failing_key == "b"
    by_key = {p.key: p for p in result.partitions}
    assert by_key["a"].valid is Verdict.UNKNOWN and by_key["a"].explored < 10_000  # abandoned, not finished first


def test_kv_init_map_matches_int_keys_by_their_json_string() -> None:
    history = seq((0, "read", [1, None], [1, 7]))
    assert check_linearizable(history, make_model("kv", {"1": 7})).valid is Verdict.VALID
    assert check_linearizable(history, make_model("kv", {"1": 8})).valid is Verdict.INVALID


def test_kv_append_rejects_non_string_values() -> None:
    with pytest.raises(ModelError):
        make_model("kv-append").compiled(("append", ["k", None]), ["k", None])
