"""Toxic types: their attributes, their validation and what each does to one direction of a connection.

A toxic's ``pipe(stage)`` coroutine runs once per link (one direction of one connection) and is
cancelled whenever the link's chain changes; it is then run again, as Toxiproxy re-runs a stub.
The contract with :class:`chaos.toxiproxy.link.Stage`:

- ``await stage.get()`` returns the next chunk (and records it as ``stage.held``) or ``None``
  at end of stream; end of stream is sticky, so a re-run sees it again.
- ``stage.emit(chunk)`` hands a chunk on without blocking; ``stage.drop()`` forgets the held one;
  ``stage.close_output()`` ends the stream for the rest of the chain.
- Whatever is in ``stage.held`` when the task is cancelled is forwarded, so no data is lost on
  an update or removal (except by ``timeout``, which drops all data by design).

Every wait is a cancellable ``asyncio.sleep`` or channel read, so changing a chain never blocks.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from chaos.toxiproxy._gojson import format_float32, dumps

if TYPE_CHECKING:
    from chaos.toxiproxy.link import Stage

__all__ = ["ToxicType", "Toxic", "TOXIC_TYPES", "InvalidAttribute"]


class InvalidAttribute(ValueError):
    """An attribute value upstream Toxiproxy accepts but then crashes on; we answer 400 instead."""


@dataclass(frozen=True)
class ToxicType:
    """A registered toxic type: its Go struct name, attribute fields in JSON order, and behaviour."""

    name: str
    go_struct: str
    fields: dict[str, str]
    pipe: Callable[["Stage"], Awaitable[None]]
    validate: Callable[[dict[str, int]], None] = lambda attrs: None
    cleanup_closes: bool = False  # removing it closes the links it ran on (Go's CleanupToxic)


@dataclass
class Toxic:
    """One configured toxic on a proxy."""

    name: str
    type: ToxicType
    stream: str  # as the client wrote it, e.g. "UpStream"
    direction: str  # "upstream" or "downstream"
    toxicity: float
    attributes: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> str:
        """Return the toxic's JSON in Toxiproxy's key order."""
        return (
            f'{{"attributes":{dumps(self.attributes)},"name":{dumps(self.name)},"type":{dumps(self.type.name)},'
            f'"stream":{dumps(self.stream)},"toxicity":{format_float32(self.toxicity)}}}'
        )


async def noop_pipe(stage: "Stage") -> None:
    """Pass every chunk through unchanged."""
    while (chunk := await stage.get()) is not None:
        stage.emit(chunk)
    stage.close_output()


async def latency_pipe(stage: "Stage") -> None:
    """Release each chunk at arrival + latency ± jitter; sequential, so pipelined and never reordered."""
    latency, jitter = stage.attrs["latency"], stage.attrs["jitter"]
    loop = asyncio.get_running_loop()
    while (chunk := await stage.get()) is not None:
        delay = latency + (stage.rng.randrange(jitter * 2) - jitter if jitter > 0 else 0)
        due = chunk.ts + max(delay, 0) / 1000.0
        wait = due - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        chunk.ts = due  # stacked latency toxics add up
        stage.emit(chunk)
    stage.close_output()


async def bandwidth_pipe(stage: "Stage") -> None:
    """Limit throughput to ``rate`` KB/s (KB = 1000 bytes) in slices of at most 100 ms; rate 0 holds data."""
    rate = stage.attrs["rate"]  # bytes per millisecond
    loop = asyncio.get_running_loop()
    free_at = loop.time()
    while (chunk := await stage.get()) is not None:
        if rate == 0:
            await asyncio.Event().wait()  # hold until the toxic is updated or removed
        free_at = max(free_at, loop.time())
        data, slice_size = chunk.data, rate * 100
        while data:
            piece, data = data[:slice_size], data[slice_size:]
            free_at += len(piece) / (rate * 1000.0)
            wait = free_at - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            stage.emit(chunk.with_data(piece))
            stage.held = chunk.with_data(data) if data else None
    stage.close_output()


async def slow_close_pipe(stage: "Stage") -> None:
    """Pass data through, and delay the end of the stream by ``delay`` ms."""
    while (chunk := await stage.get()) is not None:
        stage.emit(chunk)
    if stage.attrs["delay"] > 0:
        await asyncio.sleep(stage.attrs["delay"] / 1000.0)
    stage.close_output()


async def timeout_pipe(stage: "Stage") -> None:
    """Drop all data; close the link ``timeout`` ms after starting, or never when ``timeout <= 0``."""
    timeout = stage.attrs["timeout"]
    try:
        async with asyncio.timeout(timeout / 1000.0 if timeout > 0 else None):
            while await stage.get() is not None:
                stage.drop()
    except TimeoutError:
        pass
    stage.close_output()


async def reset_peer_pipe(stage: "Stage") -> None:
    """Wait for the first chunk or end of stream, drop it, wait ``timeout`` ms, then close the link."""
    await stage.get()
    stage.drop()
    if stage.attrs["timeout"] > 0:
        await asyncio.sleep(stage.attrs["timeout"] / 1000.0)
    stage.close_output()


def slice_bounds(size: int, average: int, variation: int, rng: Any) -> list[int]:
    """Return cut offsets [0, ..., size] splitting ``size`` bytes into pieces of about average ± variation."""
    bounds = [0]
    pending = [(0, size)]  # a stack of ranges still to split, leftmost on top
    while pending:
        start, end = pending.pop()
        if end - start <= 1 or (end - start) - average <= variation:
            bounds.append(end)
            continue
        mid = start + (end - start) // 2
        if variation > 0:
            mid += rng.randrange(variation * 2) - variation
        mid = min(max(mid, start + 1), end - 1)  # always progress, unlike upstream
        pending.append((mid, end))
        pending.append((start, mid))
    return bounds


async def slicer_pipe(stage: "Stage") -> None:
    """Cut each chunk into pieces of about ``average_size ± size_variation`` bytes, ``delay`` µs apart."""
    average, variation, delay = stage.attrs["average_size"], stage.attrs["size_variation"], stage.attrs["delay"]
    while (chunk := await stage.get()) is not None:
        bounds = slice_bounds(len(chunk.data), average, variation, stage.rng)
        for i in range(1, len(bounds)):
            stage.emit(chunk.with_data(chunk.data[bounds[i - 1] : bounds[i]]))
            rest = chunk.data[bounds[i] :]
            stage.held = chunk.with_data(rest) if rest else None
            if rest and delay > 0:
                await asyncio.sleep(delay / 1e6)
    stage.close_output()


async def limit_data_pipe(stage: "Stage") -> None:
    """Forward at most ``bytes`` bytes over the toxic's life on this link, then close it."""
    limit = stage.attrs["bytes"]
    sent = stage.state.setdefault("bytes_transmitted", 0)
    while True:
        if sent >= limit and limit > 0:
            break
        chunk = await stage.get()
        if chunk is None:
            break
        remaining = max(limit - sent, 0)
        if remaining < len(chunk.data):
            chunk = chunk.with_data(chunk.data[:remaining])
        if chunk.data:
            stage.emit(chunk)
            sent += len(chunk.data)
            stage.state["bytes_transmitted"] = sent
        stage.drop()
        if limit - sent <= 0:
            break
    stage.close_output()


