"""Jepsen-shaped operations, and pairing them into calls.

A history is a list of :class:`Op` in real-time order (the order they were recorded). Each
client operation appears twice: an ``invoke`` and then its completion from the same process:

- ``ok``: it happened, and ``value`` is what the client saw;
- ``fail``: it definitely did not happen;
- ``info``: unknown; it may take effect at any time after its invoke, or never.

An invoke that never completes counts as ``info``. Ops whose process is not an integer (the
nemesis) are not client operations and are skipped by :func:`pair`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

__all__ = ["INVOKE", "OK", "FAIL", "INFO", "TYPES", "Op", "Call", "HistoryError", "pair", "is_client_op", "as_ops"]

INVOKE, OK, FAIL, INFO = "invoke", "ok", "fail", "info"
TYPES = (INVOKE, OK, FAIL, INFO)
_CORE = ("index", "time", "type", "process", "f", "value", "node")


class HistoryError(ValueError):
    """Raised for a history that cannot be read or paired; names the file and line when known."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None) -> None:
        self.reason = message
        self.file = file
        self.line = line
        super().__init__(self._render())

    def _render(self) -> str:
        where = self.file or "<history>"
        if self.line is not None:
            where += f":{self.line}"
        return f"{where}: {self.reason}"

    def located(self, file: str) -> "HistoryError":
        """Return a copy of this error that names ``file``."""
        return HistoryError(self.reason, file=file, line=self.line)


@dataclass(frozen=True, slots=True)
class Op:
    """One history event, shaped like a Jepsen op.

    ``time`` is nanoseconds since the test started (may be None for imported histories);
    ``line`` is where the op came from in its source file (not part of the op's data);
    ``extra`` holds any other fields (``error``, ``key``...).
    """

    index: int
    type: str
    process: Any
    f: str
    value: Any = None
    time: int | None = None
    node: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    line: int | None = field(default=None, compare=False)

    @property
    def is_client(self) -> bool:
        """Whether a client process (an int) issued it, not the nemesis."""
        return isinstance(self.process, int) and not isinstance(self.process, bool)

    def get(self, name: str, default: Any = None) -> Any:
        """Return an extra field (``error``, ``phase``...), or ``default``."""
        return self.extra.get(name, default)

    def to_dict(self) -> dict[str, Any]:
        """Return the op as a JSON-ready dict in Jepsen's field order."""
        out: dict[str, Any] = {"index": self.index, "time": self.time, "type": self.type,
                               "process": self.process, "f": self.f, "value": self.value}
        if self.node is not None:
            out["node"] = self.node
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, index: int, line: int | None = None) -> "Op":
        """Build an op from a decoded JSON or EDN map (keys as plain strings)."""
        for name in ("type", "process", "f"):
            if name not in data:
                raise HistoryError(f"op has no {name!r}", line=line)
        kind = str(data["type"])
        if kind not in TYPES:
            raise HistoryError(f"unknown op type {kind!r}", line=line)
        idx = data.get("index", index)
        extra = {str(k): v for k, v in data.items() if k not in _CORE}
        return cls(index=idx if isinstance(idx, int) else index, type=kind, process=data["process"],
                   f=str(data["f"]), value=data.get("value"), time=data.get("time"),
                   node=data.get("node"), extra=extra, line=line)


def as_ops(history: Iterable[Op | Mapping[str, Any]]) -> list[Op]:
    """Return the history as :class:`Op` objects; dicts (as a harness records them) are converted."""
    return [item if isinstance(item, Op) else Op.from_dict(item, index=i) for i, item in enumerate(history)]


def is_client_op(op: Op) -> bool:
    """Return whether ``op`` comes from a client process (an int), not the nemesis."""
    return op.is_client


@dataclass(frozen=True, slots=True)
class Call:
    """A client operation: its invoke and completion paired.

    ``call`` and ``ret`` are positions in the history (real-time order); ``ret`` is None for
    an operation whose outcome is unknown (``info`` or never completed), which may take effect
    any time after ``call`` or never. ``output`` is the completion's value (None when unknown).
    """

    id: int
    process: Any
    f: str
    input: Any
    output: Any
    call: int
    ret: int | None
    invoke: Op
    completion: Op | None

    @property
    def crashed(self) -> bool:
        """Return whether the outcome is unknown."""
        return self.ret is None


def pair(ops: Iterable[Op | Mapping[str, Any]], *, file: str | None = None) -> list[Call]:
    """Return the completed (``ok``) and crashed calls of a history, in invoke order.

    ``fail`` calls are dropped: they did not happen. Raises :class:`HistoryError` for a
    completion without an invoke, or an invoke while the same process has one pending.
    """
    pending: dict[Any, tuple[int, Op]] = {}
    done: list[tuple[int, Op, Op | None, int | None]] = []
    position = 0
    for op in as_ops(ops):
        if not op.is_client:
            continue
        position += 1
        if op.type == INVOKE:
            if op.process in pending:
                first = pending[op.process][1]
                raise HistoryError(f"process {op.process} invokes again while its op from line "
                                   f"{first.line} is pending", file=file, line=op.line)
            pending[op.process] = (position, op)
            continue
        if op.process not in pending:
            raise HistoryError(f"{op.type} for process {op.process} without an invoke", file=file, line=op.line)
        start, invoke = pending.pop(op.process)
        if op.f != invoke.f:
            raise HistoryError(f"completion f {op.f!r} does not match its invoke {invoke.f!r} "
                               f"(line {invoke.line})", file=file, line=op.line)
        if op.type == OK:
            done.append((start, invoke, op, position))
        elif op.type == INFO:
            done.append((start, invoke, op, None))
    for start, invoke in pending.values():
        done.append((start, invoke, None, None))
    done.sort(key=lambda item: item[0])
    calls = []
    for i, (start, invoke, completion, ret) in enumerate(done):
        output = completion.value if (completion is not None and ret is not None) else None
        calls.append(Call(id=i, process=invoke.process, f=invoke.f, input=invoke.value, output=output,
                          call=start, ret=ret, invoke=invoke, completion=completion))
    return calls
