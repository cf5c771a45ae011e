"""Typed clients of the config store: ``KVClient`` (async) and ``SyncKVClient``.

::

    async with KVClient(["http://127.0.0.1:8001", "http://127.0.0.1:8002"]) as kv:
        put = await kv.put("app/db/host", "10.0.0.5")
        await kv.put("app/db/host", "10.0.0.6", prev_revision=put.revision)   # compare-and-swap
        result = await kv.txn([Compare.version("app/lock", "==", 0)], [Op.put("app/lock", "me")])
        async for event in kv.watch("app/", from_revision=put.revision):
            print(event.type, event.key, event.value, event.revision)

Errors are those of ``consensus.errors``: a failed compare-and-swap raises ``RevisionMismatch``
(definite) whose ``detail`` is the key's current kv as a dict (None if it does not exist); a full
quota raises ``QuotaExceeded``; a watch from a compacted revision raises ``Compacted`` (its
``oldest_revision`` is the first one still available).
"""

from __future__ import annotations

import asyncio
import urllib.parse
from dataclasses import dataclass
from typing import Any, AsyncIterator, Iterator, Sequence

from apps.kv import rules
from consensus.client import Client, SyncClient
from consensus.errors import Indeterminate, InvalidRequest, KeyNotFound, Unavailable

_CONSISTENCIES = ("linearizable", "stale")
WATCH_POLL_MS = 10_000  # how long one watch request waits on the server for an event
_WATCH_RETRY = (0.05, 1.0)  # first and largest pause before a watch request is sent again


@dataclass(frozen=True)
class KeyValue:
    key: str
    value: str
    create_revision: int
    mod_revision: int
    version: int

    @classmethod
    def from_json(cls, body: Any) -> "KeyValue | None":
        if body is None:
            return None
        return cls(body["key"], body["value"], int(body["create_revision"]), int(body["mod_revision"]), int(body["version"]))


@dataclass(frozen=True)
class PutResult:
    revision: int
    prev: KeyValue | None


@dataclass(frozen=True)
class DeleteResult:
    deleted: int  # 0 or 1
    revision: int


@dataclass(frozen=True)
class Page:
    kvs: list[KeyValue]
    more: bool
    revision: int  # the store revision the page reflects

    @property
    def last_key(self) -> str | None:
        """The ``after`` of the next page."""
        return self.kvs[-1].key if self.kvs else None


@dataclass(frozen=True)
class TxnResult:
    succeeded: bool
    responses: list[Any]  # per op: PutResult, DeleteResult, or KeyValue | None for a get
    revision: int


@dataclass(frozen=True)
class WatchEvent:
    type: str  # "put" or "delete"
    key: str
    value: str | None  # None for a delete
    revision: int


class Compare:
    """Build the compares of a transaction: ``Compare.value("k", "==", "v")``, ``Compare.version(...)``..."""

    @staticmethod
    def _make(key: str, target: str, op: str, value: Any) -> dict[str, Any]:
        compare = {"key": key, "target": target, "op": op, "value": value}
        rules.check_compare(compare, "compare")
        return compare

    @classmethod
    def value(cls, key: str, op: str, value: str) -> dict[str, Any]:
        return cls._make(key, "value", op, value)

    @classmethod
    def version(cls, key: str, op: str, version: int) -> dict[str, Any]:
        return cls._make(key, "version", op, version)

    @classmethod
    def create_revision(cls, key: str, op: str, revision: int) -> dict[str, Any]:
        return cls._make(key, "create_revision", op, revision)

    @classmethod
    def mod_revision(cls, key: str, op: str, revision: int) -> dict[str, Any]:
        return cls._make(key, "mod_revision", op, revision)


class Op:
    """Build the ops of a transaction: ``Op.put(k, v)``, ``Op.delete(k)``, ``Op.get(k)``."""

    @staticmethod
    def put(key: str, value: str) -> dict[str, Any]:
        return {"put": {"key": rules.check_key(key), "value": rules.check_value(value)}}

    @staticmethod
    def delete(key: str) -> dict[str, Any]:
        return {"delete": {"key": rules.check_key(key)}}

    @staticmethod
    def get(key: str) -> dict[str, Any]:
        return {"get": {"key": rules.check_key(key)}}


def key_path(key: str) -> str:
    """Return the URL path of ``key``, quoted whole ("/" too), so any key arrives as it is."""
    return "/v1/kv/" + urllib.parse.quote(rules.check_key(key), safe="")


def _check_consistency(consistency: str) -> str:
    if consistency not in _CONSISTENCIES:
        raise InvalidRequest("consistency is 'linearizable' or 'stale'")
    return consistency


