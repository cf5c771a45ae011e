"""The register workload: per-key read / write / compare-and-set on the config store (kv app).

Each register is a config-store key ``chaos-reg-<k>`` holding an int as text: read is
``KVClient.get`` (linearizable, or stale with ``read_consistency="stale"``), write is ``put``,
and cas is the config store's own compare-and-swap on revisions: a linearizable ``get``, then
``put(prev_revision=mod_revision)`` only if the value is the one expected. A value that differs,
or a ``RevisionMismatch`` (someone wrote in between), is a definite ``fail``: nothing changed.
Ops carry Jepsen's independent-key values so the ``kv`` model checks each key as a cas-register
on its own: ``read [k, nil] -> [k, v]``, ``write [k, v]``, ``cas [k, [from, to]]``. Every key
starts absent, which reads as nil: the run states ``model: kv, init: null``. A few keys are in use
at a time; a key retires after ``ops_per_key`` ops and a fresh one takes its place, which keeps
every per-key history small enough to check quickly.
"""

from __future__ import annotations

import random
from typing import Any, Callable, Iterator, Sequence

from chaos.checker import check_linearizable, make_model, stats
from chaos.history import Op
from chaos.verdict import CheckResult
from chaos.workloads.base import OpSpec, Outcome, Workload, classify_error, ok
from consensus.client import Client

VALUES = 5  # writes and cas pick values in range(VALUES): collisions make cas succeed often enough


def register_key(key: int) -> str:
    return f"chaos-reg-{key}"


def as_int(text: str | None) -> int | None:
    """Return a register's value: the int a key holds as text, or None for an absent key."""
    return None if text is None else int(text)


def independent_keys(rng: random.Random, pick: Callable[[random.Random, int], OpSpec], *, keys: int,
                     ops_per_key: int) -> Iterator[OpSpec]:
    """Yield ops on ``keys`` keys in use at a time, each retired after ``ops_per_key`` ops for a
    fresh one; ``pick(rng, key)`` makes each op. A pure function of ``rng``."""
    active = list(range(keys))
    used = [0] * keys
    fresh = keys
    while True:
        slot = rng.randrange(keys)
        yield pick(rng, active[slot])
        used[slot] += 1
        if used[slot] >= ops_per_key:
            active[slot], used[slot], fresh = fresh, 0, fresh + 1


def _register_op(rng: random.Random, key: int) -> OpSpec:
    f = rng.choice(("read", "write", "cas"))
    if f == "read":
        return OpSpec(f, [key, None])
    if f == "write":
        return OpSpec(f, [key, rng.randrange(VALUES)])
    return OpSpec(f, [key, [rng.randrange(VALUES), rng.randrange(VALUES)]])


def register_ops(rng: random.Random, *, keys: int = 3, ops_per_key: int = 200) -> Iterator[OpSpec]:
    """Yield register ops forever, a pure function of ``rng``."""
    return independent_keys(rng, _register_op, keys=keys, ops_per_key=ops_per_key)


def final_reads(history: Sequence[Op]) -> list[OpSpec]:
    """Return one read of every key the history's client ops touched (values ``[k, ...]``)."""
    keys = sorted({op.value[0] for op in history if op.is_client and op.type == "invoke"
                   and isinstance(op.value, list)})
    return [OpSpec("read", [k, None]) for k in keys]


class KeyedRegisters(Workload):
    """A workload of int registers on independent config-store keys, checked per key by the
    ``kv`` model, every key starting absent; subclasses give the ops and how to run them."""

    model = "kv"
    init = None
    apps = ("kv",)
    ops: tuple[str, ...] = ("read", "write")

    def __init__(self, keys: int = 3, ops_per_key: int = 200, **options: Any) -> None:
        super().__init__(keys=keys, ops_per_key=ops_per_key, **options)
        self.keys = keys
        self.ops_per_key = ops_per_key

    def key_name(self, key: int) -> str:
        raise NotImplementedError

    async def invoke(self, client: Client, f: str, value: Any, state: Any = None) -> Outcome:
        from apps.kv import KVClient  # imported late: the workload's pure parts do not need the app

        if f not in self.ops:
            raise ValueError(f"{self.name} workload has no op {f!r}")
        key, arg = value
        kv, name = KVClient(client), self.key_name(key)
        try:
            if f == "read":
                found = await kv.get(name, consistency=self.read_consistency)
                return ok([key, as_int(found.value if found else None)])
            if f == "write":
                await kv.put(name, str(arg))
                return ok([key, arg])
            return await self.other_op(kv, f, name, key, arg)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a fail or an info op
            return classify_error(exc)

    async def other_op(self, kv: Any, f: str, name: str, key: int, arg: Any) -> Outcome:
        """Run one of ``ops`` other than read and write on key ``name`` (``key`` in the op's value)."""
        raise NotImplementedError

    def final_ops(self, history: Sequence[Op]) -> list[OpSpec]:
        return final_reads(history)

    def check(self, history: Sequence[Op], *, timeout: float | None = None) -> dict[str, CheckResult]:
        linear = check_linearizable(history, make_model(self.model, init=self.init), timeout=timeout)
        return {"linear": linear, "stats": stats(history)}


class RegisterWorkload(KeyedRegisters):
    name = "register"
    description = "per-key read / write / cas (get, then put on the revision) on the config store; kv model"
    ops = ("read", "write", "cas")

    def generator(self, rng: random.Random) -> Iterator[OpSpec]:
        return register_ops(rng, keys=self.keys, ops_per_key=self.ops_per_key)

    def key_name(self, key: int) -> str:
        return register_key(key)

    async def other_op(self, kv: Any, f: str, name: str, key: int, arg: Any) -> Outcome:
        old, new = arg  # the only other op: cas
        try:
            found = await kv.get(name)  # linearizable: the revision the put is conditioned on
        except Exception as exc:  # noqa: BLE001 - a read changed nothing, whatever became of it
            return Outcome("fail", None, {**classify_error(exc).extra, "phase": "get"})
        current = as_int(found.value) if found else None
        if current != old:
            return Outcome("fail", None, {"error": "cas_mismatch", "current": current})
        await kv.put(name, str(new), prev_revision=found.mod_revision)  # RevisionMismatch: a definite fail
        return ok([key, [old, new]])
