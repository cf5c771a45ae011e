"""Small state machines for tests and examples."""

from __future__ import annotations

from typing import Any

from consensus.errors import Rejected
from consensus.machine import ReplicatedObject, command, query


class KV(ReplicatedObject):
    """A key-value map with compare-and-set; every write returns the log position it landed at."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.applied = 0

    @command
    def put(self, key: str, value: Any) -> int:
        self.data[key] = value
        self.applied += 1
        return self.context.seq

    @command
    def incr(self, key: str, by: int = 1) -> int:
        value = int(self.data.get(key, 0)) + by
        self.data[key] = value
        self.applied += 1
        return value

    @command
    def cas(self, key: str, expect: Any, value: Any) -> Any:
        if self.data.get(key) != expect:
            raise Rejected("value mismatch", detail={"current": self.data.get(key)})
        self.data[key] = value
        self.applied += 1
        return value

    @command
    def boom(self, message: str = "boom") -> None:
        raise ValueError(message)

    @command
    def stamp(self) -> list[int]:
        ctx = self.context
        return [ctx.index, ctx.term, ctx.time_ns, ctx.seq]

    @query
    def get(self, key: str) -> Any:
        return self.data.get(key)

    @query
    def count(self) -> int:
        return self.applied


def default_machines() -> dict[str, ReplicatedObject]:
    return {"kv": KV()}
