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
from typing import Any, Iterator

from chaos.workloads.base import OpSpec, Outcome, ok
from chaos.workloads.register import VALUES, KeyedRegisters, independent_keys

# How often each op comes up: reads and writes most, deletes now and then.
OP_WEIGHTS = (("read", 4), ("write", 3), ("cas", 3), ("delete", 1))


def kv_key(key: int) -> str:
    return f"chaos-kv-{key}"


def _kv_op(rng: random.Random, key: int) -> OpSpec:
    f = rng.choices([f for f, _ in OP_WEIGHTS], [w for _, w in OP_WEIGHTS])[0]
    if f in ("read", "delete"):
        return OpSpec(f, [key, None])
    if f == "write":
        return OpSpec(f, [key, rng.randrange(VALUES)])
    return OpSpec(f, [key, [rng.randrange(VALUES), rng.randrange(VALUES)]])


def kv_ops(rng: random.Random, *, keys: int = 3, ops_per_key: int = 200) -> Iterator[OpSpec]:
    """Yield kv ops forever, a pure function of ``rng``."""
    return independent_keys(rng, _kv_op, keys=keys, ops_per_key=ops_per_key)


class KvWorkload(KeyedRegisters):
    name = "kv"
    description = "per-key get / put / delete / txn compare-and-set on the config store; kv model"
    ops = ("read", "write", "delete", "cas")

    def generator(self, rng: random.Random) -> Iterator[OpSpec]:
        return kv_ops(rng, keys=self.keys, ops_per_key=self.ops_per_key)

    def key_name(self, key: int) -> str:
        return kv_key(key)

    async def other_op(self, kv: Any, f: str, name: str, key: int, arg: Any) -> Outcome:
        from apps.kv import Compare
        from apps.kv import Op as TxnOp

        if f == "delete":
            await kv.delete(name)
            return ok([key, None])
        old, new = arg  # cas
        result = await kv.txn([Compare.value(name, "==", str(old))], [TxnOp.put(name, str(new))])
        if not result.succeeded:  # the compare failed: nothing changed
            return Outcome("fail", None, {"error": "cas_mismatch"})
        return ok([key, [old, new]])
