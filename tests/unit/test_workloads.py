"""Workload generators (golden), op classification, and the runner's pure schedules."""

from __future__ import annotations

import asyncio
import random
from itertools import islice

import pytest

from chaos.runner import Pacer, Recorder, nemesis_schedule, parse_concurrency
from chaos.verdict import Verdict, worst_exit
from chaos.workloads import (CounterWorkload, OpSpec, RegisterWorkload, UnknownWorkload, classify_error, counter_ops,
                             make_workload, register_ops)
from consensus.errors import Indeterminate, InvalidRequest, NotLeader, Rejected, Unavailable


def test_register_ops_golden():
    assert list(islice(register_ops(random.Random(42)), 6)) == [
        OpSpec("read", [2, None]), OpSpec("cas", [0, [2, 1]]), OpSpec("read", [0, None]),
        OpSpec("read", [2, None]), OpSpec("cas", [2, [4, 0]]), OpSpec("write", [2, 0])]


def test_counter_ops_golden():
    assert list(islice(counter_ops(random.Random(42)), 6)) == [
        OpSpec("read"), OpSpec("add", 3), OpSpec("add", 2), OpSpec("read"), OpSpec("read"), OpSpec("read")]


def test_generators_are_pure_functions_of_the_seed():
    a = list(islice(register_ops(random.Random(9), keys=4), 500))
    b = list(islice(register_ops(random.Random(9), keys=4), 500))
    assert a == b
    assert a != list(islice(register_ops(random.Random(10), keys=4), 500))


def test_register_keys_retire_after_ops_per_key():
    keys = [op.value[0] for op in islice(register_ops(random.Random(1), keys=1, ops_per_key=2), 7)]
    assert keys == [0, 0, 1, 1, 2, 2, 3]
    many = list(islice(register_ops(random.Random(1), keys=3, ops_per_key=50), 3000))
    counts: dict[int, int] = {}
    for op in many:
        counts[op.value[0]] = counts.get(op.value[0], 0) + 1
    assert max(counts.values()) <= 50 and len(counts) >= 60


@pytest.mark.parametrize("exc, kind", [
    (Rejected("value mismatch", detail={"value": 3}), "fail"),
    (NotLeader("x"), "fail"),
    (Unavailable("no quorum"), "fail"),
    (InvalidRequest("bad"), "fail"),
    (Indeterminate("maybe"), "info"),
    (asyncio.TimeoutError(), "info"),
    (ConnectionResetError("dropped"), "info"),
    (RuntimeError("surprise"), "info"),
])
def test_only_definite_errors_are_fail(exc, kind):
    outcome = classify_error(exc)
    assert outcome.type == kind and outcome.value is None and outcome.extra["error"]


def _history(ops):
    clock = iter(range(0, 10**9, 1000))
    rec = Recorder(clock_ns=lambda: next(clock))
    for op in ops:
        rec.record(*op)
    return rec.ops


def test_register_check_finds_a_stale_read():
    good = _history([("invoke", 0, "write", [1, 3]), ("ok", 0, "write", [1, 3]),
                     ("invoke", 1, "read", [1, None]), ("ok", 1, "read", [1, 3])])
    bad = _history([("invoke", 0, "write", [1, 3]), ("ok", 0, "write", [1, 3]),
                    ("invoke", 1, "read", [1, None]), ("ok", 1, "read", [1, 0])])
    assert RegisterWorkload().check(good)["linear"].valid is Verdict.VALID
    result = RegisterWorkload().check(bad)["linear"]
    assert result.valid is Verdict.INVALID and result.to_dict()["failing_key"] == 1
    assert "cannot linearize on key 1" in result.summary() and "(line 4-5)" in result.summary()  # after the header line


def test_register_final_reads_cover_every_key():
    history = _history([("invoke", 0, "write", [4, 1]), ("ok", 0, "write", [4, 1]), ("invoke", 1, "read", [2, None]),
                        ("invoke", "nemesis", "start", None)])
    assert RegisterWorkload().final_ops(history) == [OpSpec("read", [2, None]), OpSpec("read", [4, None])]


def test_counter_check_bounds():
    ok = _history([("invoke", 0, "add", 2), ("ok", 0, "add", 2), ("invoke", 1, "read", None), ("ok", 1, "read", 2)])
    bad = _history([("invoke", 0, "add", 2), ("ok", 0, "add", 2), ("invoke", 1, "read", None), ("ok", 1, "read", 5)])
    assert CounterWorkload().check(ok)["counter"].valid is Verdict.VALID
    result = CounterWorkload().check(bad)["counter"]
    assert result.valid is Verdict.INVALID and "read 5 outside [2, 2] (line 5)" in result.summary()


