"""The register workload: per-key read / write / compare-and-set on the counter app's integers.

Each key is a counter named ``reg-<k>`` used as an int register: read is ``CounterClient.get``,
write is ``set``, cas is ``set(expect=)`` (a mismatch is a definite ``Rejected``: ``fail``).
Ops carry Jepsen's independent-key values so the ``kv`` model checks each key as a
cas-register on its own: ``read [k, nil] -> [k, v]``, ``write [k, v]``, ``cas [k, [from, to]]``.
Every key starts at 0 (a counter never written reads 0): the run states ``model: kv, init: 0``.
A few keys are in use at a time; a key retires after ``ops_per_key`` ops and a fresh one takes
its place, which keeps every per-key history small enough to check quickly.
"""

from __future__ import annotations

import random
from typing import Any, Iterator, Sequence

from apps.counter import CounterClient
from chaos.checker import check_linearizable, make_model, stats
from chaos.history import Op
from chaos.verdict import CheckResult
from chaos.workloads.base import OpSpec, Outcome, Workload, classify_error, ok
from consensus.client import Client

VALUES = 5  # writes and cas pick values in range(VALUES): collisions make cas succeed often enough


def counter_name(key: int) -> str:
    return f"reg-{key}"


def register_ops(rng: random.Random, *, keys: int = 3, ops_per_key: int = 200) -> Iterator[OpSpec]:
    """Yield register ops forever, a pure function of ``rng``."""
    active = list(range(keys))
    used = [0] * keys
    fresh = keys
    while True:
        slot = rng.randrange(keys)
        key = active[slot]
        f = rng.choice(("read", "write", "cas"))
        if f == "read":
            value: Any = [key, None]
        elif f == "write":
            value = [key, rng.randrange(VALUES)]
        else:
            value = [key, [rng.randrange(VALUES), rng.randrange(VALUES)]]
        yield OpSpec(f, value)
        used[slot] += 1
        if used[slot] >= ops_per_key:
            active[slot], used[slot], fresh = fresh, 0, fresh + 1


class RegisterWorkload(Workload):
    name = "register"
    description = "per-key read / write / cas on int registers; checked as a cas-register per key (kv model)"
    model = "kv"
    init = 0

    def __init__(self, keys: int = 3, ops_per_key: int = 200, **options: Any) -> None:
        super().__init__(keys=keys, ops_per_key=ops_per_key, **options)
        self.keys = keys
        self.ops_per_key = ops_per_key

    def generator(self, rng: random.Random) -> Iterator[OpSpec]:
        return register_ops(rng, keys=self.keys, ops_per_key=self.ops_per_key)

    async def invoke(self, client: Client, f: str, value: Any, state: Any = None) -> Outcome:
        key, arg = value
        counters, name = CounterClient(client), counter_name(key)
        try:
            if f == "read":
                return ok([key, await counters.get(name, consistency=self.read_consistency)])
            if f == "write":
                await counters.set(name, arg)
                return ok([key, arg])
            if f == "cas":
                old, new = arg
                await counters.set(name, new, expect=old)
                return ok([key, [old, new]])
        except Exception as exc:  # noqa: BLE001 - every failure becomes a fail or an info op
            return classify_error(exc)
        raise ValueError(f"register workload has no op {f!r}")

    def final_ops(self, history: Sequence[Op]) -> list[OpSpec]:
        keys = sorted({op.value[0] for op in history if op.is_client and op.type == "invoke"
                       and isinstance(op.value, list)})
        return [OpSpec("read", [k, None]) for k in keys]

    def check(self, history: Sequence[Op], *, timeout: float | None = None) -> dict[str, CheckResult]:
        linear = check_linearizable(history, make_model(self.model, init=self.init), timeout=timeout)
        return {"linear": linear, "stats": stats(history)}
