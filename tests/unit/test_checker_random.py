"""Random histories: linearizable by construction, broken on purpose, cross-checked by brute force."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chaos.checker import UNKNOWN, Model, check_linearizable, make_model
from chaos.history import Call, Op, pair
from chaos.verdict import Verdict


def simulate(rng: random.Random, *, processes: int, ops_per_process: int, values: int = 4,
             crash_rate: float = 0.15, cas: bool = True, init: Any = 0) -> list[Op]:
    """Return a history of clients on one register, linearizable by construction.

    Each op gets a random interval; it takes effect at a random point inside it, in order of
    those points, on a sequential register. A crashed op (info, or never completed) takes
    effect at its point or never; its process stops. A cas that does not match either fails
    (did not happen) or returns false (happened, observed the mismatch).
    """
    planned = []
    for p in range(processes):
        t = rng.uniform(0, 5)
        for _ in range(ops_per_process):
            start = t + rng.uniform(0, 3)
            end = start + rng.uniform(0.1, 6)
            kind = rng.choice(["read", "write", "cas"] if cas else ["read", "write"])
            value = None if kind == "read" else rng.randrange(values) if kind == "write" else [
                rng.randrange(values), rng.randrange(values)]
            crashed = rng.random() < crash_rate
            planned.append({"p": p, "f": kind, "in": value, "start": start, "end": end,
                            "at": rng.uniform(start, end), "crashed": crashed,
                            "effect": not crashed or rng.random() < 0.5})
            t = end
            if crashed:
                break
    state = init
    for op in sorted(planned, key=lambda o: o["at"]):
        if not op["effect"]:
            continue
        if op["f"] == "read":
            op["out"], op["type"] = state, "ok"
        elif op["f"] == "write":
            state, op["out"], op["type"] = op["in"], op["in"], "ok"
        elif state == op["in"][0]:
            state, op["out"], op["type"] = op["in"][1], op["in"], "ok"
        else:
            op["type"], op["out"] = ("fail", op["in"]) if rng.random() < 0.5 else ("ok", False)
    events = []
    for op in planned:
        events.append((op["start"], "invoke", op, op["in"]))
        if op["crashed"]:
            if rng.random() < 0.5:
                events.append((op["end"], "info", op, None))
        else:
            events.append((op["end"], op["type"], op, op["out"]))
    events.sort(key=lambda e: e[0])
    return [Op(index=i, type=kind, process=op["p"], f=op["f"], value=value, time=int(t * 1e6))
            for i, (t, kind, op, value) in enumerate(events)]


def break_read(rng: random.Random, history: list[Op], how: str) -> list[Op] | None:
    """Return the history with one completed read changed to a stale, future or invented value."""
    reads = [i for i, op in enumerate(history) if op.type == "ok" and op.f == "read"]
    if not reads:
        return None
    i = rng.choice(reads)
    written = [op.value if op.f == "write" else op.value[1] for op in history
               if op.type == "invoke" and op.f in ("write", "cas")]
    if how == "invented":
        value = 1000 + rng.randrange(10)
    else:
        before = [v for v in written[: len(written) // 2]] or [0]
        after = written[len(written) // 2:] or [0]
        value = rng.choice(before if how == "stale" else after)
    op = history[i]
    out = list(history)
    out[i] = Op(index=op.index, type=op.type, process=op.process, f=op.f, value=value, time=op.time)
    return out


def brute_force(calls: list[Call], model: Model) -> bool:
    """Return whether some order of the calls respecting real time is legal (no pruning, no cache).

    Completed calls must all appear; crashed calls may appear (after their invoke) or not.
    """
    completed = [c for c in calls if not c.crashed]

    def extend(state: Any, done: frozenset[int]) -> bool:
        if all(c.id in done for c in completed):
            return True
        for c in calls:
            if c.id in done:
                continue
            # c may go next only if no pending completed call returned before c was invoked.
            if any(o.id not in done and o.ret is not None and o.ret < c.call for o in calls):
                continue
            ok, new = model.step(state, (c.f, c.input), UNKNOWN if c.crashed else c.output)
            if ok and extend(new, done | {c.id}):
                return True
        return False

    return extend(model.init(None), frozenset())


def test_simulated_histories_are_linearizable() -> None:
    rng = random.Random(7)
    model = make_model("cas-register", 0)
    for _ in range(30):
        history = simulate(rng, processes=6, ops_per_process=40, crash_rate=0.03)
        result = check_linearizable(history, model, timeout=30)
        assert result.valid is Verdict.VALID
        part = result.partitions[0]
        # The reported linearization replays legally and includes every completed call.
        assert {c.id for c in part.calls if not c.crashed} <= set(part.linearization)


def test_invented_reads_are_always_caught() -> None:
    rng = random.Random(11)
    model = make_model("cas-register", 0)
    for _ in range(30):
        history = break_read(rng, simulate(rng, processes=5, ops_per_process=30, crash_rate=0.05), "invented")
        assert history is not None
        result = check_linearizable(history, model, timeout=30)
        assert result.valid is Verdict.INVALID
        assert result.failing is not None and not result.failing.crashed


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), how=st.sampled_from(["none", "stale", "future", "invented"]),
       cas=st.booleans())
def test_agrees_with_brute_force_on_small_histories(seed: int, how: str, cas: bool) -> None:
    rng = random.Random(seed)
    history = simulate(rng, processes=3, ops_per_process=rng.randint(1, 3), values=3, crash_rate=0.3, cas=cas)
    if how != "none":
        history = break_read(rng, history, how) or history
    model = make_model("cas-register", 0)
    calls = pair(history)
    expected = brute_force(calls, model)
    if how == "none":
        assert expected is True  # the generator's promise
    assert check_linearizable(history, model).valid is Verdict.of(expected)


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_kv_partitions_agree_with_brute_force_per_key(seed: int) -> None:
    rng = random.Random(seed)
    parts = {k: simulate(rng, processes=2, ops_per_process=3, values=3, crash_rate=0.2) for k in "ab"}
    if rng.random() < 0.7:
        parts["b"] = break_read(rng, parts["b"], rng.choice(["stale", "future", "invented"])) or parts["b"]
    merged = []  # interleave the keys' events by time, each key's processes kept apart
    for k, history in parts.items():
        for op in history:
            merged.append((op.time, k, op))
    merged.sort(key=lambda e: (e[0], e[1]))
    kv = [Op(index=i, type=op.type, process=op.process + (10 if k == "b" else 0), f=op.f,
             value=[k, op.value] if op.type == "invoke" or op.f != "cas" or op.value is not False else False)
          for i, (_, k, op) in enumerate(merged)]
    model = make_model("kv", 0)
    expected = all(brute_force(pair(h), make_model("cas-register", 0)) for h in parts.values())
    assert check_linearizable(kv, model).valid is Verdict.of(expected)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), how=st.sampled_from(["none", "stale", "future"]))
def test_reductions_agree_with_the_plain_search_on_medium_histories(seed: int, how: str) -> None:
    import dataclasses

    rng = random.Random(seed)
    history = simulate(rng, processes=5, ops_per_process=6, values=6, crash_rate=0.3)
    if how != "none":
        history = break_read(rng, history, how) or history
    fast = make_model("cas-register", 0)
    plain = dataclasses.replace(fast, compile=None, prunable=None, read_only=None)  # step only
    assert check_linearizable(history, fast).valid is check_linearizable(history, plain).valid
