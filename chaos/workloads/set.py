"""The set workload: unique elements added to sets kept as config-store keys under a prefix.

Set ``k`` is every key under ``chaos-set-<k>-``; ``add [k, x]`` puts the key
``chaos-set-<k>-<x>`` (create-only: ``prev_revision=0``), and ``read [k, nil] -> [k, [x...]]``
lists the prefix in one page, so a read is one read at one revision (linearizable, or stale with
``read_consistency="stale"``). Elements are unique across the run. After ``adds_per_key`` adds a
set retires and a fresh one takes its place (keeping each read small); after the final heal
every set is read once more. Checked by the set checker, per set (lost: acknowledged or seen
before the final read began, yet missing from it; unexpected: read, never added; never read),
and for linearizability as a set per key (model ``kv-set``, every set starting empty).
"""

from __future__ import annotations

import random
from typing import Any, Iterator, Sequence

from chaos.checker import check_linearizable, check_set, make_model, stats
from chaos.history import Op
from chaos.verdict import CheckResult
from chaos.workloads.base import OpSpec, Outcome, Workload, classify_error, ok
from chaos.workloads.register import final_reads
from consensus.client import Client

READ_SHARE = 0.2  # of the ops during the run; the rest are adds
PAGE = 1000  # keys per list page (the config store's largest); a set never grows past it


def set_prefix(key: int) -> str:
    return f"chaos-set-{key}-"


def element_key(key: int, element: int) -> str:
    return f"{set_prefix(key)}{element:08d}"


def set_ops(rng: random.Random, *, keys: int = 2, adds_per_key: int = 100) -> Iterator[OpSpec]:
    """Yield set ops forever (adds of fresh elements 0, 1, 2... and reads), a pure function of ``rng``."""
    active = list(range(keys))
    added = [0] * keys
    fresh, element = keys, 0
    while True:
        slot = rng.randrange(keys)
        key = active[slot]
        if rng.random() < READ_SHARE:
            yield OpSpec("read", [key, None])
            continue
        yield OpSpec("add", [key, element])
        element += 1
        added[slot] += 1
        if added[slot] >= adds_per_key:
            active[slot], added[slot], fresh = fresh, 0, fresh + 1


class SetWorkload(Workload):
    name = "set"
    description = "adds of unique elements to sets kept as config-store keys under a prefix, reads, a final read"
    model = "kv-set"
    init = None  # every set starts empty
    apps = ("kv",)

    def __init__(self, keys: int = 2, adds_per_key: int = 100, **options: Any) -> None:
        if not 0 < adds_per_key < PAGE:
            raise ValueError(f"adds_per_key must be from 1 to {PAGE - 1}, so a set is read in one page")
        super().__init__(keys=keys, adds_per_key=adds_per_key, **options)
        self.keys = keys
        self.adds_per_key = adds_per_key

    def generator(self, rng: random.Random) -> Iterator[OpSpec]:
        return set_ops(rng, keys=self.keys, adds_per_key=self.adds_per_key)

    async def invoke(self, client: Client, f: str, value: Any, state: Any = None) -> Outcome:
        from apps.kv import KVClient

        key, element = value
        kv = KVClient(client)
        try:
            if f == "add":
                await kv.put(element_key(key, element), "", prev_revision=0)
                return ok([key, element])
            if f == "read":
                prefix = set_prefix(key)
                page = await kv.list(prefix, limit=PAGE, consistency=self.read_consistency)
                if page.more:  # a second page would be a second read at another revision
                    return Outcome("fail", None, {"error": "set_too_large"})
                return ok([key, sorted(int(item.key[len(prefix):]) for item in page.kvs)])
        except Exception as exc:  # noqa: BLE001 - every failure becomes a fail or an info op
            return classify_error(exc)
        raise ValueError(f"set workload has no op {f!r}")

    def final_ops(self, history: Sequence[Op]) -> list[OpSpec]:
        return final_reads(history)

    def check(self, history: Sequence[Op], *, timeout: float | None = None) -> dict[str, CheckResult]:
        linear = check_linearizable(history, make_model(self.model, init=self.init), timeout=timeout)
        return {"set": check_set(history, keyed=True), "linear": linear, "stats": stats(history)}
