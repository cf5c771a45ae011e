"""The bank workload across Raft groups, on real processes (3 groups x 3 nodes, the kv app).

Without Toxiproxy in between (``chaos test --groups 3`` is the full harness: see
``test_chaos_cluster_groups.py`` and the slow ``test_chaos_groups_acceptance.py``), this test
drives a ``LocalCluster`` from ``plan_groups`` itself: the bank workload's own generator and client (``BankWorkload.invoke``) in a few
concurrent processes, recorded as ``chaos test`` records them (a process whose op ended ``info``
never issues again), while the leader of the coordinator group (the group of account 0, the
first key of every read and of the transfers from account 0) is killed and restarted. Then one
final read, and the history is checked by the bank checker."""

from __future__ import annotations

import asyncio
import contextlib
import random

import pytest

from chaos.runner import Recorder
from chaos.verdict import Verdict
from chaos.workloads import BankWorkload
from chaos.workloads.bank import account_key
from consensus.client import Client
from consensus.shards import ShardMap
from consensus.testing.local import plan_groups, start_with_retries

pytestmark = pytest.mark.timeout(300)
RUN_SECONDS = 10.0
PROCESSES = 6
OP_TIMEOUT = 5.0


async def run_bank(cluster, bank: BankWorkload, recorder: Recorder, fault) -> None:
    """Run ``PROCESSES`` bank clients for ``RUN_SECONDS`` while ``fault()`` runs; then one final read."""
    gen = bank.generator(random.Random(7))
    stop = asyncio.Event()
    next_process = PROCESSES

    async def worker(slot: int) -> None:
        nonlocal next_process
        process = slot
        async with Client(cluster.endpoints, timeout=OP_TIMEOUT, rng=random.Random(slot), sessions=bank.sessions) as client:
            while not stop.is_set():
                spec = next(gen)
                recorder.record("invoke", process, spec.f, spec.value)
                try:
                    outcome = await asyncio.wait_for(bank.invoke(client, spec.f, spec.value), OP_TIMEOUT + 2)
                except asyncio.TimeoutError:
                    recorder.record("info", process, spec.f, spec.value, error="timeout")
                else:
                    value = outcome.value if outcome.type == "ok" else spec.value
                    recorder.record(outcome.type, process, spec.f, value, **outcome.extra)
                    if outcome.type != "info":
                        continue
                process, next_process = next_process, next_process + 1  # it may still be in flight

    workers = [asyncio.create_task(worker(i)) for i in range(PROCESSES)]
    try:
        await asyncio.gather(fault(), asyncio.sleep(RUN_SECONDS))
    finally:
        stop.set()
        await asyncio.gather(*workers)
    await cluster.wait_for_group_leaders(60)
    async with Client(cluster.endpoints, timeout=10.0, sessions=bank.sessions) as client:
        for attempt in range(3):
            process = next_process + attempt
            recorder.record("invoke", process, "read", None)
            outcome = await bank.invoke(client, "read", None)
            recorder.record(outcome.type, process, "read", outcome.value, **outcome.extra)
            if outcome.type == "ok":
                return


async def test_bank_across_groups_survives_killing_the_coordinator_groups_leader(tmp_path):
    cluster = await start_with_retries(lambda: plan_groups(3, 3, tmp_path, apps=("kv",), log_level="warning",
                                                           extra_args=("--fsync", "never")))
    async with cluster:
        leaders = await cluster.wait_for_group_leaders()
        shards = ShardMap.load(tmp_path / "shards.json")
        bank = BankWorkload()
        groups = [shards.group_of(account_key(i)) for i in range(bank.accounts)]
        assert set(groups) == {"g1", "g2", "g3"}  # the accounts are spread over every group
        coordinator = groups[0]
        recorder = Recorder()
        killed: dict[str, str] = {}

        async def kill_and_restart() -> None:
            await asyncio.sleep(3.0)
            victim = await cluster.group_leader(coordinator) or leaders[coordinator]
            recorder.record("info", "nemesis", "kill", [victim])
            await cluster.kill(victim)
            await asyncio.sleep(3.0)
            await cluster.restart(victim)
            recorder.record("info", "nemesis", "restart", [victim])
            killed["name"] = victim

        try:
            await run_bank(cluster, bank, recorder, kill_and_restart)
        finally:
            with contextlib.suppress(Exception):
                cluster.copy_logs(tmp_path / "logs")
        history = recorder.ops
        checks = bank.check(history)
        result = checks["bank"]
        print(result.summary(), checks["stats"].to_dict()["by_f"], f"{len(history)} ops")  # shown with -s
        assert result.valid is Verdict.VALID, result.summary()
        assert "name" in killed
        # It did what it claims: transfers committed across groups, before and after the kill, and
        # reads of every account (on all three groups) succeeded.
        ok_transfers = [op for op in history if op.f == "transfer" and op.type == "ok"]
        crossing = [op for op in ok_transfers if groups[op.value[0]] != groups[op.value[1]]]
        assert len(crossing) >= 5 and result.reads >= 5, result.summary()
        kill_index = next(op.index for op in history if op.f == "kill")
        assert any(op.index > kill_index for op in crossing), "no cross-group transfer committed after the kill"
        assert result.final is not None and sum(result.final_balances) == sum(bank.init)