def _response(op: dict[str, Any]) -> Any:
    if "put" in op:
        return PutResult(int(op["put"]["revision"]), KeyValue.from_json(op["put"]["prev"]))
    if "delete" in op:
        return DeleteResult(int(op["delete"]["deleted"]), int(op["delete"]["revision"]))
    return KeyValue.from_json(op["get"])


class KVClient:
    """Read, write, transact on and watch the config store. Takes a ``Client`` or the arguments to build one."""

    def __init__(self, client: Client | Sequence[str] | str, **options: Any) -> None:
        self._owned = not isinstance(client, Client)
        self.client = client if isinstance(client, Client) else Client(client, **options)

    async def get(self, key: str, consistency: str = "linearizable", *, timeout: float | None = None) -> KeyValue | None:
        """Return ``key``'s value and revisions, or None if it does not exist."""
        path = key_path(key)
        _check_consistency(consistency)
        try:
            response = await self.client.request("GET", path, params={"consistency": consistency},
                                                 leader=consistency == "linearizable", timeout=timeout)
        except KeyNotFound:
            return None
        return KeyValue.from_json(response.body)

    async def put(self, key: str, value: str, prev_revision: int | None = None, *, timeout: float | None = None) -> PutResult:
        """Write ``key``; with ``prev_revision``, only if its ``mod_revision`` is that (0: only if it
        does not exist), else ``RevisionMismatch``. Exactly once, also when retried."""
        body: dict[str, Any] = {"value": rules.check_value(value)}
        if prev_revision is not None:
            body["prev_revision"] = rules.check_revision(prev_revision, "prev_revision")
        response = await self.client.request("PUT", key_path(key), body=body, write=True, timeout=timeout)
        return PutResult(int(response.body["revision"]), KeyValue.from_json(response.body["prev"]))

    async def delete(self, key: str, prev_revision: int | None = None, *, timeout: float | None = None) -> DeleteResult:
        """Delete ``key`` (``deleted`` is 0 if it did not exist); with ``prev_revision`` as for ``put``."""
        params = None
        if prev_revision is not None:
            params = {"prev_revision": str(rules.check_revision(prev_revision, "prev_revision"))}
        response = await self.client.request("DELETE", key_path(key), params=params, write=True, timeout=timeout)
        return DeleteResult(int(response.body["deleted"]), int(response.body["revision"]))

    async def list(self, prefix: str = "", limit: int | None = None, after: str | None = None,
                   consistency: str = "linearizable", *, timeout: float | None = None) -> Page:
        """Return one page of the keys under ``prefix`` in key order, after the key ``after``
        (pass ``page.last_key`` to get the next page while ``page.more``)."""
        params = {"prefix": rules.check_prefix(prefix), "consistency": _check_consistency(consistency)}
        if limit is not None:
            if not rules.is_count(limit, 1, rules.MAX_PAGE):
                raise InvalidRequest(f"limit must be an integer from 1 to {rules.MAX_PAGE}")
            params["limit"] = str(limit)
        if after is not None:
            params["after"] = rules.check_prefix(after, "after")
        response = await self.client.request("GET", "/v1/kv", params=params, leader=consistency == "linearizable",
                                             timeout=timeout)
        body = response.body
        return Page([KeyValue.from_json(kv) for kv in body["kvs"]], bool(body["more"]), int(body["revision"]))  # type: ignore[misc]

    async def list_all(self, prefix: str = "", consistency: str = "linearizable") -> AsyncIterator[KeyValue]:
        """Yield every key under ``prefix``, page by page (each page is its own read)."""
        after = None
        while True:
            page = await self.list(prefix, after=after, consistency=consistency)
            for kv in page.kvs:
                yield kv
            if not page.more:
                return
            after = page.last_key

    async def txn(self, compare: Sequence[dict[str, Any]], success: Sequence[dict[str, Any]] = (),
                  failure: Sequence[dict[str, Any]] = (), *, timeout: float | None = None) -> TxnResult:
        """If every compare holds, run ``success``, else ``failure``: atomically, at one revision."""
        body = {"compare": list(compare), "success": list(success), "failure": list(failure)}
        rules.check_txn(body)
        response = await self.client.request("POST", "/v1/txn", body=body, write=True, timeout=timeout)
        result = response.body
        return TxnResult(bool(result["succeeded"]), [_response(op) for op in result["responses"]], int(result["revision"]))

    async def revision(self, *, timeout: float | None = None) -> int:
        """Return the store's current revision (a linearizable read)."""
        return (await self.list("", limit=1, timeout=timeout)).revision

    def watch(self, prefix: str = "", from_revision: int | None = None, *, poll_ms: int = WATCH_POLL_MS) -> "Watch":
        """Return an async iterator of the events under ``prefix`` from ``from_revision``
        (None: from the store's revision now, exclusive). See ``Watch``."""
        return Watch(self, rules.check_prefix(prefix), from_revision, poll_ms)

    async def close(self) -> None:
        if self._owned:
            await self.client.close()

    async def __aenter__(self) -> "KVClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


