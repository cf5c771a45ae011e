"""Typed clients of the counter app: ``CounterClient`` (async) and ``SyncCounterClient``."""

from __future__ import annotations

from typing import Any, Sequence

from apps.counter.machine import check_name, is_int64
from consensus.client import Client, SyncClient
from consensus.errors import InvalidRequest

_NO_EXPECT = object()


def _check_int(value: Any, what: str) -> int:
    if not is_int64(value):
        raise InvalidRequest(f"{what} must be a 64-bit signed integer, not {value!r}")
    return int(value)


class CounterClient:
    """Read and change counters. Takes a ``Client`` or the arguments to build one."""

    def __init__(self, client: Client | Sequence[str] | str, **options: Any) -> None:
        self._owned = not isinstance(client, Client)
        self.client = Client(client, **options) if not isinstance(client, Client) else client

    async def get(self, name: str, *, consistency: str = "linearizable", timeout: float | None = None) -> int:
        """Return the value of counter ``name`` (0 if never written)."""
        check_name(name)
        if consistency not in ("linearizable", "stale"):
            raise InvalidRequest("consistency is 'linearizable' or 'stale'")
        response = await self.client.request(
            "GET", f"/v1/counters/{name}", params={"consistency": consistency}, leader=consistency == "linearizable", timeout=timeout
        )
        return int(response.body["value"])

    async def incr(self, name: str, by: int = 1, *, idempotency_key: str | None = None, timeout: float | None = None) -> int:
        """Add ``by`` to counter ``name``; return the new value. Exactly once, also when retried."""
        check_name(name)
        body = {"by": _check_int(by, "by")}
        response = await self.client.request(
            "POST", f"/v1/counters/{name}/incr", body=body, write=True, idempotency_key=idempotency_key, timeout=timeout
        )
        return int(response.body["value"])

    async def set(
        self, name: str, value: int, *, expect: Any = _NO_EXPECT, idempotency_key: str | None = None, timeout: float | None = None
    ) -> int:
        """Set counter ``name``; with ``expect``, only if its value is ``expect`` (else ``Rejected``,
        whose ``detail["value"]`` is the current value)."""
        check_name(name)
        body = {"value": _check_int(value, "value")}
        if expect is not _NO_EXPECT:
            body["expect"] = _check_int(expect, "expect")
        response = await self.client.request(
            "PUT", f"/v1/counters/{name}", body=body, write=True, idempotency_key=idempotency_key, timeout=timeout
        )
        return int(response.body["value"])

    async def compare_and_set(self, name: str, expect: int, value: int, **kwargs: Any) -> int:
        return await self.set(name, value, expect=expect, **kwargs)

    async def close(self) -> None:
        if self._owned:
            await self.client.close()

    async def __aenter__(self) -> "CounterClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


class SyncCounterClient:
    """``CounterClient``, blocking."""

    def __init__(self, endpoints: Sequence[str] | str, **options: Any) -> None:
        self._sync = SyncClient(endpoints, **options)
        self._counters = CounterClient(self._sync.client)

    def get(self, name: str, **kwargs: Any) -> int:
        return self._sync.run(self._counters.get(name, **kwargs))

    def incr(self, name: str, by: int = 1, **kwargs: Any) -> int:
        return self._sync.run(self._counters.incr(name, by, **kwargs))

    def set(self, name: str, value: int, **kwargs: Any) -> int:
        return self._sync.run(self._counters.set(name, value, **kwargs))

    def compare_and_set(self, name: str, expect: int, value: int, **kwargs: Any) -> int:
        return self._sync.run(self._counters.compare_and_set(name, expect, value, **kwargs))

    def close(self) -> None:
        self._sync.close()

    def __enter__(self) -> "SyncCounterClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
