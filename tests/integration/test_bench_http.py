"""A short run of the HTTP benchmark (skipped by default: pytest -m bench)."""

from __future__ import annotations

import pytest

from consensus.bench_http import format_report, run_bench

pytestmark = [pytest.mark.bench, pytest.mark.timeout(300)]


async def test_bench_measures_rates_latencies_and_failover():
    report = await run_bench(nodes=3, concurrencies=(1, 8), duration=1.0, failover_runs=1)
    assert [r.concurrency for r in report.load] == [1, 8]
    assert all(r.rate > 0 and r.p50_ms <= r.p99_ms for r in report.load)
    assert len(report.failover_s) == 1 and 0 < report.failover_s[0] < 30
    assert "OPS/S" in format_report(report)
