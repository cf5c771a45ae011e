"""The lock workload: acquire one exclusive lock, write to a fenced register with the grant's
token, release; checked for mutual exclusion and fencing (Jepsen's lock tests).

Each process keeps a lock-service session (opened on its first acquire, kept alive every third
of its TTL in the background) and cycles ``acquire`` -> ``write [token, n]`` -> ``release
token``, one op at a time (a per-process generator). ``acquire`` does not wait (``wait_ms=0``):
a held lock is a definite ``fail`` (``lock_held``). ``write`` goes to a
:class:`apps.locks.FencedStore` shared by all processes (the resource the lock protects): a
refused token is a ``fail`` with error ``fenced``. A process whose op ended ``info`` closes its
session (which releases whatever it held) and never issues again.

Checked by the lock checker (no grant while another grant certainly holds the lock; tokens
increase; no certain holder fenced off) and for linearizability against the ``mutex`` model
(the lock free at first: ``init: false``), which leaves the writes out.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

from chaos.checker import check_linearizable, check_lock, make_model, stats
from chaos.history import Op
from chaos.verdict import CheckResult
from chaos.workloads.base import OpSpec, Outcome, Workload, classify_error, ok
from consensus.client import Client

LOCK = "chaos-lock"
TTL_MS = 10_000  # longer than any fault the nemesis holds, so a kept-alive lease is never lost to one
CLOSE_ATTEMPTS = 5  # closing an ended process's session, a second apart at most


@dataclass
class LockProcess:
    """One process's state: its session, the grant it holds, how many writes it made under it."""

    session: str | None = None
    token: int | None = None
    writes: int = 0
    keeper: asyncio.Task[None] | None = field(default=None, repr=False)


def lock_step(state: LockProcess, counter: Iterator[int], writes_per_grant: int = 1) -> OpSpec:
    """Return a process's next op from its state (pure but for the shared value counter)."""
    if state.token is None:
        return OpSpec("acquire")
    if state.writes < writes_per_grant:
        return OpSpec("write", [state.token, next(counter)])
    return OpSpec("release", state.token)


class LockWorkload(Workload):
    name = "lock"
    description = "acquire / fenced write / release of one exclusive lock; lock safety and the mutex model"
    model = "mutex"
    init = False
    apps = ("locks",)

    def __init__(self, ttl_ms: int = TTL_MS, writes_per_grant: int = 1, **options: Any) -> None:
        super().__init__(ttl_ms=ttl_ms, writes_per_grant=writes_per_grant, **options)
        from apps.locks import FencedStore

        if not (isinstance(writes_per_grant, int) and writes_per_grant >= 1):
            raise ValueError(f"writes_per_grant must be a positive integer, not {writes_per_grant!r}")
        self.ttl_ms = ttl_ms
        self.writes_per_grant = writes_per_grant
        self.store = FencedStore()
        self._values = itertools.count()

    def generator(self, rng: random.Random) -> Iterator[OpSpec]:
        return iter(())  # ops come from each process's state (next_op)

    def new_process(self) -> LockProcess:
        return LockProcess()

    def next_op(self, gen: Iterator[OpSpec], state: LockProcess) -> OpSpec:
        return lock_step(state, self._values, self.writes_per_grant)

    def closing_ops(self, state: Any) -> list[OpSpec]:
        """A process still holding the lock when the run ends releases it as a recorded op.

        Closing its session would release the lock too, but unrecorded: a grant to another
        process's acquire still in flight then looks, to the checkers, like a second holder.
        """
        if isinstance(state, LockProcess) and state.token is not None and state.session is not None:
            return [OpSpec("release", state.token)]
        return []

    async def invoke(self, client: Client, f: str, value: Any, state: Any = None) -> Outcome:
        from apps.locks import LockClient

        assert isinstance(state, LockProcess), "the lock workload needs its process state"
        locks = LockClient(client)
        if f == "acquire":
            return await self._acquire(locks, state)
        if f == "write":
            return self._write(state, value)
        if f == "release":
            return await self._release(locks, state, value)
        raise ValueError(f"lock workload has no op {f!r}")

    async def _acquire(self, locks: Any, state: LockProcess) -> Outcome:
        from consensus.errors import SessionNotFound

        if state.session is None:
            try:
                state.session = (await locks.open_session(self.ttl_ms)).id
            except Exception as exc:  # noqa: BLE001 - no session: the acquire was not sent
                return Outcome("fail", None, {**classify_error(exc).extra, "phase": "open_session"})
            state.keeper = asyncio.create_task(self._keep_alive(locks, state.session))
        try:
            grant = await locks.acquire(LOCK, state.session)
        except SessionNotFound as exc:  # the lease ran out: open a new session next time
            await self._drop_session(state)
            return classify_error(exc)
        except Exception as exc:  # noqa: BLE001
            return classify_error(exc)
        state.token, state.writes = grant.token, 0
        return ok({"token": grant.token})

    def _write(self, state: LockProcess, value: Any) -> Outcome:
        from apps.locks import StaleToken

        token, n = value
        state.writes += 1
        try:
            self.store.write(token, n)
        except StaleToken as exc:
            return Outcome("fail", None, {"error": "fenced", "highest": exc.highest})
        return ok([token, n])

    async def _release(self, locks: Any, state: LockProcess, token: int) -> Outcome:
        assert state.session is not None
        try:
            await locks.release(LOCK, state.session, token)
        except Exception as exc:  # noqa: BLE001 - lock_not_held is definite; unknown ends the process
            return classify_error(exc)
        finally:
            state.token, state.writes = None, 0
        return ok(token)

    async def _keep_alive(self, locks: Any, session: str) -> None:
        """Renew the lease every third of its TTL, sooner after a failed renewal, until cancelled."""
        period = self.ttl_ms / 3000
        while True:
            await asyncio.sleep(period)
            try:
                await locks.keepalive(session, timeout=period)
                period = self.ttl_ms / 3000
            except Exception:  # noqa: BLE001 - expired or unreachable: the next acquire finds out
                period = 0.2

    async def _drop_session(self, state: LockProcess) -> None:
        if state.keeper is not None:
            state.keeper.cancel()
            await asyncio.gather(state.keeper, return_exceptions=True)
        state.session, state.keeper = None, None

    async def end_process(self, client: Client, state: Any) -> None:
        """Stop the keepalives and close the session, which releases the lock if it still holds it."""
        from apps.locks import LockClient
        from consensus.errors import SessionNotFound

        if not isinstance(state, LockProcess) or state.session is None:
            return
        session = state.session
        await self._drop_session(state)
        locks = LockClient(client)
        for attempt in range(CLOSE_ATTEMPTS):
            try:
                await locks.close_session(session, timeout=2.0)
                return
            except SessionNotFound:
                return  # expired already: nothing is held
            except Exception:  # noqa: BLE001 - try again; the lease runs out by itself at worst
                await asyncio.sleep(min(1.0, 0.2 * 2 ** attempt))

    def final_ops(self, history: Sequence[Op]) -> list[OpSpec]:
        return []

    def check(self, history: Sequence[Op], *, timeout: float | None = None) -> dict[str, CheckResult]:
        linear = check_linearizable(history, make_model(self.model, init=self.init), timeout=timeout)
        return {"lock": check_lock(history), "linear": linear, "stats": stats(history)}
