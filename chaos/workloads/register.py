"""The register workload: per-key read / write / compare-and-set on the counter app's integers.

Each key is a counter named ``reg-<k>`` used as an int register: read is ``GET``, write is
``PUT {"value"}``, cas is ``PUT {"value", "expect"}`` (a 409 mismatch is a definite ``fail``).
Ops carry Jepsen's independent-key values so the ``kv`` model checks each key as a
cas-register on its own: ``read [k, nil] -> [k, v]``, ``write [k, v]``, ``cas [k, [from, to]]``.
A few keys are in use at a time; a key retires after ``ops_per_key`` ops and a fresh one takes
its place, which keeps every per-key history small enough to check quickly.
"""

from __future__ import annotations

import random
from typing import Any, Iterator

from chaos.checker import check_linearizable, make_model, stats
from chaos.workloads.base import OpSpec, Outcome, Request, Workload, classify_error

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
        yield {"f": f, "value": value}
        used[slot] += 1
        if used[slot] >= ops_per_key:
            active[slot], used[slot], fresh = fresh, 0, fresh + 1


class RegisterWorkload(Workload):
    name = "register"
    description = "per-key read / write / cas on int registers; checked as a cas-register per key (kv model)"

    def __init__(self, keys: int = 3, ops_per_key: int = 200) -> None:
        super().__init__(keys=keys, ops_per_key=ops_per_key)
        self.keys = keys
        self.ops_per_key = ops_per_key

    def generator(self, rng: random.Random) -> Iterator[OpSpec]:
        return register_ops(rng, keys=self.keys, ops_per_key=self.ops_per_key)

    async def invoke(self, request: Request, f: str, value: Any) -> Outcome:
        key, arg = value
        path = f"/v1/counters/{counter_name(key)}"
        try:
            if f == "read":
                answer = await request("GET", path)
                return "ok", [key, int(answer.body["value"])], {}
            if f == "write":
                await request("PUT", path, body={"value": arg}, write=True)
                return "ok", [key, arg], {}
            if f == "cas":
                old, new = arg
                await request("PUT", path, body={"value": new, "expect": old}, write=True)
                return "ok", [key, [old, new]], {}
        except Exception as exc:  # noqa: BLE001 - every failure becomes a fail or an info op
            return classify_error(exc)
        raise ValueError(f"register workload has no op {f!r}")

    def final_ops(self, history: list[dict[str, Any]]) -> list[OpSpec]:
        keys = sorted({op["value"][0] for op in history if isinstance(op.get("process"), int)
                       and op["type"] == "invoke" and isinstance(op.get("value"), list)})
        return [{"f": "read", "value": [k, None]} for k in keys]

    def check(self, history: list[dict[str, Any]], *, timeout: float | None = None) -> dict[str, dict[str, Any]]:
        linear = check_linearizable(history, make_model("kv", init=0), timeout=timeout)
        return {"linear": linear.to_dict(), "stats": stats(history).to_dict()}