class Watch:
    """``async for event in kv.watch(prefix, from_revision=r)``: every event once, in revision order.

    It long-polls ``GET /v1/watch`` on any node and keeps ``next_revision``: the revision after
    the last whole answer. Events of one revision (a transaction) always come in one answer, so
    asking again from ``next_revision`` after a lost connection, a dead node or a leader change,
    on whichever node answers, gives no gap and no duplicate. Each node answers from what it has
    applied; a node that is behind answers later, never differently. ``Compacted`` is raised if
    ``next_revision`` left the retained window; other errors are retried.
    """

    def __init__(self, kv: KVClient, prefix: str, from_revision: int | None, poll_ms: int) -> None:
        if from_revision is not None and not rules.is_count(from_revision, 1):
            raise InvalidRequest("from_revision must be an integer from 1 to 2^63-1")
        if not rules.is_count(poll_ms, 1, 60_000):
            raise InvalidRequest("poll_ms must be from 1 to 60000")
        self.kv = kv
        self.prefix = prefix
        self.next_revision = from_revision
        self.poll_ms = poll_ms
        self._pending: list[WatchEvent] = []

    def __aiter__(self) -> "Watch":
        return self

    async def __anext__(self) -> WatchEvent:
        while not self._pending:
            self._pending = await self.poll()
        return self._pending.pop(0)

    async def poll(self) -> list[WatchEvent]:
        """Wait up to ``poll_ms`` for events; return them (maybe none) and move ``next_revision`` past them."""
        if self.next_revision is None:
            self.next_revision = await self.kv.revision() + 1
        params = {"prefix": self.prefix, "from_revision": str(self.next_revision), "timeout_ms": str(self.poll_ms)}
        pause = _WATCH_RETRY[0]
        while True:
            try:
                response = await self.kv.client.request("GET", "/v1/watch", params=params, leader=False,
                                                        timeout=self.poll_ms / 1000 + 5)
                break
            except (Unavailable, Indeterminate):  # no node answered in time: a read, so just ask again
                await asyncio.sleep(pause)
                pause = min(_WATCH_RETRY[1], pause * 2)
        body = response.body
        events = [WatchEvent(e["type"], e["key"], e["value"], int(e["revision"])) for e in body["events"]]
        self.next_revision = max(self.next_revision, int(body["next_revision"]))
        return events


class SyncKVClient:
    """``KVClient``, blocking."""

    def __init__(self, endpoints: Sequence[str] | str, **options: Any) -> None:
        self._sync = SyncClient(endpoints, **options)
        self._kv = KVClient(self._sync.client)

    def get(self, key: str, consistency: str = "linearizable", **kwargs: Any) -> KeyValue | None:
        return self._sync.run(self._kv.get(key, consistency, **kwargs))

    def put(self, key: str, value: str, prev_revision: int | None = None, **kwargs: Any) -> PutResult:
        return self._sync.run(self._kv.put(key, value, prev_revision, **kwargs))

    def delete(self, key: str, prev_revision: int | None = None, **kwargs: Any) -> DeleteResult:
        return self._sync.run(self._kv.delete(key, prev_revision, **kwargs))

    def list(self, prefix: str = "", limit: int | None = None, after: str | None = None, **kwargs: Any) -> Page:
        return self._sync.run(self._kv.list(prefix, limit, after, **kwargs))

    def txn(self, compare: Sequence[dict[str, Any]], success: Sequence[dict[str, Any]] = (),
            failure: Sequence[dict[str, Any]] = (), **kwargs: Any) -> TxnResult:
        return self._sync.run(self._kv.txn(compare, success, failure, **kwargs))

    def revision(self, **kwargs: Any) -> int:
        return self._sync.run(self._kv.revision(**kwargs))

    def watch(self, prefix: str = "", from_revision: int | None = None, **kwargs: Any) -> Iterator[WatchEvent]:
        """Yield events as ``KVClient.watch`` does, blocking between them."""
        watch = self._kv.watch(prefix, from_revision, **kwargs)
        while True:
            for event in self._sync.run(watch.poll()):
                yield event

    def close(self) -> None:
        self._sync.close()

    def __enter__(self) -> "SyncKVClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


__all__ = ["Compare", "DeleteResult", "KVClient", "KeyValue", "Op", "Page", "PutResult", "SyncKVClient", "TxnResult",
           "Watch", "WatchEvent"]
