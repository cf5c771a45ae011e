"""The workload protocol: a pure op generator, a client that records Jepsen ops, and a checker.

A workload is data plus three small parts, Jepsen's shape:

- ``generator(rng)``: an iterator of ``{"f", "value"}`` dicts, a pure function of the seeded
  ``random.Random`` it is given (golden-testable: same seed, same ops);
- ``invoke(counters, f, value) -> (type, value, extra)``: perform one op through the counter
  app's client and classify the outcome: ``ok``; ``fail`` only when the error is definite
  (nothing changed); ``info`` when the outcome is unknown;
- ``final_ops()``: the reads issued after the final heal, and ``check(history, timeout)``:
  the per-checker results, each a dict with ``valid`` (True, False or "unknown").
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Iterator

from consensus.errors import ConsensusError, Rejected

OpSpec = dict[str, Any]  # {"f": ..., "value": ...}
Outcome = tuple[str, Any, dict[str, Any]]  # (type, value, extra fields such as "error")


@dataclass(frozen=True)
class Answer:
    """What one HTTP request answered: the decoded body and the node that answered."""

    body: Any
    endpoint: str | None


Request = Callable[..., Awaitable[Answer]]


def classify_error(exc: BaseException) -> Outcome:
    """Return the completion of an op that raised ``exc``.

    A definite ``ConsensusError`` (``err.definite``) is a ``fail``: the op did not happen.
    Anything else (``Indeterminate``, a dropped connection, a timeout, an unexpected
    exception) is ``info``: it may have happened.
    """
    if isinstance(exc, ConsensusError):
        extra: dict[str, Any] = {"error": exc.code, "message": exc.message[:200]}
        if isinstance(exc, Rejected) and exc.detail is not None:
            extra["detail"] = exc.detail
        return ("fail" if exc.definite else "info"), None, extra
    if isinstance(exc, asyncio.TimeoutError):
        return "info", None, {"error": "timeout"}
    return "info", None, {"error": type(exc).__name__, "message": str(exc)[:200]}


class Workload:
    """Base class: subclasses set ``name`` and ``model`` and implement the three parts."""

    name: str = ""
    description: str = ""

    def __init__(self, **options: Any) -> None:
        self.options = options

    def generator(self, rng: random.Random) -> Iterator[OpSpec]:
        raise NotImplementedError

    async def invoke(self, request: Request, f: str, value: Any) -> Outcome:
        raise NotImplementedError

    def final_ops(self, history: list[dict[str, Any]]) -> list[OpSpec]:
        return []

    def check(self, history: list[dict[str, Any]], *, timeout: float | None = None) -> dict[str, dict[str, Any]]:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """Return the workload as JSON-ready data for ``test.json``."""
        return {"name": self.name, **self.options}
