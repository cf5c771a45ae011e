"""The run report: Jepsen's plots (``latency-raw.png``, ``latency-quantiles.png``, ``rate.png``)
and a standalone ``timeline.html``, written into a run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from chaos.history import Op
from chaos.report.intervals import fault_label, nemesis_intervals
from chaos.report.timeline import render as render_timeline

__all__ = ["write_report", "render_timeline", "nemesis_intervals", "fault_label", "REPORT_FILES"]

REPORT_FILES = ("latency-raw.png", "latency-quantiles.png", "rate.png", "timeline.html")


def write_report(run_dir: Path, history: Sequence[Op], *, title: str = "") -> list[Path]:
    """Write the three plots and the timeline into ``run_dir``; return their paths."""
    from chaos.report import plots  # matplotlib is imported only when plotting

    run_dir = Path(run_dir)
    out = [plots.latency_raw(history, run_dir / "latency-raw.png", title),
           plots.latency_quantiles(history, run_dir / "latency-quantiles.png", title),
           plots.rate(history, run_dir / "rate.png", title)]
    timeline = run_dir / "timeline.html"
    timeline.write_text(render_timeline(history, title=f"{title} timeline" if title else "timeline"))
    out.append(timeline)
    return out
