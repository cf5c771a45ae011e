"""A blocking wrapper: the async client runs on an event loop in a thread of its own."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Awaitable, Sequence, TypeVar

from consensus.client._client import Client, Response

T = TypeVar("T")


class SyncClient:
    """The ``Client`` API, blocking; usable from any thread, also from inside another event loop."""

    def __init__(self, endpoints: Sequence[str] | str, **options: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="raftwork-client", daemon=True)
        self._thread.start()
        self.client = Client(endpoints, **options)

    def run(self, coro: Awaitable[T]) -> T:
        """Run a coroutine of the wrapped client on its loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()  # type: ignore[arg-type]

    def request(self, method: str, path: str, **kwargs: Any) -> Response:
        return self.run(self.client.request(method, path, **kwargs))

    def status(self, endpoint: str | None = None, **kwargs: Any) -> dict[str, Any]:
        return self.run(self.client.status(endpoint, **kwargs))

    def statuses(self, **kwargs: Any) -> list[Any]:
        return self.run(self.client.statuses(**kwargs))

    def add_member(self, address: str, http: str | None = None, **kwargs: Any) -> dict[str, Any]:
        return self.run(self.client.add_member(address, http, **kwargs))

    def remove_member(self, address: str, **kwargs: Any) -> dict[str, Any]:
        return self.run(self.client.remove_member(address, **kwargs))

    def transfer_leader(self, to: str | None = None, **kwargs: Any) -> dict[str, Any]:
        return self.run(self.client.transfer_leader(to, **kwargs))

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self.run(self.client.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> "SyncClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
