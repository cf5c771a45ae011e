"""The counter workload: increments and reads of one counter of the counter app.

``add n`` is ``POST /v1/counters/<name>/incr {"by": n}``; ``read`` is a linearizable ``GET``.
Checked by the counter checker: every ok read lies between the sum of adds acknowledged
before it began and the sum of adds attempted (not failed) before it ended.
"""

from __future__ import annotations

import random
from typing import Any, Iterator

from chaos.checker import check_counter, stats
from chaos.workloads.base import OpSpec, Outcome, Request, Workload, classify_error

COUNTER = "chaos-counter"


def counter_ops(rng: random.Random, *, max_add: int = 5) -> Iterator[OpSpec]:
    """Yield counter ops forever (half adds of 1..max_add, half reads), a pure function of ``rng``."""
    while True:
        if rng.random() < 0.5:
            yield {"f": "add", "value": rng.randint(1, max_add)}
        else:
            yield {"f": "read", "value": None}


class CounterWorkload(Workload):
    name = "counter"
    description = "increments and reads of one counter; every read within [acknowledged, attempted]"

    def __init__(self, max_add: int = 5) -> None:
        super().__init__(max_add=max_add)
        self.max_add = max_add

    def generator(self, rng: random.Random) -> Iterator[OpSpec]:
        return counter_ops(rng, max_add=self.max_add)

    async def invoke(self, request: Request, f: str, value: Any) -> Outcome:
        path = f"/v1/counters/{COUNTER}"
        try:
            if f == "read":
                answer = await request("GET", path)
                return "ok", int(answer.body["value"]), {}
            if f == "add":
                await request("POST", path + "/incr", body={"by": value}, write=True)
                return "ok", value, {}
        except Exception as exc:  # noqa: BLE001 - every failure becomes a fail or an info op
            return classify_error(exc)
        raise ValueError(f"counter workload has no op {f!r}")

    def final_ops(self, history: list[dict[str, Any]]) -> list[OpSpec]:
        return [{"f": "read", "value": None}]

    def check(self, history: list[dict[str, Any]], *, timeout: float | None = None) -> dict[str, dict[str, Any]]:
        return {"counter": check_counter(history).to_dict(), "stats": stats(history).to_dict()}
