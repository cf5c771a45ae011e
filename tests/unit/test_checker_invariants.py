"""Invariant checkers: counter bounds, lock safety, set outcomes, stats, latency and rate."""

from __future__ import annotations

from typing import Any

from chaos.checker import check_counter, check_lock, check_set, latency_series, quantiles, rate_series, stats
from chaos.history import Op
from chaos.verdict import Verdict


def ops(*events: tuple[Any, ...]) -> list[Op]:
    """Build a history from (type, process, f, value[, time]) tuples, in real-time order."""
    return [Op(index=i, type=e[0], process=e[1], f=e[2], value=e[3], time=e[4] if len(e) > 4 else None)
            for i, e in enumerate(events)]


def test_counter_reads_within_bounds() -> None:
    history = ops(("invoke", 0, "add", 2), ("ok", 0, "add", 2),
                  ("invoke", 1, "add", 3), ("invoke", 2, "read", None), ("ok", 2, "read", 5),  # pending add counts
                  ("invoke", 2, "read", None), ("ok", 2, "read", 2))
    result = check_counter(history)
    assert result.valid is Verdict.VALID and result.reads == 2


def test_counter_read_below_acknowledged_or_above_attempted() -> None:
    history = ops(("invoke", 0, "add", 2), ("ok", 0, "add", 2), ("invoke", 2, "read", None), ("ok", 2, "read", 1),
                  ("invoke", 1, "add", 3), ("fail", 1, "add", 3), ("invoke", 2, "read", None), ("ok", 2, "read", 5))
    result = check_counter(history)
    assert result.valid is Verdict.INVALID
    assert [(e["value"], e["lower"], e["upper"]) for e in result.errors] == [(1, 2, 2), (5, 2, 2)]


def test_lock_overlapping_holds_are_caught() -> None:
    history = ops(("invoke", 0, "acquire", None), ("ok", 0, "acquire", 1),
                  ("invoke", 1, "acquire", None), ("ok", 1, "acquire", 2),
                  ("invoke", 0, "release", None), ("ok", 0, "release", None))
    result = check_lock(history)
    assert result.valid is Verdict.INVALID and len(result.overlaps) == 1 and not result.token_errors


def test_lock_handover_is_fine_and_tokens_must_increase() -> None:
    good = ops(("invoke", 0, "acquire", None), ("ok", 0, "acquire", 1), ("invoke", 0, "release", None),
               ("invoke", 1, "acquire", None), ("ok", 0, "release", None), ("ok", 1, "acquire", 2))
    assert check_lock(good).valid is Verdict.VALID
    stale = ops(("invoke", 0, "acquire", None), ("ok", 0, "acquire", 5), ("invoke", 0, "release", None),
                ("ok", 0, "release", None), ("invoke", 1, "acquire", None), ("ok", 1, "acquire", {"token": 5}))
    result = check_lock(stale)
    assert result.valid is Verdict.INVALID and not result.overlaps and result.token_errors[0]["token"] == 5


def test_set_lost_unexpected_never_read_and_recovered() -> None:
    history = ops(("invoke", 0, "add", 1), ("ok", 0, "add", 1),
                  ("invoke", 0, "add", 2), ("ok", 0, "add", 2),
                  ("invoke", 1, "add", 3),  # crashed
                  ("invoke", 2, "read", None), ("ok", 2, "read", [1, 3, 9]),
                  ("invoke", 0, "add", 4), ("ok", 0, "add", 4))
    result = check_set(history)
    assert result.valid is Verdict.INVALID
    assert result.lost == (2,) and result.unexpected == (9,) and result.never_read == (4,) and result.recovered == (3,)
    clean = check_set(history[:4] + ops(("invoke", 2, "read", None), ("ok", 2, "read", [1, 2])))
    assert clean.valid is Verdict.VALID and clean.lost == () and clean.acknowledged == 2


def test_stats_counts_and_flags_an_f_that_never_succeeds() -> None:
    history = ops(("invoke", 0, "write", 1), ("ok", 0, "write", 1), ("invoke", 1, "read", None), ("fail", 1, "read", None),
                  ("invoke", 2, "read", None), ("invoke", "nemesis", "kill", None))
    result = stats(history)
    assert result.by_f == {"write": {"ok": 1, "fail": 0, "info": 0}, "read": {"ok": 0, "fail": 1, "info": 1}}
    assert result.valid is Verdict.INVALID and result.total == {"ok": 1, "fail": 1, "info": 1}


def test_latency_and_rate_series() -> None:
    history = ops(("invoke", 0, "write", 1, 0), ("ok", 0, "write", 1, 3_000_000),
                  ("invoke", 0, "read", None, 1_500_000_000), ("fail", 0, "read", None, 1_600_000_000))
    assert latency_series(history) == [{"time": 0, "latency": 3_000_000, "f": "write", "type": "ok"},
                                       {"time": 1_500_000_000, "latency": 100_000_000, "f": "read", "type": "fail"}]
    assert rate_series(history) == [{"time": 0, "f": "write", "type": "ok", "rate": 1.0},
                                    {"time": 1_000_000_000, "f": "read", "type": "fail", "rate": 1.0}]
    assert quantiles([5, 1, 3, 2, 4], (0.5, 1.0)) == {0.5: 3, 1.0: 5}
