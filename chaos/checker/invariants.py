"""Invariant checkers: counter bounds, lock safety, set, stats, latency and rate series.

Each is a pure function of a history (a list of :class:`~chaos.history.Op` in real-time
order). Real-time order is the order of the list: "A before B" means A's completion is
recorded before B's invoke. Each returns a frozen result with ``valid`` and ``to_dict()``.
"""

from __future__ import annotations

from bisect import bisect_left
import dataclasses
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
    """``overlaps``: a grant made while another grant certainly held the lock. ``token_errors``:
    acquires whose fencing token is not greater than a token granted before they began, or
    repeats one. ``fence_errors``: writes of a certain holder that the fenced register refused
    (so it had seen a later token while that holder still held the lock)."""

    valid: Verdict
    acquires: int
    definite_holds: int
    overlaps: tuple[dict[str, Any], ...]
    token_errors: tuple[dict[str, Any], ...]
    fence_errors: tuple[dict[str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return _as_dict(self)

    def summary(self) -> str:
        text = f"{_word(self.valid)} ({self.acquires} acquires, {self.definite_holds} certain holds, " \
               f"{len(self.overlaps)} overlapping grants, {len(self.token_errors)} token errors, " \
               f"{len(self.fence_errors)} fenced-off holders)"
        for o in self.overlaps[:3]:
            text += f"\n    two holders at once: {_where(o['first'])} and {_where(o['second'])}"
        for t in self.token_errors[:3]:
            text += f"\n    token {t['token']} not above earlier tokens: {_where(t['op'])}"
        for e in self.fence_errors[:3]:
            text += f"\n    a certain holder's write was fenced off: {_where(e['op'])}"
        return text


def _token(value: Any) -> Any:
    if isinstance(value, dict):
        return value.get("token")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _holds(calls: Sequence[Call]) -> tuple[list[Call], list[tuple[int, int, Call]]]:
    """Return the ok acquires, and the certain holds among them as ``(from, until, acquire)``.

    A hold is certain from the acquire's ``ok`` until its process invokes ``release``, when that
    release completes ``ok``: the service released the grant then, so it held it all along. A
    grant whose release failed, crashed or never came may have been lost earlier (its session
    expired) or kept later: only its acquire's own interval is known.
    """
    granted: list[Call] = []
    holds: list[tuple[int, int, Call]] = []
    current: dict[Any, Call] = {}
    for c in sorted(calls, key=lambda c: c.call):
        if c.f == "acquire" and not c.crashed:
            granted.append(c)
            current[c.process] = c
        elif c.f == "release" and c.process in current:
            held = current.pop(c.process)
            if not c.crashed:
                holds.append((held.ret or 0, c.call, held))
    return granted, holds


def _overlaps(granted: Sequence[Call], holds: list[tuple[int, int, Call]]) -> list[dict[str, Any]]:
    """Return the grants made while another grant certainly held the lock.

    Two certain holds must not overlap; and an acquire whose whole interval lies inside another
    grant's certain hold was granted while that one held the lock, certain hold or not.
    """
    found = []
    latest: tuple[int, int, Call] | None = None  # the certain hold reaching furthest so far
    for hold in sorted(holds, key=lambda h: h[0]):
        if latest is not None and hold[0] < latest[1]:
            found.append({"first": latest[2].completion, "second": hold[2].completion,
                          "first_held_until": latest[1], "second_held_from": hold[0]})
        if latest is None or hold[1] > latest[1]:
            latest = hold
    certain = {id(h[2]) for h in holds}
    for c in granted:
        if id(c) in certain:
            continue
        for start, until, other in holds:
            if start < c.call and (c.ret or 0) < until:
                found.append({"first": other.completion, "second": c.completion,
                              "first_held_until": until, "second_held_from": c.ret})
                break
    return found


def _token_errors(granted: Sequence[Call]) -> list[dict[str, Any]]:
    """Return grants whose token is not above every token granted before they were invoked, or repeats one."""
    errors = []
    acquired = sorted(granted, key=lambda c: c.ret or 0)
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
            errors.append({"op": c.completion, "token": token, "earlier_token": prior})
        elif token in seen:
            errors.append({"op": c.completion, "token": token, "duplicate_of": seen[token].completion})
        seen.setdefault(token, c)
    return errors


def _fence_errors(history: Sequence[Any], holds: list[tuple[int, int, Call]]) -> list[dict[str, Any]]:
    """Return fenced ``write`` ops refused (``fail`` with error ``fenced``) inside their own certain hold.

    Positions count client ops as :func:`~chaos.history.pair` does. The write's value is
    ``[token, v]``; a refusal means the register had seen a later token, granted to someone
    else while this holder certainly still held the lock.
    """
    spans = {_token(h[2].output): (h[0], h[1]) for h in holds}
    pending: dict[Any, tuple[int, Op]] = {}
    errors, position = [], 0
    for op in as_ops(history):
        if not op.is_client:
            continue
        position += 1
        if op.f != "write":
            continue
        if op.type == INVOKE:
            pending[op.process] = (position, op)
            continue
        start, invoke = pending.pop(op.process, (None, op))
        if op.type != FAIL or op.get("error") != "fenced" or start is None:
            continue
        token = invoke.value[0] if isinstance(invoke.value, (list, tuple)) and invoke.value else None
        span = spans.get(token)
        if span is not None and span[0] < start and position < span[1]:
            errors.append({"op": op, "token": token, "held_from": span[0], "held_until": span[1]})
    return errors


def check_lock(history: Sequence[Any]) -> LockResult:
    """Check mutual exclusion and fencing tokens of one exclusive lock (Jepsen's lock checks).

    Ops: ``acquire`` (ok value: the fencing token, an int or a map with ``token``), ``release``,
    and optionally ``write [token, v]`` to a fenced register (``fail`` with error ``fenced``
    when the register refused the token). Real time is the order of the history. Invalid when a
    grant is made while another grant certainly holds the lock (see :func:`_holds`), when a
    token is not above every token granted before its acquire began, and when a certain holder's
    write is fenced off.
    """
    ops = as_ops(history)
    calls = pair(ops)
    granted, holds = _holds(calls)
    overlaps, tokens, fenced = _overlaps(granted, holds), _token_errors(granted), _fence_errors(ops, holds)
    return LockResult(valid=Verdict.of(not overlaps and not tokens and not fenced), acquires=len(granted),
                      definite_holds=len(holds), overlaps=tuple(overlaps), token_errors=tuple(tokens),
                      fence_errors=tuple(fenced))


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


def check_set(history: Sequence[Any], *, keyed: bool = False) -> SetResult:
    """Check a set history of ``add x`` and ``read -> [elements]`` operations.

    With ``keyed``, the history holds independent sets (Jepsen's independent keys): values are
    ``[key, x]`` and ``[key, [elements]]``; each set is checked alone and the results are
    merged, elements named ``(key, x)``.
    """
    if keyed:
        return _check_sets(as_ops(history))
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


def _check_sets(ops: Sequence[Op]) -> SetResult:
    by_key: dict[Any, list[Op]] = {}
    pending: dict[Any, Any] = {}  # process -> the key of its pending invoke
    for op in ops:
        if not op.is_client:
            continue
        keyed = isinstance(op.value, (list, tuple)) and len(op.value) == 2
        if op.type == INVOKE:
            pending[op.process] = _key(op.value[0]) if keyed else None
        key = pending.get(op.process)
        # An ok read's value is [key, elements]; a fail or info completion may carry the invoke's value.
        by_key.setdefault(key, []).append(dataclasses.replace(op, value=op.value[1] if keyed else op.value))
    results = {key: check_set(key_ops) for key, key_ops in by_key.items()}

    def merged(name: str) -> tuple[Any, ...]:
        return _order((key, x) for key, r in results.items() for x in getattr(r, name))

    return SetResult(valid=Verdict.merge(r.valid for r in results.values()),
                     attempted=sum(r.attempted for r in results.values()),
                     acknowledged=sum(r.acknowledged for r in results.values()),
                     lost=merged("lost"), unexpected=merged("unexpected"), never_read=merged("never_read"),
                     stale=merged("stale"), recovered=merged("recovered"))


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
