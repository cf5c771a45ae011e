"""Typed clients of the lock service: ``LockClient`` (async) and ``SyncLockClient``.

::

    async with LockClient("http://127.0.0.1:8001") as locks:
        async with locks.lock("jobs", ttl=10) as token:    # keeps the lease alive meanwhile
            store.write(token, "done")                      # fence every write with the token

``lock()`` raises ``LeaseLost`` in the body's task when the lease may be gone (the session
expired, or no keepalive was confirmed for a whole TTL): the body must stop touching the resource.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Sequence

from apps.locks.machine import MODES, check_name
from consensus.client import Client, SyncClient
from consensus.errors import ConsensusError, InvalidRequest, LockHeld, SessionNotFound

MAX_WAIT_SECONDS = 60.0  # one acquire request waits at most this long (LockLimits.max_wait_ms)


@dataclass(frozen=True)
class Session:
    id: str
    ttl_ms: int


@dataclass(frozen=True)
class Grant:
    name: str
    mode: str
    session: str
    token: int


@dataclass(frozen=True)
class LockState:
    holders: list[dict[str, Any]]
    waiters: list[dict[str, Any]]


class LeaseLost(ConsensusError):
    """The lock's lease may be gone: its session expired, or no keepalive got through for a TTL."""

    code = "lease_lost"
    definite = True


def _check_mode(mode: str) -> str:
    if mode not in MODES:
        raise InvalidRequest("mode is 'exclusive' or 'shared'")
    return mode


def _wait_ms(wait: float | None) -> int:
    if wait is None or not 0 <= wait <= MAX_WAIT_SECONDS:
        raise InvalidRequest(f"wait must be from 0 to {MAX_WAIT_SECONDS:g} seconds")
    return int(wait * 1000)


class LockClient:
    """Sessions and locks. Takes a ``Client`` or the arguments to build one."""

    def __init__(self, client: Client | Sequence[str] | str, **options: Any) -> None:
        self._owned = not isinstance(client, Client)
        self.client = Client(client, **options) if not isinstance(client, Client) else client

    # -- sessions ------------------------------------------------------------------------------

    async def open_session(self, ttl_ms: int = 10000, *, timeout: float | None = None) -> Session:
        """Open a session whose lease runs ``ttl_ms`` (renew it with ``keepalive``)."""
        answer = await self.client.request("POST", "/v1/sessions", body={"ttl_ms": int(ttl_ms)}, write=True, timeout=timeout)
        return Session(answer.body["id"], int(answer.body["ttl_ms"]))

    async def keepalive(self, session_id: str, *, timeout: float | None = None) -> Session:
        """Renew the lease: it runs the session's TTL from now. ``SessionNotFound`` once it expired."""
        check_name(session_id, "a session id")
        answer = await self.client.request("POST", f"/v1/sessions/{session_id}/keepalive", write=True, timeout=timeout)
        return Session(answer.body["id"], int(answer.body["ttl_ms"]))

    async def close_session(self, session_id: str, *, timeout: float | None = None) -> list[str]:
        """Close the session; return the names of the locks that released."""
        check_name(session_id, "a session id")
        answer = await self.client.request("DELETE", f"/v1/sessions/{session_id}", write=True, timeout=timeout)
        return list(answer.body["released"])

    async def get_session(self, session_id: str, *, timeout: float | None = None) -> dict[str, Any]:
        """Return ``{"id", "ttl_ms", "expires_in_ms", "held"}`` (linearizable)."""
        check_name(session_id, "a session id")
        answer = await self.client.request("GET", f"/v1/sessions/{session_id}", timeout=timeout)
        return answer.body  # type: ignore[no-any-return]

    # -- locks -----------------------------------------------------------------------------------

    async def acquire(self, name: str, session_id: str, mode: str = "exclusive", wait_ms: int = 0, *,
                      timeout: float | None = None) -> Grant:
        """Acquire ``name`` for the session; wait up to ``wait_ms`` in the queue (``LockHeld`` after)."""
        check_name(name)
        check_name(session_id, "a session id")
        body = {"session": session_id, "mode": _check_mode(mode), "wait_ms": int(wait_ms)}
        budget = (timeout if timeout is not None else self.client.timeout) + wait_ms / 1000
        answer = await self.client.request("POST", f"/v1/locks/{name}/acquire", body=body, write=True, timeout=budget)
        b = answer.body
        return Grant(b["name"], b["mode"], b["session"], int(b["token"]))

    async def release(self, name: str, session_id: str, token: int, *, timeout: float | None = None) -> None:
        """Release a grant; ``LockNotHeld`` if the session does not hold ``name`` with ``token``."""
        check_name(name)
        check_name(session_id, "a session id")
        await self.client.request("POST", f"/v1/locks/{name}/release", body={"session": session_id, "token": int(token)},
                                  write=True, timeout=timeout)

    async def describe(self, name: str, *, timeout: float | None = None) -> LockState:
        """Return the lock's holders (``session``, ``mode``, ``token``) and waiters, in queue order."""
        check_name(name)
        answer = await self.client.request("GET", f"/v1/locks/{name}", timeout=timeout)
        return LockState(list(answer.body["holders"]), list(answer.body["waiters"]))

    def lock(self, name: str, mode: str = "exclusive", ttl: float = 10.0, wait: float | None = MAX_WAIT_SECONDS) -> "HeldLock":
        """``async with client.lock(name) as token:`` hold ``name`` for the body, keeping its lease alive.

        ``wait`` is how long to wait for the lock, up to 60 s (``LockHeld`` after); ``None`` waits
        as long as it takes (one 60 s wait after another). If the lease may be lost, the body's
        task gets ``LeaseLost``.
        """
        check_name(name)
        _check_mode(mode)
        if not 0 < ttl <= 600:
            raise InvalidRequest("ttl must be more than 0 and at most 600 seconds")
        if wait is not None:
            _wait_ms(wait)
        return HeldLock(self, name, mode, ttl, wait)

    async def close(self) -> None:
        if self._owned:
            await self.client.close()

    async def __aenter__(self) -> "LockClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


