"""The workload protocol: a pure op generator, a client step that records Jepsen ops, a checker.

A workload is data plus small parts, Jepsen's shape:

- ``generator(rng)``: an iterator of :class:`OpSpec`, a pure function of the seeded
  ``random.Random`` it is given (golden-testable: same seed, same ops);
- ``invoke(client, f, value, state) -> Outcome``: perform one op through the app's typed client
  (built on the ``consensus.client.Client`` it is given) and classify the outcome: ``ok``;
  ``fail`` only when the error is definite (nothing changed); ``info`` when the outcome is unknown;
- ``new_process()``, ``next_op(gen, state)`` and ``end_process(client, state)``: a workload
  whose processes carry state (the lock workload's session and grant) gets a fresh state per
  process, picks each process's next op from it (Jepsen's per-process generator), and releases
  what a process held when it ends (after an ``info`` op, or at the end of the run). Stateless
  workloads keep the defaults: no state, the shared generator's next op;
- ``closing_ops(state)``: ops a process that reaches the end of the run issues before it ends,
  recorded like the others (the lock workload's release of a lock still held: released only by
  ``end_process``, unrecorded, it would look to the checkers as if the lock were never freed);
- ``final_ops(history)``: the reads issued after the final heal;
- ``check(history, timeout) -> {name: CheckResult}``: each checker's result
  (:class:`chaos.verdict.CheckResult`: a verdict, JSON, a summary);
- ``sessions``: whether the run's clients use client sessions (default) or only idempotency keys;
- ``model`` and ``init``: the linearizability model its history is checked against and the
  initial value of every key, stated in the history's header and ``test.json`` so
  ``chaos check`` gives the run's verdict.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

from chaos.history import Op
from chaos.verdict import CheckResult
from consensus.client import Client
from consensus.errors import ConsensusError, Rejected

CONSISTENCIES = ("linearizable", "stale")


@dataclass(frozen=True)
class OpSpec:
    """What a generator asks for: an ``f`` and its ``value`` (Jepsen's op, before it is invoked)."""

    f: str
    value: Any = None


@dataclass(frozen=True)
class Outcome:
    """How an invoked op completed: its type, the value the client saw, and extra fields (``error``...)."""

    type: str
    value: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


def ok(value: Any) -> Outcome:
    return Outcome("ok", value)


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
        return Outcome("fail" if exc.definite else "info", None, extra)
    if isinstance(exc, asyncio.TimeoutError):
        return Outcome("info", None, {"error": "timeout"})
    return Outcome("info", None, {"error": type(exc).__name__, "message": str(exc)[:200]})


class Workload:
    """Base class: subclasses set ``name``, ``model``, ``init`` and implement the parts."""

    name: str = ""
    description: str = ""
    model: str | None = ""  # None: not checked for linearizability (no model to state)
    init: Any = None
    apps: tuple[str, ...] = ("counter",)
    # Whether the run's clients number writes in a client session (exactly-once by session); with
    # False they rely on each write's Idempotency-Key alone (what a transaction across groups takes).
    sessions: bool = True

    def __init__(self, *, read_consistency: str = "linearizable", **options: Any) -> None:
        if read_consistency not in CONSISTENCIES:
            raise ValueError(f"read consistency is one of {', '.join(CONSISTENCIES)}, not {read_consistency!r}")
        self.read_consistency = read_consistency
        self.options = options

    def generator(self, rng: random.Random) -> Iterator[OpSpec]:
        raise NotImplementedError

    def new_process(self) -> Any:
        """Return the state of a new process (None: this workload keeps none)."""
        return None

    def next_op(self, gen: Iterator[OpSpec], state: Any) -> OpSpec:
        """Return a process's next op: by default the shared generator's next one."""
        return next(gen)

    async def invoke(self, client: Client, f: str, value: Any, state: Any = None) -> Outcome:
        raise NotImplementedError

    def closing_ops(self, state: Any) -> list[OpSpec]:
        return []

    async def end_process(self, client: Client, state: Any) -> None:
        """Release what a process that ends still holds; never raises into the run."""

    def final_ops(self, history: Sequence[Op]) -> list[OpSpec]:
        return []

    def check(self, history: Sequence[Op], *, timeout: float | None = None) -> dict[str, CheckResult]:
        raise NotImplementedError

    def header(self) -> dict[str, Any]:
        """Return what the history's header states: the workload, its model, every key's initial value."""
        return {"workload": self.name, "model": self.model, "init": self.init}

    def describe(self) -> dict[str, Any]:
        """Return the workload as JSON-ready data for ``test.json``."""
        return {"name": self.name, "model": self.model, "init": self.init, "read_consistency": self.read_consistency,
                **self.options}
