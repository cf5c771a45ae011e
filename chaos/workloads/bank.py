"""The bank workload: transfers between accounts in transactions, and reads of every account.

Account ``i`` is the config-store key ``chaos-bank-<i>`` holding its balance as text. **An
absent key holds its initial balance** (``init``, one per account, stated in the history's
header and ``test.json``): the run needs no setup step that a fault could interrupt, and the
first transfer from an account compares its ``mod_revision`` with 0 (absent), as etcd does.
With several Raft groups the keys hash over the groups, so transfers and reads cross groups
(two-phase commit, docs/transactions.md); on one group each is one ``txn`` command.

- ``transfer [from, to, amount]``: read both accounts (two linearizable gets), refuse to
  overdraw (a definite ``fail``, ``insufficient``: nothing was sent), then one ``POST /v1/txn``:
  if both keys are still at the ``mod_revision`` read, put the new balances. A refused compare
  (someone moved either account since) is a definite ``fail``; errors are three-valued by
  :func:`~chaos.workloads.base.classify_error`.
- ``read -> [b0, b1, ...]``: one ``txn`` with a ``get`` of every account (a snapshot).

Checked by :func:`chaos.checker.check_bank` (every ok read sums to the total and has no negative
balance; the read after the final heal exists and sums to the total) and ``stats``.
"""

from __future__ import annotations

import random
from typing import Any, Iterator, Sequence

from chaos.checker import check_bank, stats
from chaos.history import Op
from chaos.verdict import CheckResult
from chaos.workloads.base import OpSpec, Outcome, Workload, classify_error, ok
from consensus.client import Client

READ_SHARE = 0.3  # of the ops during the run; the rest are transfers
MAX_AMOUNT = 5  # a transfer moves 1..MAX_AMOUNT


def account_key(account: int) -> str:
    return f"chaos-bank-{account}"


def bank_ops(rng: random.Random, *, accounts: int = 8) -> Iterator[OpSpec]:
    """Yield bank ops forever (transfers between two different accounts, and reads), a pure function of ``rng``."""
    while True:
        if rng.random() < READ_SHARE:
            yield OpSpec("read", None)
            continue
        source, target = rng.sample(range(accounts), 2)
        yield OpSpec("transfer", [source, target, rng.randint(1, MAX_AMOUNT)])


class BankWorkload(Workload):
    name = "bank"
    description = "transfers between accounts in transactions (2PC across groups), snapshot reads of every account"
    model = None  # checked by the bank checker, not for linearizability: `chaos analyze` re-checks a run
    apps = ("kv",)

    def __init__(self, accounts: int = 8, balance: int = 10, **options: Any) -> None:
        if not 2 <= accounts <= 64:
            raise ValueError("a bank has from 2 to 64 accounts")
        if balance < 0:
            raise ValueError("an account's initial balance is not negative")
        super().__init__(accounts=accounts, balance=balance, **options)
        if self.read_consistency != "linearizable":  # its reads are transactions: there is no stale one
            raise ValueError("the bank workload reads in transactions, which are always linearizable: "
                             "--read-consistency stale does not apply")
        self.accounts = accounts
        self.init: list[int] = [balance] * accounts

    def generator(self, rng: random.Random) -> Iterator[OpSpec]:
        return bank_ops(rng, accounts=self.accounts)

    def balance_of(self, account: int, found: Any) -> int:
        """Return an account's balance from what a get returned (None: absent, so its initial balance)."""
        return self.init[account] if found is None else int(found.value)

    async def invoke(self, client: Client, f: str, value: Any, state: Any = None) -> Outcome:
        from apps.kv import KVClient  # imported late: the workload's pure parts do not need the app

        kv = KVClient(client)
        try:
            if f == "read":
                return ok(await self.read_all(kv))
            if f == "transfer":
                return await self.transfer(kv, *value)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a fail or an info op
            return classify_error(exc)
        raise ValueError(f"bank workload has no op {f!r}")

    async def read_all(self, kv: Any) -> list[int]:
        from apps.kv import Op as TxnOp

        result = await kv.txn([], [TxnOp.get(account_key(i)) for i in range(self.accounts)])
        return [self.balance_of(i, found) for i, found in enumerate(result.responses)]

    async def transfer(self, kv: Any, source: int, target: int, amount: int) -> Outcome:
        from apps.kv import Compare
        from apps.kv import Op as TxnOp

        try:
            read = [await kv.get(account_key(a)) for a in (source, target)]
        except Exception as exc:  # noqa: BLE001 - a read changed nothing, whatever became of it
            return Outcome("fail", None, {**classify_error(exc).extra, "phase": "read"})
        have, other = self.balance_of(source, read[0]), self.balance_of(target, read[1])
        if have < amount:  # never overdraw: nothing is sent
            return Outcome("fail", None, {"error": "insufficient", "balance": have})
        revisions = [found.mod_revision if found is not None else 0 for found in read]
        result = await kv.txn([Compare.mod_revision(account_key(source), "==", revisions[0]),
                               Compare.mod_revision(account_key(target), "==", revisions[1])],
                              [TxnOp.put(account_key(source), str(have - amount)),
                               TxnOp.put(account_key(target), str(other + amount))])
        if not result.succeeded:  # an account moved since it was read: nothing changed
            return Outcome("fail", None, {"error": "compare_failed"})
        return ok([source, target, amount])

    def final_ops(self, history: Sequence[Op]) -> list[OpSpec]:
        return [OpSpec("read", None)]

    def check(self, history: Sequence[Op], *, timeout: float | None = None) -> dict[str, CheckResult]:
        return {"bank": check_bank(history, init=self.init), "stats": stats(history)}