def _check_rate(attrs: dict[str, int]) -> None:
    if attrs["rate"] < 0:
        raise InvalidAttribute("bandwidth rate must not be negative")


def _check_slicer(attrs: dict[str, int]) -> None:
    if attrs["average_size"] <= 0:
        raise InvalidAttribute("slicer average_size must be positive")


TOXIC_TYPES: dict[str, ToxicType] = {
    t.name: t
    for t in (
        ToxicType("latency", "LatencyToxic", {"latency": "int64", "jitter": "int64"}, latency_pipe),
        ToxicType("bandwidth", "BandwidthToxic", {"rate": "int64"}, bandwidth_pipe, _check_rate),
        ToxicType("slow_close", "SlowCloseToxic", {"delay": "int64"}, slow_close_pipe),
        ToxicType("timeout", "TimeoutToxic", {"timeout": "int64"}, timeout_pipe, cleanup_closes=True),
        ToxicType("reset_peer", "ResetToxic", {"timeout": "int64"}, reset_peer_pipe),
        ToxicType(
            "slicer",
            "SlicerToxic",
            {"average_size": "int", "size_variation": "int", "delay": "int"},
            slicer_pipe,
            _check_slicer,
        ),
        ToxicType("limit_data", "LimitDataToxic", {"bytes": "int64"}, limit_data_pipe),
        ToxicType("noop", "NoopToxic", {}, noop_pipe),
    )
}
