"""The kv workload: get / put / delete / transactional compare-and-set on config-store keys.

Each key ``chaos-kv-<k>`` holds an int as text. ``read`` is ``KVClient.get`` (linearizable, or
stale with ``read_consistency="stale"``), ``write`` is ``put``, ``delete`` is ``delete`` (the
key reads as nil again), and ``cas`` is one ``txn``: if the key's value equals ``from``, put
``to``; a transaction whose compare failed changed nothing and is a definite ``fail``. Ops carry
independent-key values (``[k, v]``), checked per key as a cas-register with deletes (model
``kv``, every key starting absent: ``init: null``). Keys retire after ``ops_per_key`` ops, as in
the register workload.
"""

from __future__ import annotations

import random
from typing import Any, Iterator, Sequence

from chaos.checker import check_linearizable, make_model, stats
from chaos.history import Op
from chaos.verdict import CheckResult
from chaos.workloads.base import OpSpec, Outcome, Workload, classify_error, ok
from chaos.workloads.register import VALUES, as_int, final_reads
from consensus.client import Client

# How often each op comes up: reads and writes most, deletes now and then.
OP_WEIGHTS = (("read", 4), ("write", 3), ("cas", 3), ("delete", 1))


def kv_key(key: int) -> str:
    return f"chaos-kv-{key}"


def kv_ops(rng: random.Random, *, keys: int = 3, ops_per_key: int = 200) -> Iterator[OpSpec]:
    """Yield kv ops forever, a pure function of ``rng``."""
    names = [f for f, _ in OP_WEIGHTS]
    weights = [w for _, w in OP_WEIGHTS]
    active = list(range(keys))
    used = [0] * keys
    fresh = keys
    while True:
        slot = rng.randrange(keys)
        key = active[slot]
        f = rng.choices(names, weights)[0]
        if f in ("read", "delete"):
            value: Any = [key, None]
        elif f == "write":
            value = [key, rng.randrange(VALUES)]
        else:
            value = [key, [rng.randrange(VALUES), rng.randrange(VALUES)]]
        yield OpSpec(f, value)
        used[slot] += 1
        if used[slot] >= ops_per_key:
            active[slot], used[slot], fresh = fresh, 0, fresh + 1


class KvWorkload(Workload):
    name = "kv"
    description = "per-key get / put / delete / txn compare-and-set on the config store; kv model"
    model = "kv"
    init = None
    apps = ("kv",)

    def __init__(self, keys: int = 3, ops_per_key: int = 200, **options: Any) -> None:
        super().__init__(keys=keys, ops_per_key=ops_per_key, **options)
        self.keys = keys
        self.ops_per_key = ops_per_key

    def generator(self, rng: random.Random) -> Iterator[OpSpec]:
        return kv_ops(rng, keys=self.keys, ops_per_key=self.ops_per_key)

    async def invoke(self, client: Client, f: str, value: Any, state: Any = None) -> Outcome:
        from apps.kv import Compare, KVClient
        from apps.kv import Op as TxnOp

        key, arg = value
        kv, name = KVClient(client), kv_key(key)
        try:
            if f == "read":
                found = await kv.get(name, consistency=self.read_consistency)
                return ok([key, as_int(found.value if found else None)])
            if f == "write":
                await kv.put(name, str(arg))
                return ok([key, arg])
            if f == "delete":
                await kv.delete(name)
                return ok([key, None])
            if f == "cas":
                old, new = arg
                result = await kv.txn([Compare.value(name, "==", str(old))], [TxnOp.put(name, str(new))])
                if not result.succeeded:
                    return Outcome("fail", None, {"error": "cas_mismatch"})
                return ok([key, [old, new]])
        except Exception as exc:  # noqa: BLE001 - every failure becomes a fail or an info op
            return classify_error(exc)
        raise ValueError(f"kv workload has no op {f!r}")

    def final_ops(self, history: Sequence[Op]) -> list[OpSpec]:
        return final_reads(history)

    def check(self, history: Sequence[Op], *, timeout: float | None = None) -> dict[str, CheckResult]:
        linear = check_linearizable(history, make_model(self.model, init=self.init), timeout=timeout)
        return {"linear": linear, "stats": stats(history)}
