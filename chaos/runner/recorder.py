"""The history recorder: appends Jepsen ops, each with its index, the time since the test began,
and the line it will have in ``history.jsonl`` (after the header line)."""

from __future__ import annotations

import time
from typing import Any, Callable

from chaos.history import HEADER_LINES, Op

NEMESIS = "nemesis"  # the nemesis's process, as in Jepsen


class Recorder:
    """Collects ops in real-time order (the order :meth:`record` is called on the event loop)."""

    def __init__(self, clock_ns: Callable[[], int] = time.monotonic_ns) -> None:
        self._clock = clock_ns
        self.start_ns = clock_ns()
        self.ops: list[Op] = []

    def restart(self) -> None:
        """Make now time 0 (before any op is recorded)."""
        self.start_ns = self._clock()

    def elapsed(self) -> float:
        """Return seconds since the test began."""
        return (self._clock() - self.start_ns) / 1e9

    def record(self, type_: str, process: Any, f: str, value: Any = None, node: str | None = None,
               **extra: Any) -> Op:
        index = len(self.ops)
        op = Op(index=index, type=type_, process=process, f=f, value=value, time=self._clock() - self.start_ns,
                node=node, extra=extra, line=index + HEADER_LINES + 1)
        self.ops.append(op)
        return op

    def counts(self) -> dict[str, int]:
        """Return client completions by type so far."""
        out = {"ok": 0, "fail": 0, "info": 0}
        for op in self.ops:
            if op.type in out and op.is_client:
                out[op.type] += 1
        return out
