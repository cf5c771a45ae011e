"""A run's results: every checker's result folded into one verdict, op counts, and the summary
that ``chaos test`` and ``chaos analyze`` print. ``results.json`` is :meth:`RunResults.to_dict`."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from chaos.history import Op
from chaos.verdict import CheckResult, Verdict
from chaos.workloads import Workload


@dataclass(frozen=True)
class Incomplete:
    """A run that did not finish (interrupted, crashed): its history is partial, so at best unknown."""

    reason: str

    @property
    def valid(self) -> Verdict:
        return Verdict.UNKNOWN

    def to_dict(self) -> dict[str, Any]:
        return {"valid": self.valid.json(), "reason": self.reason}

    def summary(self) -> str:
        return f"unknown (the run did not finish: {self.reason})"


@dataclass(frozen=True)
class Stored:
    """A check that only a live run can make (replica agreement), as ``results.json`` recorded it."""

    data: Mapping[str, Any]

    @property
    def valid(self) -> Verdict:
        return Verdict.from_json(self.data.get("valid"))

    def to_dict(self) -> dict[str, Any]:
        return dict(self.data)

    def summary(self) -> str:
        return str(self.data.get("summary") or self.valid.value) + " (as recorded by the run)"


def op_counts(history: Sequence[Op]) -> dict[str, Any]:
    """Return client completions by type and by f, and the nemesis op count."""
    by_type = {"ok": 0, "fail": 0, "info": 0}
    by_f: dict[str, dict[str, int]] = {}
    invokes = nemesis = 0
    for op in history:
        if not op.is_client:
            nemesis += 1
            continue
        if op.type == "invoke":
            invokes += 1
            continue
        by_type[op.type] = by_type.get(op.type, 0) + 1
        by_f.setdefault(op.f, {"ok": 0, "fail": 0, "info": 0})[op.type] += 1
    return {"invokes": invokes, "by_type": by_type, "by_f": by_f, "nemesis_ops": nemesis}


@dataclass
class RunResults:
    """The verdict of a run and what it rests on."""

    test: str
    workload: str
    nemesis: str
    seed: int | None
    checks: dict[str, CheckResult]
    counts: dict[str, Any]
    check_seconds: float = 0.0
    crashed: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def valid(self) -> Verdict:
        return Verdict.merge(c.valid for c in self.checks.values())

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"valid": self.valid.json(), "test": self.test, "workload": self.workload,
                               "nemesis": self.nemesis, "seed": self.seed,
                               "checkers": {name: {**c.to_dict(), "summary": c.summary()} for name, c in self.checks.items()},
                               "ops": self.counts, "check_seconds": self.check_seconds}
        if self.crashed is not None:
            out["crashed"] = self.crashed
        return {**out, **self.extra}

    def summary(self, run_dir: Path | None = None) -> str:
        """Return the end-of-run summary: verdict, ops by type and f, each checker, where the report is."""
        t = self.counts.get("by_type", {})
        lines = [f"{self.test}: {self.valid}  (seed {self.seed})"]
        if self.crashed is not None:
            lines.append(f"  the run did not finish: {self.crashed}")
        lines.append(f"  ops: {self.counts.get('invokes', 0)} invoked; ok {t.get('ok', 0)}, fail {t.get('fail', 0)}, "
                     f"info {t.get('info', 0)}; nemesis ops {self.counts.get('nemesis_ops', 0)}")
        for f, c in sorted((self.counts.get("by_f") or {}).items()):
            lines.append(f"    {f:<8} ok {c.get('ok', 0):>5}  fail {c.get('fail', 0):>5}  info {c.get('info', 0):>5}")
        for name, check in self.checks.items():
            lines.append(f"  {name}: {check.summary()}")
        avail = self.extra.get("availability") or {}
        if avail.get("leader_losses"):
            lines.append(f"  availability: {avail['leader_losses']} leader loss(es), median client stall "
                         f"{avail['median_stall_s']:.2f}s")
        if avail.get("recovery_s") is not None:
            lines.append(f"  recovery: serving again {avail['recovery_s']:.2f}s after the final heal")
        if run_dir is not None:
            lines.append(f"  report: {run_dir}/ (results.json, timeline.html, latency-raw.png, rate.png, run.log)")
        return "\n".join(lines)


def check_history(workload: Workload, history: Sequence[Op], *, test: str, nemesis: str, seed: int | None,
                  timeout: float | None, run_checks: Mapping[str, CheckResult] | None = None,
                  crashed: str | None = None) -> RunResults:
    """Check ``history`` with the workload's checkers, plus the run's own checks (nemesis faults,
    replica agreement, node logs), into one :class:`RunResults`."""
    started = time.monotonic()
    checks: dict[str, CheckResult] = dict(workload.check(history, timeout=timeout))
    checks.update(run_checks or {})
    if crashed is not None:
        checks["run"] = Incomplete(crashed)
    return RunResults(test=test, workload=workload.name, nemesis=nemesis, seed=seed, checks=checks,
                      counts=op_counts(history), check_seconds=round(time.monotonic() - started, 3), crashed=crashed)
