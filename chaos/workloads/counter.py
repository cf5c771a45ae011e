"""The counter workload: increments and reads of one counter of the counter app.

``add n`` is ``CounterClient.incr(name, n)``; ``read`` is ``CounterClient.get`` (linearizable,
or stale with ``read_consistency="stale"``). Checked by the counter checker: every ok read lies
between the sum of adds acknowledged before it began and the sum of adds attempted (not failed)
before it ended. Its linearizability model is ``counter``, starting at 0.
"""

from __future__ import annotations

import random
from typing import Any, Iterator, Sequence

from apps.counter import CounterClient
from chaos.checker import check_counter, stats
from chaos.history import Op
from chaos.verdict import CheckResult
from chaos.workloads.base import OpSpec, Outcome, Workload, classify_error, ok
from consensus.client import Client

COUNTER = "chaos-counter"


def counter_ops(rng: random.Random, *, max_add: int = 5) -> Iterator[OpSpec]:
    """Yield counter ops forever (half adds of 1..max_add, half reads), a pure function of ``rng``."""
    while True:
        if rng.random() < 0.5:
            yield OpSpec("add", rng.randint(1, max_add))
        else:
            yield OpSpec("read")


class CounterWorkload(Workload):
    name = "counter"
    description = "increments and reads of one counter; every read within [acknowledged, attempted]"
    model = "counter"
    init = 0

    def __init__(self, max_add: int = 5, **options: Any) -> None:
        super().__init__(max_add=max_add, **options)
        self.max_add = max_add

    def generator(self, rng: random.Random) -> Iterator[OpSpec]:
        return counter_ops(rng, max_add=self.max_add)

    async def invoke(self, client: Client, f: str, value: Any, state: Any = None) -> Outcome:
        counters = CounterClient(client)
        try:
            if f == "read":
                return ok(await counters.get(COUNTER, consistency=self.read_consistency))
            if f == "add":
                await counters.incr(COUNTER, value)
                return ok(value)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a fail or an info op
            return classify_error(exc)
        raise ValueError(f"counter workload has no op {f!r}")

    def final_ops(self, history: Sequence[Op]) -> list[OpSpec]:
        return [OpSpec("read")]

    def check(self, history: Sequence[Op], *, timeout: float | None = None) -> dict[str, CheckResult]:
        return {"counter": check_counter(history, init=self.init), "stats": stats(history)}
