"""State machines: the ``StateMachine`` protocol and the ``ReplicatedObject`` embedding API.

Threading model: every method of a state machine runs on the node's engine thread, one call at
a time, in log order. ``apply`` must be deterministic: no I/O, no clocks, no randomness; use
``ctx.time`` (stamped by the leader into the log entry) when time matters. Queries must not
change state.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import Any, Callable, Protocol, TypeVar, runtime_checkable

import msgpack

from consensus.errors import InvalidRequest


@dataclass(frozen=True)
class ApplyContext:
    """Where a command sits in the replicated history; identical on every replica.

    ``index`` is the Raft log index of the entry carrying the command. Several commands can share
    one entry (the node batches concurrent proposals), so ``seq`` numbers commands: it strictly
    increases across the whole history and is the right source for fencing tokens and revisions.
    ``time_ns`` is the leader's wall clock when it proposed the entry, never smaller than any
    earlier entry's time.
    """

    index: int
    term: int
    time_ns: int
    seq: int

    @property
    def time(self) -> float:
        """Leader-stamped time in seconds since the epoch."""
        return self.time_ns / 1e9


@runtime_checkable
class StateMachine(Protocol):
    """A deterministic machine driven by the Raft log.

    Optional hooks, for machines whose state depends on time (leases, waiters with deadlines):

    - ``wants_time(self) -> bool``: True while the machine holds state that expires. While any
      machine wants time, the leader appends a time entry at least every
      ``NodeConfig.time_granularity`` seconds, so leader-stamped time keeps moving in the log even
      when nobody writes. Must be a pure function of the replicated state.
    - ``advance_time(self, ctx) -> None``: called in log order, before the entry's commands, for
      every entry whose leader-stamped time is later than the previous entry's (or whose term is
      new), while ``wants_time()`` is True. Expire leases here: every replica expires them at the
      same point of the log. ``ctx.seq`` is a fresh sequence number for what this call grants.
    """

    def apply(self, command: dict[str, Any], ctx: ApplyContext) -> Any: ...

    def query(self, query: dict[str, Any]) -> Any: ...

    def snapshot(self) -> bytes: ...

    def restore(self, data: bytes) -> None: ...


F = TypeVar("F", bound=Callable[..., Any])


def command(fn: F) -> F:
    """Mark a ``ReplicatedObject`` method as a replicated command (it may change state)."""
    fn._raftwork_kind = "command"  # type: ignore[attr-defined]
    return fn


def query(fn: F) -> F:
    """Mark a ``ReplicatedObject`` method as a read-only query."""
    fn._raftwork_kind = "query"  # type: ignore[attr-defined]
    return fn


@functools.lru_cache(maxsize=None)
def _signature(fn: Callable[..., Any]) -> inspect.Signature:
    return inspect.signature(fn)


class ReplicatedObject:
    """Write a state machine as a plain class: state in attributes, methods marked.

    The state is every instance attribute whose name does not start with ``_``; it must be plain
    data (it is snapshotted with msgpack). Override ``snapshot``/``restore`` for anything else.
    Inside a ``@command``, ``self.context`` is the command's ``ApplyContext``.

    Commands travel as ``{"method": name, "args": [...], "kwargs": {...}}``.
    """

    _context: ApplyContext | None = None

    @classmethod
    def _methods(cls, kind: str) -> dict[str, Callable[..., Any]]:
        cache_name = f"_raftwork_{kind}s_{cls.__name__}"
        cached = cls.__dict__.get(cache_name)
        if cached is None:
            cached = {
                name: member
                for name, member in inspect.getmembers(cls, inspect.isfunction)
                if getattr(member, "_raftwork_kind", None) == kind
            }
            setattr(cls, cache_name, cached)
        return cached  # type: ignore[no-any-return]

    @classmethod
    def method_kind(cls, name: str) -> str | None:
        """Return "command", "query" or None for a method name."""
        if name in cls._methods("command"):
            return "command"
        if name in cls._methods("query"):
            return "query"
        return None

    @property
    def context(self) -> ApplyContext:
        if self._context is None:
            raise RuntimeError("context is only available inside a @command")
        return self._context

    def _resolve(self, kind: str, call: dict[str, Any], bind: bool = False) -> tuple[Callable[..., Any], list[Any], dict[str, Any]]:
        name = call.get("method")
        fn = self._methods(kind).get(name) if isinstance(name, str) else None
        if fn is None:
            raise InvalidRequest(f"{type(self).__name__} has no @{kind} named {name!r}")
        args = call.get("args", [])
        kwargs = call.get("kwargs", {})
        if not isinstance(args, (list, tuple)) or not isinstance(kwargs, dict):
            raise InvalidRequest("args must be a list and kwargs a dict")
        if bind:  # a full signature check costs ~30 us: done once, where the command enters
            try:
                _signature(fn).bind(self, *args, **kwargs)
            except TypeError as exc:
                raise InvalidRequest(f"bad arguments for {name}: {exc}") from None
        return fn, list(args), kwargs

    def validate(self, command: dict[str, Any]) -> None:
        """Check a command before it is proposed (so bad ones never reach the log)."""
        self._resolve("command", command, bind=True)

    def validate_query(self, query: dict[str, Any]) -> None:
        self._resolve("query", query)  # arguments are checked by the call itself (TypeError)

    def apply(self, command: dict[str, Any], ctx: ApplyContext) -> Any:
        fn, args, kwargs = self._resolve("command", command)
        self._context = ctx
        try:
            return fn(self, *args, **kwargs)
        finally:
            self._context = None

    def query(self, query: dict[str, Any]) -> Any:
        fn, args, kwargs = self._resolve("query", query)
        try:
            return fn(self, *args, **kwargs)
        except TypeError as exc:
            raise InvalidRequest(f"bad arguments for {query.get('method')}: {exc}") from None

    def snapshot(self) -> bytes:
        state = {k: v for k, v in vars(self).items() if not k.startswith("_")}
        return msgpack.packb(state, use_bin_type=True)  # type: ignore[no-any-return]

    def restore(self, data: bytes) -> None:
        for name in [k for k in vars(self) if not k.startswith("_")]:
            delattr(self, name)
        for name, value in msgpack.unpackb(data, raw=False).items():
            setattr(self, name, value)
