"""Linearizability checking: Wing-Gong search with Lowe's cache, as Porcupine does it.

The history of each partition becomes a doubly linked list of call and return entries in
real-time order. The search walks the list from its head: a call entry whose operation can
be applied to the current state (and whose (linearized set, state) pair is new to the cache)
is linearized: both its entries are lifted out of the list and the walk restarts. Reaching a
return entry means the operation it closes cannot be linearized next, so the search
backtracks. The history is linearizable once every completed operation is linearized; crashed
operations have no return entry, so they may take effect at any point after their call, or
never.

Linearized sets are Python int bitmasks; the search is an iterative loop with an explicit
stack, written as a generator that yields every thousand steps so partitions can be
checked round-robin under one deadline (a slow key cannot hide an illegal one).

Three reductions keep verdicts but shrink the search: crashed operations that the model says
cannot matter are removed first (:attr:`Model.prunable`); crashed operations with the same
input are interchangeable, so they are only linearized in call order; and a legal read-only
operation (:attr:`Model.read_only`) is linearized without trying alternatives, since moving
it earlier changes no state.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Generator, Iterable, Mapping, Sequence

from ..history.ops import Call, Op, pair
from ..verdict import Verdict
from .models import _ATOMS, ILLEGAL, UNKNOWN, Model, ModelError, _freeze

__all__ = ["LinearizabilityResult", "PartitionResult", "check_linearizable", "check_calls", "VALID", "INVALID",
           "UNKNOWN_VERDICT"]

VALID, INVALID, UNKNOWN_VERDICT = Verdict.VALID, Verdict.INVALID, Verdict.UNKNOWN
_YIELD_EVERY = 1024  # search steps (new configurations and backtracks) between yields


@dataclass(frozen=True)
class PartitionResult:
    """The verdict for one partition (key) of a history.

    ``linearization`` is the longest linearizable prefix found, as call ids in the order they
    take effect (the whole linearization when valid), ``states`` the model state after each.
    ``failing`` is, when invalid, the completed call that could not be linearized after that
    prefix (the one whose return came first).
    """

    key: Any
    valid: Verdict
    calls: tuple[Call, ...]
    pruned: tuple[Call, ...]
    linearization: tuple[int, ...]
    states: tuple[Any, ...]
    failing: Call | None
    explored: int


@dataclass(frozen=True)
class LinearizabilityResult:
    """The verdict for a history: valid, invalid, or unknown (the search timed out)."""

    valid: Verdict
    model: str
    partitions: tuple[PartitionResult, ...]
    ops: int
    elapsed: float
    failing: Call | None = None
    failing_key: Any = None
    init: Any = field(default=None, compare=False)

    @property
    def explored(self) -> int:
        """Return how many (linearized set, state) pairs the search cached."""
        return sum(p.explored for p in self.partitions)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready summary."""
        out: dict[str, Any] = {"valid": self.valid.json(), "model": self.model, "ops": self.ops,
                               "elapsed_ms": round(self.elapsed * 1000, 3), "partitions": len(self.partitions)}
        if self.failing is not None:
            out["failing_op"] = self.failing.invoke.to_dict()
            if self.failing.completion is not None:
                out["failing_completion"] = self.failing.completion.to_dict()
            out["failing_key"] = self.failing_key
            out["failing_line"] = self.failing.invoke.line
        return out

    def summary(self) -> str:
        """Return the verdict and search figures; when invalid, the op that cannot be linearized."""
        pruned = sum(len(p.pruned) for p in self.partitions)
        text = {Verdict.VALID: "valid", Verdict.INVALID: "INVALID"}.get(self.valid, "unknown (timed out)")
        lines = [f"{text}  [{self.model}, {self.ops} ops, {len(self.partitions)} partition(s), {pruned} crashed "
                 f"op(s) pruned, {self.elapsed * 1000:.1f} ms, {self.explored} states]"]
        if self.failing is not None:
            failing = self.failing
            part = next(p for p in self.partitions if p.valid is Verdict.INVALID)
            key = "" if self.failing_key is None else f" on key {self.failing_key!r}"
            shown_input = "" if failing.input is None else " " + json.dumps(failing.input, default=str)
            lines.append(f"  cannot linearize{key}: process {failing.process} {failing.f}{shown_input} -> "
                         f"{json.dumps(failing.output, default=str)} (line {failing.invoke.line}"
                         f"{'' if failing.completion is None else f'-{failing.completion.line}'})")
            state = json.dumps(part.states[-1], default=str) if part.states else "the initial state"
            lines.append(f"  longest linearizable prefix: {len(part.linearization)} of {len(part.calls)} ops, "
                         f"ending in state {state}")
        if self.valid is Verdict.UNKNOWN:
            running = [p for p in self.partitions if p.valid is Verdict.UNKNOWN]
            lines.append(f"  {len(running)} partition(s) unfinished; try a longer timeout")
        return "\n".join(lines)