class HeldLock:
    """The context manager ``LockClient.lock`` returns: a session, a grant and a keepalive task."""

    def __init__(self, locks: LockClient, name: str, mode: str, ttl: float, wait: float | None) -> None:
        self.locks, self.name, self.mode, self.ttl, self.wait = locks, name, mode, ttl, wait
        self.session: Session | None = None
        self.grant: Grant | None = None
        self.lost: str | None = None  # why the lease is lost, once it is
        self.renewals = 0  # keepalives that got through
        self._body: asyncio.Task[Any] | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._body_done = False
        self._cancelled_body = False

    async def __aenter__(self) -> int:
        lease_start = time.monotonic()
        self.session = await self.locks.open_session(int(self.ttl * 1000))
        # The lease is kept alive from now on: waiting in the queue can take longer than a TTL.
        self._body = asyncio.current_task()
        self._keeper = asyncio.create_task(self._keep_alive(lease_start))
        try:
            self.grant = await self._acquire()
        except BaseException as exc:
            await self._stop_keeper(type(exc))
            await self._close_session()
            if self.lost is not None:
                raise LeaseLost(f"the lease was lost while waiting for {self.name!r}: {self.lost}") from exc
            raise
        return self.grant.token

    async def _acquire(self) -> Grant:
        assert self.session is not None
        if self.wait is not None:
            return await self.locks.acquire(self.name, self.session.id, self.mode, _wait_ms(self.wait))
        while True:  # wait as long as it takes, keeping the session alive between the waits
            try:
                return await self.locks.acquire(self.name, self.session.id, self.mode, int(MAX_WAIT_SECONDS * 1000))
            except LockHeld:
                await self.locks.keepalive(self.session.id)

    async def _keep_alive(self, confirmed: float) -> None:
        """Renew the lease every ttl/3; declare it lost on expiry or after a TTL with no renewal.

        ``confirmed`` is when the last renewal that got through was *sent*: the lease surely ran
        until then plus the TTL (the server starts it no earlier), so that is how long it is safe
        to go on without hearing back.
        """
        assert self.session is not None
        period = self.ttl / 3
        next_at = confirmed + period
        while True:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            left = confirmed + self.ttl - time.monotonic()
            if left <= 0:
                return self._lose(f"no keepalive got through for {self.ttl:g}s")
            sent = time.monotonic()
            try:
                await self.locks.keepalive(self.session.id, timeout=left)
            except SessionNotFound:
                return self._lose(f"session {self.session.id} expired")
            except ConsensusError:
                next_at = time.monotonic() + min(period, 0.1)  # unknown: try again soon, until the lease runs out
                continue
            confirmed = sent
            self.renewals += 1
            next_at = sent + period

    def _lose(self, why: str) -> None:
        self.lost = why
        if self._body is not None and not self._body_done:
            self._cancelled_body = True
            self._body.cancel(f"lease lost: {why}")

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        await self._stop_keeper(exc_type)
        await self._release()
        if self.lost is not None:
            raise LeaseLost(f"the lease on {self.name!r} was lost: {self.lost}") from exc
        return False

    async def _stop_keeper(self, exc_type: Any) -> None:
        """Stop renewing; if we cancelled the body, take that cancellation back (it became LeaseLost)."""
        self._body_done = True  # from here on the keeper never cancels the body
        if self._keeper is not None:
            self._keeper.cancel()
        if self._cancelled_body:
            if exc_type is not asyncio.CancelledError:  # our cancel has not been delivered yet: take it now
                try:
                    await asyncio.sleep(0)
                except asyncio.CancelledError:
                    pass
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
        if self._keeper is not None:
            await asyncio.gather(self._keeper, return_exceptions=True)

    async def _release(self) -> None:
        """Release and close the session, best effort: an expired session released it already."""
        if self.grant is not None and self.lost is None:
            try:
                await self.locks.release(self.name, self.grant.session, self.grant.token, timeout=2.0)
            except ConsensusError:
                pass
        await self._close_session()

    async def _close_session(self) -> None:
        if self.session is not None:
            try:
                await self.locks.close_session(self.session.id, timeout=2.0)
            except ConsensusError:
                pass


