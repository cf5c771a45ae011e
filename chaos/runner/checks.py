"""The run's own checks, beside the workload's: did every fault run, do the replicas agree after
the final heal (hashicorp/raft's fuzzy checks), and did any node log a CRITICAL engine line.

``faults_check`` and ``logs_check`` are pure functions of what the run left (the history, the
node logs), so ``chaos analyze`` makes them again; ``agreement_check`` needs the live cluster.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Protocol, Sequence

from chaos.history import Op
from chaos.verdict import Verdict

# pysyncobj logs "truncating already-applied log entries" at CRITICAL; our engine's own CRITICAL
# lines say the same kind of thing. Node logs use "<time> <LEVEL> <logger>: <message>".
_BAD_LINE = re.compile(r"\bCRITICAL\b|truncating already-applied")
_MAX_REPORTED = 10


@dataclass(frozen=True)
class FaultsResult:
    """Every nemesis op that failed: the fault did not happen as scheduled, so the run did not test
    what it says (unknown), never a silent valid."""

    injected: int
    failures: tuple[str, ...]

    @property
    def valid(self) -> Verdict:
        return Verdict.UNKNOWN if self.failures else Verdict.VALID

    def to_dict(self) -> dict[str, Any]:
        return {"valid": self.valid.json(), "injected": self.injected, "failures": list(self.failures)}

    def summary(self) -> str:
        if not self.failures:
            return f"valid ({self.injected} faults injected)"
        return f"unknown ({len(self.failures)} nemesis op(s) failed)" + "".join(
            f"\n    {line}" for line in self.failures[:_MAX_REPORTED])


def faults_check(history: Sequence[Op]) -> FaultsResult:
    """Return which nemesis ops failed (an ``info`` completion with an ``error``)."""
    injected, failures = 0, []
    for op in history:
        if op.is_client or op.type == "invoke":
            continue
        if op.get("error"):
            when = f"{op.time / 1e9:.1f}s" if op.time is not None else "?"
            failures.append(f"nemesis {op.get('phase') or op.f} failed at {when}: {op.get('error')}")
        elif str(op.get("phase") or op.f).startswith("start"):
            injected += 1
    return FaultsResult(injected, tuple(failures))


@dataclass(frozen=True)
class LogsResult:
    """CRITICAL engine lines found in node logs (each one means the engine broke a Raft rule)."""

    scanned: tuple[str, ...]
    lines: tuple[str, ...]

    @property
    def valid(self) -> Verdict:
        return Verdict.INVALID if self.lines else Verdict.VALID

    def to_dict(self) -> dict[str, Any]:
        return {"valid": self.valid.json(), "scanned": list(self.scanned), "lines": list(self.lines[:100])}

    def summary(self) -> str:
        if not self.lines:
            return f"valid (no CRITICAL line in {len(self.scanned)} node logs)"
        return f"INVALID ({len(self.lines)} CRITICAL line(s))" + "".join(f"\n    {line}" for line in self.lines[:_MAX_REPORTED])


def logs_check(logs: Mapping[str, Path]) -> LogsResult:
    """Scan each node's log (name -> path) for CRITICAL lines; missing logs are skipped."""
    scanned, found = [], []
    for name, path in sorted(logs.items()):
        try:
            text = Path(path).read_text(errors="replace")
        except OSError:
            continue
        scanned.append(name)
        found += [f"{name}: {line.strip()[:300]}" for line in text.splitlines() if _BAD_LINE.search(line)]
    return LogsResult(tuple(scanned), tuple(found))


class _Statuses(Protocol):
    names: list[str]

    async def statuses(self, *, digest: bool = False) -> Mapping[str, Mapping[str, Any] | None]: ...


@dataclass
class AgreementResult:
    """Replica agreement after the final heal: every node at one applied index with one state digest."""

    valid: Verdict
    reason: str
    index: int | None = None
    digests: dict[str, str] = field(default_factory=dict)
    applied: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"valid": self.valid.json(), "reason": self.reason, "index": self.index, "digests": self.digests,
                "applied": self.applied}

    def summary(self) -> str:
        return f"{self.valid.value if self.valid is not Verdict.INVALID else 'INVALID'} ({self.reason})"