@pytest.mark.parametrize("name", ["ledger", "nope"])
def test_unavailable_workloads_are_refused_in_one_line(name):
    with pytest.raises(UnknownWorkload) as info:
        make_workload(name)
    assert "\n" not in str(info.value) and name in str(info.value) and "register" in str(info.value)


@pytest.mark.parametrize("text, nodes, want", [("2n", 3, 6), ("n", 5, 5), ("3n", 3, 9), ("4", 3, 4), (7, 3, 7)])
def test_parse_concurrency(text, nodes, want):
    assert parse_concurrency(text, nodes) == want


@pytest.mark.parametrize("text", ["0", "0n", "x", "2m", "-1", ""])
def test_parse_concurrency_rejects(text):
    with pytest.raises(ValueError):
        parse_concurrency(text, 3)


def test_nemesis_schedule_golden_and_shape():
    assert nemesis_schedule(random.Random(7), 60) == [(6.619, 12.373), (20.628, 25.99), (33.67, 40.498), (45.788, 53.325)]
    for seed in range(50):
        for limit in (8, 20, 60, 300):
            spans = nemesis_schedule(random.Random(seed), limit)
            assert spans, (seed, limit)
            last = 0.0
            for start, stop in spans:
                assert last < start < stop <= limit
                last = stop


def test_pacer_spreads_ops_at_the_rate():
    pacer = Pacer(random.Random(3), rate=50)
    slots = [pacer.next_slot(0.0) for _ in range(5000)]
    assert slots == sorted(slots)
    assert 5000 / slots[-1] == pytest.approx(50, rel=0.05)
    assert pacer.next_slot(1000.0) == 1000.0  # a late caller is not owed a burst


def test_verdicts_fold_like_jepsen():
    V, I, U = Verdict.VALID, Verdict.INVALID, Verdict.UNKNOWN
    assert Verdict.merge([V, V]) is V and Verdict.merge([V, U]) is U and Verdict.merge([U, I, V]) is I
    assert Verdict.merge([]) is V
    assert [v.exit_code for v in (V, I, U)] == [0, 1, 2] and [v.json() for v in (V, I, U)] == [True, False, "unknown"]
    assert [Verdict.from_json(x) for x in (True, False, "unknown", None, "valid")] == [V, I, U, U, V]
    with pytest.raises(TypeError):
        bool(U)  # unknown is neither true nor false: `if verdict:` is a bug
    assert worst_exit([0, 2, 1]) == 1 and worst_exit([1, 255, 0]) == 255 and worst_exit([0, 2]) == 2
    assert worst_exit([]) == 0


def test_read_consistency_is_checked():
    assert RegisterWorkload(read_consistency="stale").describe()["read_consistency"] == "stale"
    with pytest.raises(ValueError):
        CounterWorkload(read_consistency="eventual")


def test_workloads_state_their_model_and_initial_value():
    assert RegisterWorkload().header() == {"workload": "register", "model": "kv", "init": None}
    assert make_workload("kv").header() == {"workload": "kv", "model": "kv", "init": None}
    assert make_workload("set").header() == {"workload": "set", "model": "kv-set", "init": None}
    assert make_workload("lock").header() == {"workload": "lock", "model": "mutex", "init": False}
    assert CounterWorkload().header() == {"workload": "counter", "model": "counter", "init": 0}


def test_test_count_repeats_with_successive_seeds_and_exits_with_the_worst(monkeypatch):
    """``--test-count``'s loop (the runner itself is stood in for: each run's verdict is scripted)."""
    from chaos import run_cli
    from chaos.cli import build_parser
    from chaos.runner import RunResults

    seen = []

    class Done:
        def __init__(self, valid):
            self.valid, self.run_dir = valid, None
            self.results = RunResults("t", "counter", "none", None, {}, {})

    verdicts = iter([Verdict.VALID, Verdict.INVALID, Verdict.UNKNOWN])
    monkeypatch.setattr(run_cli, "run_test", lambda config, progress=None: seen.append(config.seed) or Done(next(verdicts)))
    args = build_parser().parse_args(["test", "--workload", "counter", "--test-count", "3", "--seed", "40"])
    assert run_cli.run_one(args) == 1  # invalid is worse than unknown
    assert seen == [40, 41, 42]