class SyncLockClient:
    """``LockClient``, blocking (``lock()`` is the async client's: use ``LockClient`` for that)."""

    def __init__(self, endpoints: Sequence[str] | str, **options: Any) -> None:
        self._sync = SyncClient(endpoints, **options)
        self._locks = LockClient(self._sync.client)

    def open_session(self, ttl_ms: int = 10000, **kwargs: Any) -> Session:
        return self._sync.run(self._locks.open_session(ttl_ms, **kwargs))

    def keepalive(self, session_id: str, **kwargs: Any) -> Session:
        return self._sync.run(self._locks.keepalive(session_id, **kwargs))

    def close_session(self, session_id: str, **kwargs: Any) -> list[str]:
        return self._sync.run(self._locks.close_session(session_id, **kwargs))

    def get_session(self, session_id: str, **kwargs: Any) -> dict[str, Any]:
        return self._sync.run(self._locks.get_session(session_id, **kwargs))

    def acquire(self, name: str, session_id: str, mode: str = "exclusive", wait_ms: int = 0, **kwargs: Any) -> Grant:
        return self._sync.run(self._locks.acquire(name, session_id, mode, wait_ms, **kwargs))

    def release(self, name: str, session_id: str, token: int, **kwargs: Any) -> None:
        return self._sync.run(self._locks.release(name, session_id, token, **kwargs))

    def describe(self, name: str, **kwargs: Any) -> LockState:
        return self._sync.run(self._locks.describe(name, **kwargs))

    def close(self) -> None:
        self._sync.close()

    def __enter__(self) -> "SyncLockClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


__all__ = ["Grant", "HeldLock", "LeaseLost", "LockClient", "LockState", "Session", "SyncLockClient"]
