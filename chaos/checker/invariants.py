"""Invariant checkers: counter bounds, lock safety, set, stats, latency and rate series.

Each is a pure function of a history (a list of :class:`~chaos.history.Op` in real-time
order). Real-time order is the order of the list: "A before B" means A's completion is
recorded before B's invoke. Each returns a frozen result with ``valid`` and ``to_dict()``.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Sequence

from ..history.ops import FAIL, INFO, INVOKE, OK, Call, Op, as_ops, pair
from ..verdict import Verdict

__all__ = ["CounterResult", "LockResult", "SetResult", "Stats", "check_counter", "check_lock", "check_set",
           "stats", "latency_series", "rate_series", "quantiles"]


def _as_dict(result: Any) -> dict[str, Any]:
    out: dict[str, Any] = _jsonable(asdict(result))
    return out


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Verdict):
        return obj.json()
    if isinstance(obj, Op):
        return obj.to_dict()
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [_jsonable(x) for x in obj]
    return obj


def _word(verdict: Verdict) -> str:
    return verdict.value if verdict is not Verdict.INVALID else "INVALID"


def _where(op: Any) -> str:
    if isinstance(op, Op):
        return f"process {op.process} {op.f} {op.value!r}" + (f" (line {op.line})" if op.line else "")
    return repr(op)


# ---------------------------------------------------------------- counter


@dataclass(frozen=True)
class CounterResult:
    """``errors`` lists reads outside ``[lower, upper]`` as dicts with the read op and its bounds."""

    valid: Verdict
    reads: int
    errors: tuple[dict[str, Any], ...]

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return _as_dict(self)

    def summary(self) -> str:
        text = f"{_word(self.valid)} ({self.reads} reads" + (f", {len(self.errors)} out of bounds)" if self.errors else ")")
        for e in self.errors[:3]:
            where = f" (line {e['op'].line})" if isinstance(e.get("op"), Op) and e["op"].line else ""
            text += f"\n    read {e.get('value')} outside [{e.get('lower')}, {e.get('upper')}]{where}"
        return text


def check_counter(history: Sequence[Any], *, init: int = 0) -> CounterResult:
    """Check that every ok read lies between the acknowledged and the attempted sum of adds.

    The lower bound counts adds acknowledged (``ok``) before the read was invoked; the upper
    bound counts adds invoked (and not failed) before the read completed. Assumes
    non-negative increments (``add`` with value n, default 1).
    """
    calls = pair(history)
    # Positions: each add contributes to the lower bound from its completion and to the upper
    # bound from its invoke; reads are checked against sums over positions.
    acked: list[tuple[int, int]] = []
    attempted: list[tuple[int, int]] = []
    for c in calls:
        if c.f in ("add", "increment", "inc"):
            delta = 1 if c.input is None else c.input
            attempted.append((c.call, delta))
            if not c.crashed:
                acked.append((c.ret or 0, delta))
    acked.sort()
    attempted.sort()

    def prefix(items: list[tuple[int, int]]) -> tuple[list[int], list[int]]:
        positions, sums, total = [], [], 0
        for pos, delta in items:
            total += delta
            positions.append(pos)
            sums.append(total)
        return positions, sums

    acked_pos, acked_sum = prefix(acked)
    tried_pos, tried_sum = prefix(attempted)

    def total_before(positions: list[int], sums: list[int], pos: int) -> int:
        n = bisect_left(positions, pos)
        return init + (sums[n - 1] if n else 0)

    errors, reads = [], 0
    for c in calls:
        if c.f != "read" or c.crashed:
            continue
        reads += 1
        lower = total_before(acked_pos, acked_sum, c.call)
        upper = total_before(tried_pos, tried_sum, c.ret or 0)
        if not isinstance(c.output, int) or not lower <= c.output <= upper:
            errors.append({"op": c.completion, "value": c.output, "lower": lower, "upper": upper})
    return CounterResult(valid=Verdict.of(not errors), reads=reads, errors=tuple(errors))


# ---------------------------------------------------------------- lock


@dataclass(frozen=True)
class LockResult:
    """``overlaps`` are pairs of holds that overlap in real time; ``token_errors`` are acquires
    whose fencing token is not greater than a token granted before they began."""

    valid: Verdict
    acquires: int
    overlaps: tuple[dict[str, Any], ...]
    token_errors: tuple[dict[str, Any], ...]

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return _as_dict(self)

    def summary(self) -> str:
        text = f"{_word(self.valid)} ({self.acquires} acquires, {len(self.overlaps)} overlapping holds, " \
               f"{len(self.token_errors)} token errors)"
        for o in self.overlaps[:3]:
            text += f"\n    two holders at once: {_where(o['first'])} and {_where(o['second'])}"
        for t in self.token_errors[:3]:
            text += f"\n    token {t['token']} not above earlier tokens: {_where(t['op'])}"
        return text


def _token(value: Any) -> Any:
    if isinstance(value, dict):
        return value.get("token")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def check_lock(history: Sequence[Any], *, end: int | None = None) -> LockResult:
    """Check mutual exclusion and fencing tokens.

    A process certainly holds the lock from its acquire's ``ok`` until it invokes ``release``
    (or the end of the history if it never does). Two such holds must not overlap. An ok
    acquire's value (an int, or a map with ``token``) is its fencing token: it must exceed the
    token of every acquire that completed before it was invoked.
    """
    calls = pair(history)
    horizon = (max((c.ret or c.call) for c in calls) + 1 if calls else 0) if end is None else end
    holds: list[tuple[int, int, Call]] = []
    open_by_process: dict[Any, Call] = {}
    for c in sorted(calls, key=lambda c: c.call):
        if c.f == "acquire" and not c.crashed:
            open_by_process[c.process] = c
        elif c.f == "release" and c.process in open_by_process:
            held = open_by_process.pop(c.process)
            holds.append((held.ret or 0, c.call, held))
    holds.extend((c.ret or 0, horizon, c) for c in open_by_process.values())
    holds.sort(key=lambda h: h[0])
    overlaps = []
    latest: tuple[int, int, Call] | None = None  # the hold reaching furthest so far
    for hold in holds:
        if latest is not None and hold[0] < latest[1]:
            overlaps.append({"first": latest[2].completion, "second": hold[2].completion,
                             "first_held_until": latest[1], "second_held_from": hold[0]})
        if latest is None or hold[1] > latest[1]:
            latest = hold
    token_errors = []
    acquired = sorted((c for c in calls if c.f == "acquire" and not c.crashed), key=lambda c: c.ret or 0)
    done_pos = [c.ret or 0 for c in acquired]
    best_before: list[Any] = []
    best: Any = None
    for c in acquired:
        token = _token(c.output)
        if token is not None and (best is None or token > best):
            best = token
        best_before.append(best)
    seen: dict[Any, Call] = {}
    for c in sorted(acquired, key=lambda c: c.call):
        token = _token(c.output)
        if token is None:
            continue
        n = bisect_left(done_pos, c.call)
        prior = best_before[n - 1] if n else None
        if prior is not None and token <= prior:
            token_errors.append({"op": c.completion, "token": token, "earlier_token": prior})
        elif token in seen:
            token_errors.append({"op": c.completion, "token": token, "duplicate_of": seen[token].completion})
        seen.setdefault(token, c)
    return LockResult(valid=Verdict.of(not overlaps and not token_errors), acquires=len(acquired),
                      overlaps=tuple(overlaps), token_errors=tuple(token_errors))


# ---------------------------------------------------------------- set


@dataclass(frozen=True)
class SetResult:
    """Set outcomes, each a sorted tuple of elements.

    ``lost``: known present (add acknowledged, or seen by a read) before the final read began,
    yet missing from it. ``unexpected``: read but never added. ``never_read``: acknowledged but
    no read began after the acknowledgement. ``stale``: missing from some read that began after
    they were known present, but present again in the final read. ``recovered``: crashed adds
    that reads saw.
    """

    valid: Verdict
    attempted: int
    acknowledged: int
    lost: tuple[Any, ...]
    unexpected: tuple[Any, ...]
    never_read: tuple[Any, ...]
    stale: tuple[Any, ...]
    recovered: tuple[Any, ...]

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return _as_dict(self)

    def summary(self) -> str:
        counts = ", ".join(f"{len(getattr(self, name))} {name.replace('_', ' ')}"
                           for name in ("lost", "unexpected", "never_read", "stale", "recovered"))
        text = f"{_word(self.valid)} ({self.attempted} attempted, {self.acknowledged} acknowledged; {counts})"
        for name in ("lost", "unexpected"):
            if getattr(self, name):
                text += f"\n    {name}: {', '.join(map(repr, getattr(self, name)[:10]))}"
        return text


def _order(items: Iterable[Any]) -> tuple[Any, ...]:
    """Return ``items`` sorted in a stable order for any element types."""
    return tuple(sorted(items, key=repr))


def _key(x: Any) -> Any:
    return tuple(x) if isinstance(x, list) else x


def check_set(history: Sequence[Any]) -> SetResult:
    """Check a set history of ``add x`` and ``read -> [elements]`` operations."""
    calls = pair(history)
    adds = [c for c in calls if c.f == "add"]
    reads = sorted((c for c in calls if c.f == "read" and not c.crashed), key=lambda c: c.call)
    attempted = {_key(c.input) for c in adds}
    acked = {_key(c.input): c.ret for c in adds if not c.crashed}
    crashed = {_key(c.input) for c in adds if c.crashed}
    known: dict[Any, int] = dict(acked)  # element -> position from which it is certainly present
    seen: set[Any] = set()
    contents = []
    for r in sorted(reads, key=lambda c: c.ret or 0):
        elements = {_key(x) for x in (r.output or ())}
        contents.append((r, elements))
        seen |= elements
        for x in elements:
            if x not in known or (r.ret or 0) < known[x]:
                known[x] = r.ret or 0
    unexpected = seen - attempted
    lost, stale, never_read = set(), set(), set()
    final = max(reads, key=lambda c: c.call) if reads else None
    final_elements = {_key(x) for x in (final.output or ())} if final else set()
    for x, since in known.items():
        later = [(r, els) for r, els in contents if r.call > since]
        if not later:
            if x in acked:
                never_read.add(x)
            continue
        if final is not None and final.call > since and x not in final_elements:
            lost.add(x)
        elif any(x not in els for _, els in later):
            stale.add(x)
    return SetResult(valid=Verdict.of(not lost and not unexpected), attempted=len(attempted), acknowledged=len(acked),
                     lost=_order(lost), unexpected=_order(unexpected), never_read=_order(never_read),
                     stale=_order(stale), recovered=_order(crashed & seen))


# ---------------------------------------------------------------- stats, latency, rate


@dataclass(frozen=True)
class Stats:
    """Counts of ok / fail / info completions per ``f``; invalid if some ``f`` never succeeded."""

    valid: Verdict
    by_f: dict[str, dict[str, int]]
    total: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return _as_dict(self)

    def summary(self) -> str:
        never = [f for f, c in self.by_f.items() if not c.get(OK)]
        return _word(self.valid) + (f" (never succeeded: {', '.join(never)})" if never else "")


def _completions(history: Iterable[Any]) -> tuple[list[tuple[Op | None, Op]], list[Op]]:
    """Pair each client completion with its process's invoke; also return invokes never completed."""
    pending: dict[Any, Op] = {}
    pairs: list[tuple[Op | None, Op]] = []
    for op in as_ops(history):
        if not op.is_client:
            continue
        if op.type == INVOKE:
            pending[op.process] = op
        else:
            pairs.append((pending.pop(op.process, None), op))
    return pairs, list(pending.values())


