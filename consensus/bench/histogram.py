"""Record latencies in a fixed-precision histogram and read quantiles from it.

Buckets grow geometrically (each 2 % wider than the last, from 1 us), so a run of millions of
operations costs a few hundred counters and every quantile is within 2 % of the true value.
``max`` and ``min`` are kept exactly. Histograms merge, so one per worker can be summed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

_BASE_SECONDS = 1e-6
_GROWTH = 1.02
_LOG_GROWTH = math.log(_GROWTH)


def bucket_of(seconds: float) -> int:
    """Return the bucket index that holds ``seconds`` (everything under 1 us is bucket 0)."""
    if seconds <= _BASE_SECONDS:
        return 0
    return 1 + int(math.log(seconds / _BASE_SECONDS) / _LOG_GROWTH)


def bucket_value(index: int) -> float:
    """Return the value a bucket stands for: the geometric middle of its bounds."""
    if index == 0:
        return _BASE_SECONDS
    return _BASE_SECONDS * _GROWTH ** (index - 0.5)


@dataclass
class LatencyHistogram:
    counts: dict[int, int] = field(default_factory=dict)
    count: int = 0
    total: float = 0.0
    max: float = 0.0
    min: float = math.inf

    def record(self, seconds: float) -> None:
        index = bucket_of(seconds)
        self.counts[index] = self.counts.get(index, 0) + 1
        self.count += 1
        self.total += seconds
        self.max = max(self.max, seconds)
        self.min = min(self.min, seconds)

    def merge(self, other: "LatencyHistogram") -> None:
        for index, n in other.counts.items():
            self.counts[index] = self.counts.get(index, 0) + n
        self.count += other.count
        self.total += other.total
        self.max = max(self.max, other.max)
        self.min = min(self.min, other.min)

    def quantile(self, q: float) -> float:
        """Return the smallest recorded value v with at least ``q`` of the samples <= v (seconds)."""
        if not 0 <= q <= 1:
            raise ValueError(f"quantile must be within [0, 1], not {q}")
        if self.count == 0:
            return math.nan
        if q == 1:
            return self.max
        rank = max(1, math.ceil(q * self.count))
        seen = 0
        for index in sorted(self.counts):
            seen += self.counts[index]
            if seen >= rank:
                # The bucket's middle can lie outside what was recorded: clamp to the exact bounds.
                return min(self.max, max(self.min, bucket_value(index)))
        return self.max

    def summary_ms(self) -> dict[str, float | None]:
        """Return p50, p90, p99, max and mean in milliseconds (None when nothing was recorded)."""
        if self.count == 0:
            return {"p50": None, "p90": None, "p99": None, "max": None, "mean": None}
        out: dict[str, float | None] = {f"p{int(q * 100)}": round(self.quantile(q) * 1000, 3) for q in (0.5, 0.9, 0.99)}
        out["max"] = round(self.max * 1000, 3)
        out["mean"] = round(self.total / self.count * 1000, 3)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"counts": {str(k): v for k, v in sorted(self.counts.items())}, "count": self.count,
                "total": self.total, "max": self.max, "min": self.min if self.count else None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LatencyHistogram":
        return cls({int(k): int(v) for k, v in data["counts"].items()}, int(data["count"]), float(data["total"]),
                   float(data["max"]), math.inf if data.get("min") is None else float(data["min"]))
