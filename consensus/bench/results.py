"""The bench's results: rows, medians over interleaved repeats, ratios, the table, CSV and JSON.

A ``LoadRow`` is one system's figure at one point (scenario, operation, target, cluster size,
concurrency, payload): the median over its repeats of the rate and of each latency quantile.
Rows measured as a pair (raftwork and a baseline, interleaved A, B, A, B) carry the ratio
raftwork/baseline on raftwork's row. An ``EventRow`` is a timed event (failover, catch-up).
"""

from __future__ import annotations

import csv
import json
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    from consensus.bench.memory import MemoryRow

LATENCY_KEYS = ("p50", "p90", "p99", "max")


@dataclass
class LoadRow:
    scenario: str
    system: str
    op: str  # what was measured, e.g. "counter incr" or "put"
    workload: str  # the load client's workload name
    target: str  # leader, follower or "-"
    nodes: int
    concurrency: int
    payload: int
    rate: float  # median of the repeats' rates (ops/s)
    rates: list[float] = field(default_factory=list)
    latency_ms: dict[str, float | None] = field(default_factory=dict)  # medians of each quantile
    errors: dict[str, int] = field(default_factory=dict)  # summed over repeats
    failed: int = 0
    unknown: int = 0
    baseline: str | None = None  # the system this row is compared with
    ratio: float | None = None  # rate / baseline's rate
    client_ceiling: float | None = None  # the load client's rate on a do-nothing server
    cpu_us_per_op: dict[str, float | None] = field(default_factory=dict)  # leader, follower: CPU per op (medians)

    @property
    def client_bound(self) -> bool:
        """True when the client's own ceiling is within 25 % of this figure."""
        return self.client_ceiling is not None and self.client_ceiling > 0 and self.rate >= 0.75 * self.client_ceiling


@dataclass
class EventRow:
    scenario: str
    system: str
    what: str  # e.g. "kill -9 leader -> first write"
    nodes: int
    samples_s: list[float]
    term_before: int | None = None
    term_after: int | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    baseline: str | None = None
    ratio: float | None = None  # median / baseline's median (lower is better)

    @property
    def median_s(self) -> float | None:
        return round(statistics.median(self.samples_s), 3) if self.samples_s else None


@dataclass
class Skip:
    scenario: str
    reason: str


@dataclass
class BenchResults:
    settings: dict[str, Any]
    loads: list[LoadRow] = field(default_factory=list)
    events: list[EventRow] = field(default_factory=list)
    ceiling_samples: dict[int, list[float]] = field(default_factory=dict)  # concurrency -> null-server rates
    skips: list[Skip] = field(default_factory=list)
    profile: list[str] = field(default_factory=list)  # py-spy summaries, one text block per process
    memory: list["MemoryRow"] = field(default_factory=list)

    @property
    def ceiling(self) -> dict[int, float]:
        """Return the load client's ceiling per concurrency: the median of its samples in this run."""
        return {c: round(statistics.median(v), 1) for c, v in self.ceiling_samples.items() if v}

    def mark_client_bound(self) -> None:
        """Give every HTTP row (embedded rows have no client) the client's ceiling at its concurrency."""
        ceiling = self.ceiling
        for row in self.loads:
            if row.target != "-":
                row.client_ceiling = ceiling.get(row.concurrency)

    def skip(self, scenario: str, reason: str) -> None:
        if not any(s.scenario == scenario and s.reason == reason for s in self.skips):
            self.skips.append(Skip(scenario, reason))

    def to_dict(self) -> dict[str, Any]:
        return {
            "settings": self.settings,
            "client_ceiling": {str(k): v for k, v in sorted(self.ceiling.items())},
            "client_ceiling_samples": {str(k): v for k, v in sorted(self.ceiling_samples.items())},
            "loads": [{**asdict(r), "client_bound": r.client_bound} for r in self.loads],
            "events": [{**asdict(e), "median_s": e.median_s} for e in self.events],
            "memory": [{**asdict(m), "median_bytes": m.median_bytes} for m in self.memory],
            "skipped": [asdict(s) for s in self.skips],
            "profile": self.profile,
        }


def median_row(scenario: str, system: str, op: str, target: str, nodes: int, payload: int,
               runs: Sequence[dict[str, Any]]) -> LoadRow:
    """Fold the load client's results of several repeats into one row of medians."""
    rates = [float(r["rate"]) for r in runs]
    latency: dict[str, float | None] = {}
    for key in LATENCY_KEYS:
        values = [r["latency_ms"][key] for r in runs if r["latency_ms"].get(key) is not None]
        latency[key] = round(statistics.median(values), 3) if values else None
    errors: dict[str, int] = {}
    for r in runs:
        for kind, n in r["errors"].items():
            errors[kind] = errors.get(kind, 0) + n
    cpu: dict[str, float | None] = {}
    for role in ("leader", "follower"):
        values = [r["cpu_us_per_op"][role] for r in runs if (r.get("cpu_us_per_op") or {}).get(role) is not None]
        cpu[role] = round(statistics.median(values), 1) if values else None
    return LoadRow(scenario, system, op, runs[0]["workload"], target, nodes, int(runs[0]["concurrency"]), payload,
                   round(statistics.median(rates), 1), rates, latency, errors,
                   sum(r["failed"] for r in runs), sum(r["unknown"] for r in runs), cpu_us_per_op=cpu)


