"""The history recorder: appends Jepsen ops with an index and a time since the test began."""

from __future__ import annotations

import time
from typing import Any, Callable


class Recorder:
    """Collects ops in real-time order (the order :meth:`record` is called on the event loop)."""

    def __init__(self, clock_ns: Callable[[], int] = time.monotonic_ns) -> None:
        self._clock = clock_ns
        self.start_ns = clock_ns()
        self.ops: list[dict[str, Any]] = []

    def restart(self) -> None:
        """Make now time 0 (before any op is recorded)."""
        self.start_ns = self._clock()

    def elapsed(self) -> float:
        """Return seconds since the test began."""
        return (self._clock() - self.start_ns) / 1e9

    def record(self, type_: str, process: Any, f: str, value: Any = None, node: str | None = None,
               **extra: Any) -> dict[str, Any]:
        op: dict[str, Any] = {"index": len(self.ops), "time": self._clock() - self.start_ns, "type": type_,
                              "process": process, "f": f, "value": value}
        if node is not None:
            op["node"] = node
        op.update(extra)
        self.ops.append(op)
        return op

    def counts(self) -> dict[str, int]:
        """Return completions by type so far (client ops only)."""
        out = {"ok": 0, "fail": 0, "info": 0}
        for op in self.ops:
            if op["type"] in out and isinstance(op["process"], int):
                out[op["type"]] += 1
        return out