def stats(history: Iterable[Any]) -> Stats:
    """Count completions per ``f`` (never-completed invokes count as ``info``)."""
    by_f: dict[str, dict[str, int]] = {}
    pairs, never_completed = _completions(history)
    for _, op in pairs:
        counts = by_f.setdefault(op.f, {OK: 0, FAIL: 0, INFO: 0})
        counts[op.type] += 1
    for op in never_completed:
        by_f.setdefault(op.f, {OK: 0, FAIL: 0, INFO: 0})[INFO] += 1
    total = {t: sum(c[t] for c in by_f.values()) for t in (OK, FAIL, INFO)}
    return Stats(valid=Verdict.of(all(c[OK] > 0 for c in by_f.values())), by_f=by_f, total=total)


def latency_series(history: Iterable[Any]) -> list[dict[str, Any]]:
    """Return one point per completed op: invoke ``time`` (ns), ``latency`` (ns), ``f``, ``type``.

    Ops without times are skipped; crashed ops have no latency and are not included.
    """
    points = []
    for start, op in _completions(history)[0]:
        if start is None or start.time is None or op.time is None:
            continue
        points.append({"time": start.time, "latency": op.time - start.time, "f": op.f, "type": op.type})
    return points


def rate_series(history: Iterable[Any], *, bucket_ns: int = 1_000_000_000) -> list[dict[str, Any]]:
    """Return completions per second in ``bucket_ns`` buckets, per ``f`` and ``type``."""
    counts: dict[tuple[int, str, str], int] = {}
    for op in as_ops(history):
        if not op.is_client or op.type == INVOKE or op.time is None:
            continue
        key = (op.time // bucket_ns, op.f, op.type)
        counts[key] = counts.get(key, 0) + 1
    scale = 1_000_000_000 / bucket_ns
    return [{"time": b * bucket_ns, "f": f, "type": t, "rate": n * scale} for (b, f, t), n in sorted(counts.items())]


def quantiles(values: Sequence[float], qs: Sequence[float] = (0.5, 0.95, 0.99, 1.0)) -> dict[float, float]:
    """Return the nearest-rank quantiles of ``values`` (empty dict for no values)."""
    if not values:
        return {}
    ordered = sorted(values)
    return {q: ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.999999) - 1))] for q in qs}