def compare(row: LoadRow, baseline: LoadRow) -> None:
    """Record on ``row`` its rate relative to ``baseline`` (both measured in this run)."""
    row.baseline = baseline.system
    row.ratio = round(row.rate / baseline.rate, 2) if baseline.rate > 0 else None


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_table(results: BenchResults) -> str:
    """Render the results as the table printed on the terminal."""
    lines = []
    settings = results.settings
    if "raftwork_fsync" in settings:
        etcd = f"; etcd {settings['etcd_version']} fsyncs every commit" if settings.get("etcd_version") else ""
        lines.append(f"raftwork fsync: {settings['raftwork_fsync']}{etcd}")
    if results.ceiling:
        levels = ", ".join(f"c={c}: {r:.0f}/s" for c, r in sorted(results.ceiling.items()))
        lines.append(f"load client ceiling (do-nothing HTTP server, median of {_samples(results)} samples): {levels}")
    header = ["SCENARIO", "SYSTEM", "OP", "TARGET", "N", "C", "BYTES", "OPS/S", "P50MS", "P90MS", "P99MS", "MAXMS", "ERR",
              "CPU-US L/F", "VS", "RATIO"]
    rows = [header]
    for r in results.loads:
        lat = r.latency_ms
        rows.append([r.scenario, r.system, r.op, r.target, str(r.nodes), str(r.concurrency), str(r.payload),
                     f"{r.rate:.0f}" + ("*" if r.client_bound else ""), _fmt(lat.get("p50"), ".2f"), _fmt(lat.get("p90"), ".2f"),
                     _fmt(lat.get("p99"), ".2f"), _fmt(lat.get("max"), ".1f"), str(r.failed + r.unknown),
                     _cpu(r.cpu_us_per_op), r.baseline or "", _fmt(r.ratio, ".2f") + ("x" if r.ratio is not None else "")])
    if len(rows) > 1:
        lines.append(_columns(rows))
        if any(r.client_bound for r in results.loads):
            lines.append("* within 25 % of the load client's own ceiling: the client may be the bound")
        lines.append("CPU-US L/F: microseconds of CPU per operation on the leader / on each follower (mean)")
    for e in results.events:
        terms = f"; term {e.term_before} -> {e.term_after}" if e.term_before is not None else ""
        ratio = f"; {e.ratio:.2f}x {e.baseline}" if e.ratio is not None else ""
        samples = ", ".join(f"{s:.2f}" for s in e.samples_s)
        lines.append(f"{e.scenario:<9} {e.system:<9} {e.what}: median {_fmt(e.median_s, '.3f')} s of [{samples}]{terms}{ratio}")
    for m in results.memory:
        per_node = ", ".join(f"{b:.0f}" for b in m.bytes_per_item)
        lines.append(f"memory    {m.system:<9} {m.what}: median {_fmt(m.median_bytes, '.0f')} bytes each "
                     f"over {m.items} (per node: {per_node})")
    lines += results.profile
    for s in results.skips:
        lines.append(f"skipped {s.scenario}: {s.reason}")
    return "\n".join(lines)


def _samples(results: BenchResults) -> str:
    counts = sorted({len(v) for v in results.ceiling_samples.values()})
    return "-".join(map(str, [counts[0], counts[-1]] if counts[0] != counts[-1] else counts[:1]))


def _cpu(cpu: dict[str, float | None]) -> str:
    if cpu.get("leader") is None:
        return "-"
    return f"{cpu['leader']:.0f}/{_fmt(cpu.get('follower'), '.0f')}"


def _columns(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def write(results: BenchResults, directory: str | Path) -> list[Path]:
    """Write results.json, loads.csv, events.csv, memory.csv and table.txt into ``directory``; return their paths."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "results.json", out / "loads.csv", out / "events.csv", out / "table.txt", out / "memory.csv"]
    paths[0].write_text(json.dumps(results.to_dict(), indent=2))
    paths[3].write_text(format_table(results) + "\n")
    with open(paths[1], "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["scenario", "system", "op", "workload", "target", "nodes", "concurrency", "payload", "rate",
                         *[f"{k}_ms" for k in LATENCY_KEYS], "failed", "unknown", "leader_cpu_us", "follower_cpu_us",
                         "baseline", "ratio", "client_bound"])
        for r in results.loads:
            writer.writerow([r.scenario, r.system, r.op, r.workload, r.target, r.nodes, r.concurrency, r.payload, r.rate,
                             *[r.latency_ms.get(k) for k in LATENCY_KEYS], r.failed, r.unknown,
                             r.cpu_us_per_op.get("leader"), r.cpu_us_per_op.get("follower"), r.baseline or "",
                             r.ratio if r.ratio is not None else "", r.client_bound])
    with open(paths[2], "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["scenario", "system", "what", "nodes", "median_s", "samples_s", "term_before", "term_after", "baseline", "ratio"])
        for e in results.events:
            writer.writerow([e.scenario, e.system, e.what, e.nodes, e.median_s, " ".join(map(str, e.samples_s)),
                             e.term_before, e.term_after, e.baseline or "", e.ratio if e.ratio is not None else ""])
    with open(paths[4], "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["system", "what", "nodes", "items", "median_bytes", "bytes_per_item", "rss_before_mb"])
        for m in results.memory:
            writer.writerow([m.system, m.what, m.nodes, m.items, m.median_bytes, " ".join(map(str, m.bytes_per_item)),
                             " ".join(map(str, m.rss_before_mb))])
    return paths
