"""The counter state machine against a trivial model (Hypothesis stateful), plus edge cases."""

from __future__ import annotations

import hypothesis.strategies as st
import pytest
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from apps.counter.machine import INT64_MAX, INT64_MIN, CounterMachine
from consensus.errors import InvalidRequest, Rejected
from consensus.machine import ApplyContext

NAMES = st.sampled_from(["a", "b", "c.d", "x_y-z~1"])
INT64 = st.integers(INT64_MIN, INT64_MAX)
SMALL = st.integers(-5, 5) | INT64


def ctx(seq: int) -> ApplyContext:
    return ApplyContext(index=seq, term=1, time_ns=seq, seq=seq)


class CounterModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.machine = CounterMachine()
        self.model: dict[str, int] = {}
        self.seq = 0

    def apply(self, command):
        self.seq += 1
        return self.machine.apply(command, ctx(self.seq))

    @rule(name=NAMES, by=SMALL)
    def incr(self, name, by):
        current = self.model.get(name, 0)
        if INT64_MIN <= current + by <= INT64_MAX:
            assert self.apply({"op": "incr", "key": name, "by": by}) == {"name": name, "value": current + by}
            self.model[name] = current + by
        else:
            with pytest.raises(Rejected) as info:
                self.apply({"op": "incr", "key": name, "by": by})
            assert info.value.detail == {"name": name, "value": current}

    @rule(name=NAMES, value=SMALL)
    def set(self, name, value):
        assert self.apply({"op": "set", "key": name, "value": value}) == {"name": name, "value": value}
        self.model[name] = value

    @rule(name=NAMES, expect=SMALL, value=SMALL)
    def compare_and_set(self, name, expect, value):
        current = self.model.get(name, 0)
        command = {"op": "set", "key": name, "value": value, "expect": expect}
        if expect == current:
            assert self.apply(command)["value"] == value
            self.model[name] = value
        else:
            with pytest.raises(Rejected) as info:
                self.apply(command)
            assert info.value.detail == {"name": name, "value": current}

    @rule()
    def snapshot_and_restore(self):
        fresh = CounterMachine()
        fresh.restore(self.machine.snapshot())
        self.machine = fresh

    @invariant()
    def reads_match_the_model(self):
        for name in ("a", "b", "c.d", "x_y-z~1", "never"):
            assert self.machine.query({"op": "get", "key": name}) == {"name": name, "value": self.model.get(name, 0)}


TestCounterModel = CounterModel.TestCase
TestCounterModel.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)


@pytest.mark.parametrize(
    "command",
    [
        {"op": "incr", "key": "a"},
        {"op": "incr", "key": "a", "by": True},
        {"op": "incr", "key": "a", "by": 1.0},
        {"op": "incr", "key": "a", "by": 2**63},
        {"op": "incr", "key": "", "by": 1},
        {"op": "incr", "key": "a/b", "by": 1},
        {"op": "incr", "key": "x" * 129, "by": 1},
        {"op": "incr", "key": 5, "by": 1},
        {"op": "incr", "key": "a", "by": 1, "extra": 1},
        {"op": "set", "key": "a"},
        {"op": "set", "key": "a", "value": 1, "expect": None},
        {"op": "get", "key": "a"},
        {"op": "decr", "key": "a", "by": 1},
        {"key": "a"},
        [],
    ],
)
def test_bad_commands_are_invalid_and_change_nothing(command):
    machine = CounterMachine()
    with pytest.raises(InvalidRequest):
        machine.validate(command)
    with pytest.raises(InvalidRequest):
        machine.apply(command, ctx(1))
    assert machine.values == {}


def test_queries_are_checked_too():
    machine = CounterMachine()
    for query in ({"op": "get"}, {"op": "get", "key": "é"}, {"op": "incr", "key": "a", "by": 1}):
        with pytest.raises(InvalidRequest):
            machine.validate_query(query)
    assert machine.query({"op": "get", "key": "new"}) == {"name": "new", "value": 0}