def compare_samples(samples: Mapping[str, Mapping[int, str]]) -> AgreementResult | None:
    """Decide agreement from digest samples (node -> {digest_index: state_digest}), or None if no
    index has a sample from every node yet. Pure: the poller feeds it what it has seen."""
    if not samples or not all(samples.values()):
        return None
    common = set.intersection(*(set(s) for s in samples.values()))
    if not common:
        return None
    index = max(common)
    digests = {name: s[index] for name, s in sorted(samples.items())}
    if len(set(digests.values())) == 1:
        return AgreementResult(Verdict.VALID, f"{len(digests)} nodes agree at applied index {index}", index, digests)
    groups: dict[str, list[str]] = {}
    for name, digest in digests.items():
        groups.setdefault(digest, []).append(name)
    split = " vs ".join(",".join(names) for names in sorted(groups.values()))
    return AgreementResult(Verdict.INVALID, f"state digests differ at applied index {index}: {split}", index, digests)


async def agreement_check(cluster: _Statuses, timeout: float = 30.0, interval: float = 0.2) -> AgreementResult:
    """Poll every node's state digest until all have one at a common applied index, and compare.

    The log may still move (a machine that wants time gets time entries), so samples are kept
    per index and compared where every node has one. A node that answers but never reaches the
    others' index within ``timeout`` makes the run invalid; a node that never answers, unknown.
    """
    # One sample table per Raft group: a process hosting several groups reports each one's digest
    # under "groups"; every group's members must agree among themselves.
    samples: dict[str, dict[str, dict[int, str]]] = {}
    applied: dict[str, dict[str, int]] = {}
    deadline = time.monotonic() + timeout
    while True:
        for name, status in (await cluster.statuses(digest=True)).items():
            for body in (status or {}).get("groups") or ([status] if status else []):
                group = str(body.get("group", "default"))
                table = samples.setdefault(group, {n: {} for n in cluster.names})
                if isinstance(body.get("digest_index"), int) and body.get("state_digest"):
                    table[name][body["digest_index"]] = str(body["state_digest"])
                    applied.setdefault(group, {})[name] = int(body["digest_index"])
        decided = {group: compare_samples(table) for group, table in sorted(samples.items())}
        if decided and all(d is not None for d in decided.values()):
            return _combined({g: d for g, d in decided.items() if d is not None}, applied)
        if time.monotonic() > deadline:
            if not samples:
                return _undecided({n: {} for n in cluster.names}, {}, timeout)
            results = {g: decided.get(g) or _undecided(table, applied.get(g, {}), timeout) for g, table in samples.items()}
            return _combined(results, applied)
        await asyncio.sleep(interval)


def _combined(results: Mapping[str, AgreementResult], applied: Mapping[str, Mapping[str, int]]) -> AgreementResult:
    """Fold one result per group into one (the worst verdict; reasons prefixed by group when several)."""
    if len(results) == 1:
        (group, result), = results.items()
        result.applied = dict(applied.get(group, {}))
        return result
    worst = Verdict.merge(r.valid for r in results.values())
    reason = "; ".join(f"{g}: {r.reason}" for g, r in results.items())
    digests = {f"{g}/{n}": d for g, r in results.items() for n, d in r.digests.items()}
    flat = {f"{g}/{n}": i for g, by_node in applied.items() for n, i in by_node.items()}
    return AgreementResult(worst, reason, None, digests, flat)


def _undecided(samples: Mapping[str, Mapping[int, str]], applied: dict[str, int], timeout: float) -> AgreementResult:
    silent = [name for name, s in samples.items() if not s]
    if silent:
        return AgreementResult(Verdict.UNKNOWN, f"no state digest from {', '.join(silent)} within {timeout:g}s",
                               applied=applied)
    behind = ", ".join(f"{name} at {index}" for name, index in sorted(applied.items()))
    return AgreementResult(Verdict.INVALID, f"nodes never reached one applied index within {timeout:g}s: {behind}",
                           applied=applied)
