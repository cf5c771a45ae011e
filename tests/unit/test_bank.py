"""The bank workload's generator and its checker, on synthetic histories."""

from __future__ import annotations

import json
import random
from itertools import islice

import pytest

from chaos.checker import check_bank
from chaos.runner import Recorder
from chaos.verdict import Verdict
from chaos.workloads import BankWorkload, OpSpec, bank_ops, make_workload

INIT = [10, 10, 10]  # total 30


def _history(ops):
    clock = iter(range(0, 10**9, 1000))
    rec = Recorder(clock_ns=lambda: next(clock))
    for op in ops:
        rec.record(*op)
    return rec.ops


def _transfer(process, source, target, amount, outcome="ok"):
    return [("invoke", process, "transfer", [source, target, amount]), (outcome, process, "transfer", [source, target, amount])]


def _read(process, balances):
    return [("invoke", process, "read", None), ("ok", process, "read", balances)]


def test_bank_ops_golden_and_pure():
    assert list(islice(bank_ops(random.Random(42)), 6)) == [
        OpSpec("transfer", [0, 5, 3]), OpSpec("read"), OpSpec("read"), OpSpec("read"), OpSpec("transfer", [1, 4, 4]),
        OpSpec("read")]
    ops = list(islice(bank_ops(random.Random(3), accounts=4), 2000))
    assert ops == list(islice(bank_ops(random.Random(3), accounts=4), 2000))
    transfers = [op.value for op in ops if op.f == "transfer"]
    assert all(s != t and 0 <= s < 4 and 0 <= t < 4 and 1 <= a <= 5 for s, t, a in transfers)
    assert 0.2 < (len(ops) - len(transfers)) / len(ops) < 0.4  # about READ_SHARE reads


def test_a_consistent_history_is_valid_and_names_its_final_read():
    history = _history([*_transfer(0, 0, 1, 4), *_read(1, [6, 14, 10]),
                        ("invoke", 2, "transfer", [1, 2, 5]),  # unknown outcome: it may have happened
                        ("info", 2, "transfer", [1, 2, 5]),
                        *_transfer(3, 2, 0, 20, "fail"),  # refused: nothing changed
                        *_read(4, [6, 9, 15])])
    result = check_bank(history, init=INIT)
    assert result.valid is Verdict.VALID and result.reads == 2 and result.transfers == 1 and result.total == 30
    assert result.final is history[-1] and result.final_balances == (6, 9, 15)
    assert json.loads(json.dumps(result.to_dict()))["final"]["value"] == [6, 9, 15]
    assert "valid (2 full reads, 1 acknowledged transfers, total 30, final read [6, 9, 15])" in result.summary()


def test_a_read_of_a_half_applied_transfer_is_invalid_with_the_offending_op():
    # The read saw the debit of 0 -> 1 but not its credit: 4 went missing.
    history = _history([("invoke", 0, "transfer", [0, 1, 4]), *_read(1, [6, 10, 10]), ("ok", 0, "transfer", [0, 1, 4]),
                        *_read(2, [6, 14, 10])])
    result = check_bank(history, init=INIT)
    assert result.valid is Verdict.INVALID and len(result.errors) == 1
    error = result.errors[0]
    assert error["op"] is history[2] and error["problem"] == "wrong-total" and error["sum"] == 26
    assert result.to_dict()["errors"][0]["op"]["index"] == 2
    assert "wrong-total: read [6, 10, 10] sums to 26, total 30 (line 4)" in result.summary()


def test_a_negative_balance_is_invalid_even_when_the_sum_is_right():
    history = _history([*_read(0, [-2, 22, 10]), *_read(1, [10, 10, 10])])
    result = check_bank(history, init=INIT)
    assert result.valid is Verdict.INVALID and [e["problem"] for e in result.errors] == ["negative"]
    assert result.errors[0]["op"] is history[1]


def test_a_final_read_that_lost_money_is_invalid():
    history = _history([*_transfer(0, 0, 1, 4), *_read(1, [6, 14, 10]), *_read(2, [6, 14, 9])])
    result = check_bank(history, init=INIT)
    assert result.valid is Verdict.INVALID and result.final is history[-1] and result.errors[0]["op"] is history[-1]


def test_malformed_reads_are_invalid():
    history = _history([*_read(0, [10, 20]), *_read(1, [10, "10", 10]), *_read(2, [10, 10, 10])])
    assert [e["problem"] for e in check_bank(history, init=INIT).errors] == ["malformed", "malformed"]


def test_without_a_final_read_the_verdict_is_unknown():
    # The only read began before the last transfer: nothing shows where the money ended up.
    history = _history([*_read(0, [10, 10, 10]), *_transfer(1, 0, 1, 1),
                        ("invoke", 2, "read", None), ("info", 2, "read", None)])
    result = check_bank(history, init=INIT)
    assert result.valid is Verdict.UNKNOWN and result.final is None and "no final read" in result.summary()


def test_nemesis_ops_are_ignored():
    history = _history([("invoke", "nemesis", "start", None), ("info", "nemesis", "kill", ["n1"]),
                        *_read(0, [10, 10, 10])])
    assert check_bank(history, init=INIT).valid is Verdict.VALID


def test_the_workload_states_its_init_and_checks_with_it():
    bank = make_workload("bank", accounts=3, balance=7)
    assert isinstance(bank, BankWorkload)
    assert bank.header() == {"workload": "bank", "model": None, "init": [7, 7, 7]}
    assert bank.describe()["accounts"] == 3 and bank.final_ops([]) == [OpSpec("read")]
    checks = bank.check(_history([*_transfer(0, 0, 1, 7), *_read(1, [0, 14, 7])]))
    assert checks["bank"].valid is Verdict.VALID and checks["stats"].valid is Verdict.VALID
    assert bank.check(_history([*_read(1, [10, 10, 10])]))["bank"].valid is Verdict.INVALID  # 30, not 21
    for bad in ({"accounts": 1}, {"balance": -1}, {"read_consistency": "stale"}):
        with pytest.raises(ValueError):
            make_workload("bank", **bad)