class _Plan:
    """A partition's calls laid out for the search."""

    def __init__(self, key: Any, calls: list[Call], pruned: list[Call], model: Model) -> None:
        self.key = key
        self.calls = calls
        self.pruned = pruned
        self.model = model
        self.init = model.init(key)
        events = []
        for i, c in enumerate(calls):
            events.append((c.call, 0, i))
            if c.ret is not None:
                events.append((c.ret, 1, i))
        events.sort()
        self.entry_op = [i if kind == 0 else -1 for _, kind, i in events]
        self.ret_entry = [-1] * len(calls)
        for e, (_, kind, i) in enumerate(events):
            if kind == 1:
                self.ret_entry[i] = e
        self.keys: list[Any] = []
        self.fns = self._compile_all(model, calls, self.keys)
        self.needs = self._symmetry(calls, self.keys)
        self.completed = sum(1 for c in calls if c.ret is not None)
        # Completed read-only ops are linearized as soon as they are legal, without trying
        # alternatives: moving such an op earlier keeps every later state, and every op that
        # must precede it is already linearized when the scan reaches its call.
        read_only = model.read_only
        self.forced = [read_only is not None and c.ret is not None and read_only((c.f, c.input), c.output)
                       for c in calls]

    @staticmethod
    def _compile_all(model: Model, calls: list[Call], keys: list[Any]) -> list[Any]:
        """Return each call's compiled step, sharing one function between identical calls.

        Fills ``keys`` with each call's hashable ``(f, input)`` (None when unhashable).
        """
        fns: list[Any] = []
        seen: dict[Any, Any] = {}
        compiled = model.compiled
        for c in calls:
            out = UNKNOWN if c.ret is None else c.output
            value = c.input
            try:
                inp = (c.f, value if type(value) in _ATOMS else _freeze(value))
                key = (inp, out if type(out) in _ATOMS or out is UNKNOWN else _freeze(out))
                fn = seen.get(key)
            except TypeError:  # unhashable values: compile each
                inp, key, fn = None, None, None
            keys.append(inp)
            if fn is None:
                try:
                    fn = compiled((c.f, c.input), out)
                except ModelError as exc:
                    raise ModelError(exc.reason, line=c.invoke.line) from None
                if key is not None:
                    seen[key] = fn
            fns.append(fn)
        return fns

    @staticmethod
    def _symmetry(calls: list[Call], keys: list[Any]) -> list[int]:
        """Return, per call, the bit of the previous interchangeable crashed call (or 0)."""
        last: dict[Any, int] = {}
        needs = [0] * len(calls)
        for i, c in enumerate(calls):  # calls are in call order
            cls = keys[i]
            if c.ret is not None or cls is None:
                continue
            if cls in last:
                needs[i] = 1 << last[cls]
            last[cls] = i
        return needs


def _search(plan: _Plan, out: dict[str, Any]) -> Generator[None, None, Any]:
    """Search one partition; yields now and then; returns True or False.

    Leaves in ``out`` the cache (``cache``) and the deepest search stack seen (``stack``), also
    when the generator is closed early on a timeout.
    """
    entry_op, ret_entry, fns, needs, forced = plan.entry_op, plan.ret_entry, plan.fns, plan.needs, plan.forced
    n_entries = len(entry_op)
    head = n_entries
    nxt = list(range(1, n_entries + 2))
    nxt[n_entries - 1 if n_entries else head] = -1
    nxt[head] = 0 if n_entries else -1
    prv = [i - 1 for i in range(n_entries + 1)]
    if n_entries:
        prv[0] = head
    cache: set[tuple[int, Any]] = set()
    add = cache.add
    stack: list[tuple[int, Any]] = []
    push, pop = stack.append, stack.pop
    state = plan.init
    lin = 0
    remaining = plan.completed
    best_depth = 0
    budget = _YIELD_EVERY
    e = nxt[head]
    out["cache"] = cache
    while remaining:
        i = entry_op[e]
        if i >= 0:
            need = needs[i]
            if need and not lin & need:
                e = nxt[e]
                continue
            new = fns[i](state)
            if new is ILLEGAL:
                e = nxt[e]
                continue
            bits = lin | (1 << i)
            seen = len(cache)
            add((bits, new))  # one hash: the pair is new iff the cache grew
            if len(cache) != seen:
                push((~e if forced[i] else e, state))
                state, lin = new, bits
                p, q = prv[e], nxt[e]
                nxt[p] = q
                if q >= 0:
                    prv[q] = p
                r = ret_entry[i]
                if r >= 0:
                    remaining -= 1
                    p, q = prv[r], nxt[r]
                    nxt[p] = q
                    if q >= 0:
                        prv[q] = p
                budget -= 1
                if not budget:
                    budget = _YIELD_EVERY
                    yield None
                e = nxt[head]
                continue
            if not forced[i]:
                e = nxt[e]
                continue
            # A legal read-only op leads to an explored (failed) configuration: so does this one.
        # Backtrack: no op can be linearized next from this configuration.
        if len(stack) > best_depth:  # a local maximum: remember the longest prefix
            best_depth = len(stack)
            out["stack"] = stack[:]  # decoded by _order only when reported
        while True:
            if not stack:
                return False
            budget -= 1
            if not budget:
                budget = _YIELD_EVERY
                yield None
            e, state = pop()
            was_forced = e < 0
            if was_forced:
                e = ~e
            i = entry_op[e]
            lin ^= 1 << i
            r = ret_entry[i]
            if r >= 0:
                remaining += 1
                q = nxt[r]
                nxt[prv[r]] = r
                if q >= 0:
                    prv[q] = r
            q = nxt[e]
            nxt[prv[e]] = e
            if q >= 0:
                prv[q] = e
            if not was_forced:  # a read-only op was linearized without loss of generality:
                break  # its alternatives need no search, so keep backtracking past it
        e = q
    out["stack"] = stack
    return True


