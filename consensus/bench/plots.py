"""PNG plots of a bench run: throughput vs concurrency, latency quantiles, scaling with cluster size."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window

import matplotlib.pyplot as plt  # noqa: E402

from consensus.bench.results import BenchResults, LoadRow  # noqa: E402

_STYLE = {"raftwork": "-o", "etcd": "--s", "pysyncobj": ":^"}


def _series(rows: list[LoadRow], x: str) -> dict[str, list[tuple[int, float]]]:
    series: dict[str, list[tuple[int, float]]] = {}
    for r in rows:
        # A baseline row carries the op it is compared with; name it by what it really sent.
        what = r.op if r.system == "raftwork" else r.workload.removeprefix(f"{r.system}-")
        series.setdefault(f"{r.system} {what}", []).append((getattr(r, x), r.rate))
    return {k: sorted(v) for k, v in series.items()}


def _line_plot(rows: list[LoadRow], x: str, xlabel: str, title: str, path: Path, ceiling: dict[int, float] | None = None) -> Path:
    fig, ax = plt.subplots(figsize=(8, 5))
    for label, points in _series(rows, x).items():
        ax.plot([p[0] for p in points], [p[1] for p in points], _STYLE.get(label.split()[0], "-o"), label=label)
    if ceiling:
        levels = sorted(ceiling)
        ax.plot(levels, [ceiling[c] for c in levels], color="grey", linewidth=1, label="load client ceiling")
    if x == "concurrency":
        ax.set_xscale("log", base=2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("operations per second")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _latency_plot(rows: list[LoadRow], path: Path) -> Path:
    labels = [f"{r.system}\n{r.op}\n{r.target} c={r.concurrency}" for r in rows]
    fig, ax = plt.subplots(figsize=(max(8, len(rows) * 0.9), 5))
    width = 0.27
    for k, key in enumerate(("p50", "p90", "p99")):
        xs = [i + (k - 1) * width for i in range(len(rows))]
        ax.bar(xs, [r.latency_ms.get(key) or 0 for r in rows], width, label=key)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels(labels, fontsize=6)
    ax.set_ylabel("milliseconds")
    ax.set_yscale("log")
    ax.set_title("latency quantiles (http, kv and locks scenarios)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_plots(results: BenchResults, directory: str | Path) -> list[Path]:
    """Write the plots the results have data for; return their paths."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    sweep = [r for r in results.loads if r.scenario == "sweep"]
    if sweep:
        written.append(_line_plot(sweep, "concurrency", "concurrent clients", "throughput vs concurrency (to the leader)",
                                  out / "throughput-vs-concurrency.png", results.ceiling))
    http = [r for r in results.loads if r.scenario in ("http", "kv", "locks")]
    if http:
        written.append(_latency_plot(http, out / "latency-quantiles.png"))
    sizes = [r for r in results.loads if r.scenario == "sizes"]
    if sizes:
        written.append(_line_plot(sizes, "nodes", "cluster size (nodes)", "scaling with cluster size", out / "cluster-size.png"))
    return written
