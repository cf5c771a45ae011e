"""The report: plots are PNGs drawn headless; the timeline is standalone HTML with process lanes."""

from __future__ import annotations

import re

from chaos.history import as_ops
from chaos.report import nemesis_intervals, render_timeline, write_report
from chaos.runner import Recorder


def _history():
    t = iter(range(0, 10**13, 50_000_000))
    rec = Recorder(clock_ns=lambda: next(t))
    rec.record("invoke", 0, "write", [0, 1])
    rec.record("ok", 0, "write", [0, 1], "n1")
    rec.record("invoke", "nemesis", "start", None)
    rec.record("info", "nemesis", "start", {"fault": "partition", "groups": [["n1"], ["n2", "n3"]]})
    rec.record("invoke", 1, "read", [0, None])
    rec.record("invoke", 2, "cas", [0, [1, 2]])
    rec.record("fail", 2, "cas", [0, [1, 2]], error="rejected")
    rec.record("info", 1, "read", None, error="indeterminate")
    rec.record("invoke", 3, "write", [0, 4])
    rec.record("invoke", "nemesis", "stop", None)
    rec.record("info", "nemesis", "stop", None)
    rec.record("ok", 3, "write", [0, 4], "n2")
    rec.record("invoke", 4, "read", [0, None])  # never completes
    return rec.ops


def test_nemesis_intervals_pair_start_and_stop():
    h = _history()
    assert nemesis_intervals(h) == [(h[3].time, h[10].time, "partition")]
    open_ended = h[:5]
    assert nemesis_intervals(open_ended) == [(h[3].time, h[4].time, "partition")]
    named = as_ops([{"time": 1, "process": "nemesis", "type": "info", "f": "kill", "phase": "start",
              "value": {"target": "leader", "nodes": ["n1"]}},
             {"time": 5, "process": 0, "type": "invoke", "f": "read"},
             {"time": 9, "process": "nemesis", "type": "info", "f": "restart", "phase": "stop", "value": {"nodes": ["n1"]}},
             {"time": 11, "process": "nemesis", "type": "info", "f": "start-partition", "phase": "start",
              "value": {"grudge": "random_halves", "cut": [["n1", "n2"]]}},
             {"time": 12, "process": "nemesis", "type": "info", "f": "heal", "value": None}])
    assert nemesis_intervals(named) == [(1, 9, "kill leader n1"), (11, 12, "partition random_halves")]
    failed = as_ops([{"time": 1, "process": "nemesis", "type": "info", "f": "start", "phase": "start", "error": "gone"},
                     {"time": 3, "process": "nemesis", "type": "info", "f": "stop", "phase": "stop"}])
    assert nemesis_intervals(failed) == []  # a start that failed injected nothing


def test_write_report_draws_pngs(tmp_path):
    paths = write_report(tmp_path, _history(), title="register-partition")
    assert sorted(p.name for p in paths) == ["latency-quantiles.png", "latency-raw.png", "rate.png", "timeline.html"]
    for p in paths[:3]:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000


def test_write_report_on_an_empty_history(tmp_path):
    assert len(write_report(tmp_path, [], title="empty")) == 4


def test_timeline_has_a_lane_per_process_and_no_external_assets():
    page = render_timeline(_history(), title="t")
    for p in range(5):
        assert f"process {p}</span>" in page
    assert page.count('class="op ok"') == 2 and page.count('class="op fail"') == 1
    assert page.count('class="op crashed"') == 2  # the info read and the read that never completed
    assert 'class="nem"' in page and "partition" in page
    assert not re.search(r"<script|src=|href=|@import|url\(", page)


def test_quantile_lines_leave_gaps_for_empty_seconds_and_info_is_drawn_on_top():
    import math

    from chaos.checker import latency_series
    from chaos.report import plots

    rec = Recorder(clock_ns=iter([0, 0, 500_000_000, 510_000_000, 3_500_000_000, 3_520_000_000]).__next__)
    rec.restart()
    for op in [("invoke", 0, "read", None), ("ok", 0, "read", 1), ("invoke", 0, "read", None), ("ok", 0, "read", 1)]:
        rec.record(*op)
    lines = plots.quantile_lines(latency_series(rec.ops), "read")
    assert [q for q, _, _ in lines] == [0.5, 0.95, 0.99, 1.0]
    _, xs, ys = lines[0]
    assert xs == [0.5, 1.5, 2.5, 3.5] and ys[0] == 10.0 and ys[3] == 20.0
    assert math.isnan(ys[1]) and math.isnan(ys[2])  # no line drawn across seconds 1-3
    assert plots.DRAW_ORDER[-1] == "info" and plots.Z["info"] > plots.Z["fail"] > plots.Z["ok"]
