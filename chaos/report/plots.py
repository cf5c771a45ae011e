"""Jepsen's three plots with matplotlib (Agg, headless): latency-raw, latency-quantiles, rate.

Colours as in Jepsen: ok blue, info orange, fail pink; nemesis faults shaded grey. Outcomes are
drawn ok, then fail, then info on top (info ops are few and matter most: their effect is
unknown), so an info point is never hidden under a fail.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first

from chaos.checker import latency_series, quantiles, rate_series  # noqa: E402
from chaos.history import Op  # noqa: E402
from chaos.report.intervals import nemesis_intervals  # noqa: E402

COLORS = {"ok": "#81BFFC", "info": "#FFA400", "fail": "#FF1E90"}
DRAW_ORDER = ("ok", "fail", "info")  # later on top
Z = {"ok": 2, "fail": 3, "info": 4}
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
QUANTILE_COLORS = {0.5: "#1f77b4", 0.95: "#2ca02c", 0.99: "#ff7f0e", 1.0: "#d62728"}


def _shade(ax: Any, history: Sequence[Op]) -> None:
    for start, stop, label in nemesis_intervals(history):
        ax.axvspan(start / 1e9, stop / 1e9, color="#000000", alpha=0.08, lw=0)
        if label:
            ax.text(start / 1e9, 1.0, " " + label, transform=ax.get_xaxis_transform(), fontsize=7,
                    va="top", ha="left", color="#555555")


def _fs(history: Sequence[Op]) -> list[str]:
    return sorted({op.f for op in history if op.is_client})


def _finish(fig: Any, ax: Any, path: Path, title: str, ylabel: str) -> Path:
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("time (s)")
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(fontsize=7, loc="upper right", framealpha=0.8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def latency_raw(history: Sequence[Op], path: Path, title: str = "") -> Path:
    """Scatter every completed op's latency against its invoke time, by f and outcome."""
    fig, ax = plt.subplots(figsize=(10, 5))
    points = latency_series(history)
    for i, f in enumerate(_fs(history)):
        for kind in DRAW_ORDER:
            pts = [p for p in points if p["f"] == f and p["type"] == kind]
            if pts:
                ax.scatter([p["time"] / 1e9 for p in pts], [max(p["latency"], 1) / 1e6 for p in pts],
                           s=14 if kind == "info" else 6, c=COLORS[kind], marker=MARKERS[i % len(MARKERS)],
                           label=f"{f} {kind}", alpha=0.9, lw=0, zorder=Z[kind])
    if points:
        ax.set_yscale("log")
    _shade(ax, history)
    return _finish(fig, ax, path, f"{title} latency (raw)", "latency (ms)")


def latency_quantiles(history: Sequence[Op], path: Path, title: str = "", bucket_s: float = 1.0) -> Path:
    """Plot latency quantiles (0.5, 0.95, 0.99, max) per f in time buckets; a bucket with no
    completed op is a gap in the line, not a line drawn across it."""
    fig, ax = plt.subplots(figsize=(10, 5))
    points = latency_series(history)
    styles = ["-", "--", ":", "-."]
    for i, f in enumerate(_fs(history)):
        for q, xs, ys in quantile_lines(points, f, bucket_s):
            ax.plot(xs, ys, styles[i % len(styles)], color=QUANTILE_COLORS[q], lw=1, marker=".", ms=3,
                    label=f"{f} {'max' if q == 1.0 else q}")
    if points:
        ax.set_yscale("log")
    _shade(ax, history)
    return _finish(fig, ax, path, f"{title} latency quantiles", "latency (ms)")


def quantile_lines(points: list[dict[str, Any]], f: str, bucket_s: float = 1.0) -> list[tuple[float, list[float], list[float]]]:
    """Return, per quantile, the bucket midpoints (s) and latencies (ms) of ``f``'s completed ops;
    a bucket with none is NaN, which matplotlib draws as a gap."""
    buckets: dict[int, list[float]] = {}
    for p in points:
        if p["f"] == f:
            buckets.setdefault(int(p["time"] / 1e9 // bucket_s), []).append(max(p["latency"], 1) / 1e6)
    if not buckets:
        return []
    span = list(range(min(buckets), max(buckets) + 1))
    per = {b: quantiles(values) for b, values in buckets.items()}
    xs = [(b + 0.5) * bucket_s for b in span]
    return [(q, xs, [per[b][q] if b in per else math.nan for b in span]) for q in QUANTILE_COLORS]


def rate(history: Sequence[Op], path: Path, title: str = "", bucket_s: float = 1.0) -> Path:
    """Plot completions per second per f and outcome."""
    fig, ax = plt.subplots(figsize=(10, 5))
    bucket_ns = int(bucket_s * 1e9)
    series = rate_series(history, bucket_ns=bucket_ns)
    last = max((p["time"] // bucket_ns for p in series), default=-1)
    styles = ["-", "--", ":", "-."]
    for i, f in enumerate(_fs(history)):
        for kind in DRAW_ORDER:
            rates = {p["time"] // bucket_ns: p["rate"] for p in series if p["f"] == f and p["type"] == kind}
            if rates:  # an empty bucket is a rate of 0, not a gap to draw across
                buckets = range(last + 1)
                ax.plot([b * bucket_s + bucket_s / 2 for b in buckets], [rates.get(b, 0.0) for b in buckets],
                        styles[i % len(styles)], color=COLORS[kind], lw=1.2, label=f"{f} {kind}", marker=".", ms=3,
                        zorder=Z[kind])
    _shade(ax, history)
    return _finish(fig, ax, path, f"{title} throughput", "ops/s")
