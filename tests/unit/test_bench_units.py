"""The bench's pure parts: the latency histogram, error classes, medians and ratios, outputs, profiles."""

from __future__ import annotations

import csv
import json
import math
import random

import pytest

from consensus.bench.histogram import LatencyHistogram
from consensus.bench.profile import summarize
from consensus.bench.results import BenchResults, EventRow, compare, format_table, median_row, write
from consensus.bench.workloads import classify


def _exact(values: list[float], q: float) -> float:
    """The smallest value with at least q of the samples at or below it."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def test_histogram_quantiles_are_within_two_percent_and_max_is_exact():
    rng = random.Random(7)
    values = [rng.lognormvariate(-6, 1.2) for _ in range(20_000)]  # around 2.5 ms, long tail
    h = LatencyHistogram()
    for v in values:
        h.record(v)
    for q in (0.5, 0.9, 0.99):
        assert h.quantile(q) == pytest.approx(_exact(values, q), rel=0.02)
    assert h.quantile(1.0) == max(values) and h.max == max(values)
    assert h.count == len(values)
    assert h.summary_ms()["mean"] == pytest.approx(sum(values) / len(values) * 1000, rel=1e-3)


def test_histogram_merge_equals_one_histogram_of_everything_and_survives_json():
    rng = random.Random(3)
    a, b, both = LatencyHistogram(), LatencyHistogram(), LatencyHistogram()
    for i in range(5000):
        v = rng.expovariate(1000)
        (a if i % 2 else b).record(v)
        both.record(v)
    a.merge(b)
    assert a.counts == both.counts and a.count == both.count and a.max == both.max
    again = LatencyHistogram.from_dict(json.loads(json.dumps(a.to_dict())))
    assert again.summary_ms() == a.summary_ms()


def test_empty_histogram_says_nothing_and_a_bad_quantile_is_refused():
    h = LatencyHistogram()
    assert h.summary_ms() == {"p50": None, "p90": None, "p99": None, "max": None, "mean": None}
    with pytest.raises(ValueError):
        h.quantile(1.5)


@pytest.mark.parametrize(
    "status, body, kind, definite",
    [
        (503, {"error": {"code": "unavailable", "definite": True}}, "503 unavailable", True),
        (504, {"error": {"code": "indeterminate", "definite": False}}, "504 indeterminate", False),
        (409, {"error": {"code": "lock_held", "definite": True}}, "409 lock_held", True),
        (500, {"error": {"code": "internal", "definite": False}}, "500 internal", False),
        (503, {"error": "etcdserver: leader changed", "code": 14}, "503 grpc-14", False),  # etcd: may have applied
        (400, {"error": "bad key", "code": 3}, "400 grpc-3", True),
        (502, None, "502", False),
    ],
)
def test_errors_keep_definite_apart_from_unknown(status, body, kind, definite):
    error = classify(status, body)
    assert (error.kind, error.definite) == (kind, definite)


def _run(rate: float, p50: float, errors: dict[str, int] | None = None) -> dict:
    return {"workload": "rw-incr", "concurrency": 32, "rate": rate, "failed": 0, "unknown": sum((errors or {}).values()),
            "errors": errors or {}, "latency_ms": {"p50": p50, "p90": p50 * 2, "p99": p50 * 3, "max": p50 * 4}}


def test_rows_are_medians_of_repeats_and_carry_the_ratio_to_their_baseline():
    row = median_row("http", "raftwork", "counter incr", "leader", 3, 16, [_run(900, 3), _run(1200, 2), _run(1000, 9, {"504 x": 2})])
    base = median_row("http", "etcd", "counter incr", "leader", 3, 16, [_run(500, 5), _run(400, 6), _run(450, 5)])
    assert row.rate == 1000 and row.latency_ms["p50"] == 3 and row.errors == {"504 x": 2} and row.unknown == 2
    compare(row, base)
    assert (row.baseline, row.ratio) == ("etcd", round(1000 / 450, 2))


def test_table_marks_client_bound_rows_and_the_outputs_hold_every_row(tmp_path):
    results = BenchResults(settings={"duration": 1})
    results.ceiling_samples = {32: [900.0, 1100.0, 1300.0]}
    row = median_row("http", "raftwork", "counter incr", "leader", 3, 16, [_run(1000, 3)])
    slow = median_row("http", "etcd", "counter incr", "leader", 3, 16, [_run(400, 3)])
    embedded = median_row("embedded", "raftwork", "propose", "-", 3, 16, [_run(5000, 1)])
    compare(row, slow)
    results.loads += [row, slow, embedded]
    results.mark_client_bound()
    assert (row.client_ceiling, embedded.client_ceiling) == (1100.0, None)
    results.events.append(EventRow("failover", "raftwork", "kill -9 leader -> first write", 3, [1.5, 0.5, 0.9]))
    results.skip("http", "kv app missing")
    table = format_table(results)
    assert "1000*" in table and "400 " in table and "2.50x" in table
    assert "median 0.900 s" in table and "skipped http: kv app missing" in table and "median of 3 samples): c=32: 1100/s" in table
    write(results, tmp_path)
    data = json.loads((tmp_path / "results.json").read_text())
    assert [r["client_bound"] for r in data["loads"]] == [True, False, False]
    assert data["events"][0]["median_s"] == 0.9
    with open(tmp_path / "loads.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["system"] for r in rows] == ["raftwork", "etcd", "raftwork"] and rows[0]["ratio"] == "2.5"
    assert (tmp_path / "table.txt").read_text().strip() == table


RAW = """\
thread (101): MainThread;<module> (consensus/__main__.py:3);run (asyncio/runners.py:190);_run_once (asyncio/base_events.py:1922);handle (aiohttp/web_protocol.py:480) 30
thread (101): MainThread;<module> (consensus/__main__.py:3);run (asyncio/runners.py:190);_run_once (asyncio/base_events.py:1922);propose (/x/consensus/node.py:300) 10
thread (102): raft-127.0.0.1:7001;_bootstrap (threading.py:1002);doTick (pysyncobj/syncobj.py:560);dumps (/v/site-packages/pysyncobj/serializer.py:80) 60
thread (102): raft-127.0.0.1:7001;_bootstrap (threading.py:1002);doTick (pysyncobj/syncobj.py:560);PollPoller.poll (/v/site-packages/pysyncobj/poller.py:9) 25
thread (101): MainThread;run (asyncio/runners.py:190);EpollSelector.select (/usr/lib/python3.11/selectors.py:468) 5
garbage line
"""


def test_profile_summary_splits_threads_and_ranks_self_and_inclusive_frames():
    summary = summarize("leader", RAW)
    assert summary.samples == 100 and summary.waiting == 30  # select and poll are waits, not work
    assert summary.threads == {"MainThread": 40, "raft-127.0.0.1:7001": 60}
    assert summary.self_time.most_common(1) == [("dumps (pysyncobj/serializer.py)", 60)]
    assert summary.inclusive["handle (aiohttp/web_protocol.py)"] == 30
    assert "run (asyncio/runners.py)" not in summary.inclusive  # on every stack: says nothing
    assert summary.packages["pysyncobj"] == 60 and summary.packages["consensus.node"] == 10
    assert summary.self_time["propose (consensus/node.py)"] == 10
    text = summary.format()
    assert "thread raft-127.0.0.1:7001:  60.0%" in text and "leader: 100 busy samples" in text