def _order(entry_op: list[int], stack: list[tuple[int, Any]]) -> list[int]:
    """Return the plan indices of the ops on the search stack, in linearization order."""
    return [entry_op[e if e >= 0 else ~e] for e, _ in stack]


def _replay(plan: _Plan, order: list[int]) -> tuple[Any, ...]:
    states, state = [], plan.init
    for i in order:
        state = plan.fns[i](state)
        states.append(state)
    return tuple(states)


def _failing(plan: _Plan, order: list[int]) -> Call | None:
    done = set(order)
    candidates = [c for i, c in enumerate(plan.calls) if i not in done and not c.crashed]
    return min(candidates, key=lambda c: c.ret or 0) if candidates else None


def _partition_result(plan: _Plan, verdict: Verdict, out: dict[str, Any]) -> PartitionResult:
    order = _order(plan.entry_op, out.get("stack", []))
    return PartitionResult(key=plan.key, valid=verdict, calls=tuple(plan.calls), pruned=tuple(plan.pruned),
                           linearization=tuple(plan.calls[i].id for i in order), states=_replay(plan, order),
                           failing=_failing(plan, order) if verdict is Verdict.INVALID else None,
                           explored=len(out.get("cache", ())))


def _plans(calls: Sequence[Call], model: Model) -> list[_Plan]:
    plans = []
    for key, group in model.partition(calls).items():
        drop = model.prunable(group) if model.prunable is not None else set()
        kept = [c for c in group if c.id not in drop]
        plans.append(_Plan(key, kept, [c for c in group if c.id in drop], model))
    plans.sort(key=lambda p: len(p.calls))
    return plans


def check_calls(calls: Sequence[Call], model: Model, *, timeout: float | None = None) -> LinearizabilityResult:
    """Check paired calls (see :func:`chaos.history.pair`) against ``model``.

    Partitions are searched round-robin; the first illegal one ends the check. With a
    ``timeout`` (seconds) a search still running when it expires makes the verdict "unknown"
    (unless another partition is already known illegal).
    """
    started = time.perf_counter()
    if not calls:  # nothing to order: valid, without building a search
        return LinearizabilityResult(valid=Verdict.VALID, model=model.name, partitions=(), ops=0,
                                     elapsed=time.perf_counter() - started, init=model.init_value)
    deadline = None if timeout is None else started + timeout
    plans = _plans(calls, model)
    running = []
    results: dict[int, PartitionResult] = {}
    for n, plan in enumerate(plans):
        out: dict[str, Any] = {}
        running.append((n, plan, _search(plan, out), out))
    failing = failing_key = None
    verdict = Verdict.VALID
    while running and verdict is Verdict.VALID:
        still = []
        for item in running:
            n, plan, gen, out = item
            try:
                next(gen)
            except StopIteration as stop:
                results[n] = _partition_result(plan, Verdict.of(stop.value), out)
                if stop.value is False:
                    verdict, failing, failing_key = Verdict.INVALID, results[n].failing, plan.key
                    break
                continue
            still.append(item)
        running = [item for item in running if item[0] not in results]
        if verdict is Verdict.VALID and running and deadline is not None and time.perf_counter() > deadline:
            verdict = Verdict.UNKNOWN
    for n, plan, gen, out in running:
        gen.close()
        results[n] = _partition_result(plan, Verdict.UNKNOWN, out)
    return LinearizabilityResult(valid=verdict, model=model.name, partitions=tuple(results[n] for n in sorted(results)),
                                 ops=len(calls), elapsed=time.perf_counter() - started, failing=failing,
                                 failing_key=failing_key, init=model.init_value)


def check_linearizable(history: Iterable[Op | Mapping[str, Any]], model: Model, *,
                       timeout: float | None = None) -> LinearizabilityResult:
    """Check a history (:class:`Op` objects or Jepsen-shaped dicts, in real-time order) against ``model``.

    ``valid`` is a :class:`~chaos.verdict.Verdict`: unknown when ``timeout`` (seconds) expired first.
    Raises :class:`~chaos.history.HistoryError` for unpaired ops and
    :class:`~chaos.checker.ModelError` for ops the model cannot read.
    """
    return check_calls(pair(history), model, timeout=timeout)
