"""Sequential specifications for linearizability checking, as records of pure functions.

A :class:`Model` is Porcupine's shape in Python:

- ``init(key) -> state``: the initial state of one partition (``key`` is None when the
  model does not partition);
- ``step(state, input, output) -> (ok, new_state)``: whether applying the operation to
  ``state`` could have produced ``output``, and the state after it. ``input`` is the pair
  ``(f, value)`` from the invoke; ``output`` is the completion's value, or :data:`UNKNOWN` for
  a crashed operation (which, if it takes effect at all, may have returned anything);
- ``partition(calls) -> {key: calls}``: independent sub-histories (P-compositionality);
- ``describe_operation(input, output)`` and ``describe_state(state)`` for humans.

States are immutable and hashable (ints, strings, tuples, frozensets): the search caches them.
Two optional hooks make the search faster without changing verdicts: ``compile(input, output)``
returns ``fn(state) -> new_state | ILLEGAL`` with the input already unpacked,
``prunable(calls)`` names crashed calls that cannot change the verdict, and
``read_only(input, output)`` says an operation never changes any state (a read), which lets
the search linearize it as soon as it is legal without trying alternatives.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from ..history.ops import Call

__all__ = ["Model", "UNKNOWN", "ILLEGAL", "ModelError", "MODELS", "make_model", "model_names"]


class _Sentinel:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


UNKNOWN: Any = _Sentinel("UNKNOWN")  # output of a crashed operation
ILLEGAL: Any = _Sentinel("ILLEGAL")  # returned by compiled steps when the op cannot apply


class ModelError(ValueError):
    """Raised for an unknown model name, a bad initial value, or an op a model cannot read."""

    def __init__(self, message: str, *, line: int | None = None) -> None:
        super().__init__(message)
        self.reason = message
        self.line = line


State = Any
Step = Callable[[State, tuple[str, Any], Any], tuple[bool, State]]


def _default_partition(calls: Sequence[Call]) -> dict[Any, list[Call]]:
    return {None: list(calls)}


def _describe_op(inp: tuple[str, Any], out: Any) -> str:
    f, value = inp
    result = "?" if out is UNKNOWN else repr(out)
    return f"{f}({'' if value is None else repr(value)}) -> {result}"


@dataclass(frozen=True)
class Model:
    """A sequential specification: pure functions over immutable, hashable states."""

    name: str
    init: Callable[[Any], State]
    step: Step
    partition: Callable[[Sequence[Call]], dict[Any, list[Call]]] = _default_partition
    describe_operation: Callable[[tuple[str, Any], Any], str] = _describe_op
    describe_state: Callable[[State], str] = repr
    compile: Callable[[tuple[str, Any], Any], Callable[[State], State]] | None = None
    prunable: Callable[[Sequence[Call]], set[int]] | None = None
    read_only: Callable[[tuple[str, Any], Any], bool] | None = None
    doc: str = ""
    init_value: Any = field(default=None, compare=False)

    def compiled(self, inp: tuple[str, Any], out: Any) -> Callable[[State], State]:
        """Return ``fn(state) -> new_state | ILLEGAL`` for one operation."""
        if self.compile is not None:
            return self.compile(inp, out)
        step = self.step

        def apply(state: State) -> State:
            ok, new = step(state, inp, out)
            return new if ok else ILLEGAL

        return apply


_ATOMS = frozenset({int, str, type(None), bool, float})


def _freeze(value: Any) -> Any:
    """Return ``value`` as a hashable, immutable equivalent (lists become tuples)."""
    if type(value) in _ATOMS:
        return value
    if isinstance(value, list):
        return tuple([x if type(x) in _ATOMS else _freeze(x) for x in value])
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, set):
        return frozenset(_freeze(x) for x in value)
    return value


def _bad(model: str, inp: tuple[str, Any]) -> ModelError:
    return ModelError(f"model {model} cannot apply {inp[0]}({inp[1]!r})")


def _cas_args(value: Any, model: str, inp: tuple[str, Any]) -> tuple[Any, Any]:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise _bad(model, inp)
    return _freeze(value[0]), _freeze(value[1])


# ---------------------------------------------------------------- registers


def _register_compile(model: str, allow_cas: bool) -> Callable[[tuple[str, Any], Any], Callable[[State], State]]:
    def compile_(inp: tuple[str, Any], out: Any) -> Callable[[State], State]:
        f, value = inp
        if f == "read":
            if out is UNKNOWN:
                return lambda s: s
            want = _freeze(out)
            return lambda s: s if s == want else ILLEGAL
        if f == "write":
            new = _freeze(value)
            return lambda s: new
        if f == "cas" and allow_cas:
            old, new = _cas_args(value, model, inp)
            if out is False:  # happened and found the register not equal to ``old``
                return lambda s: s if s != old else ILLEGAL
            return lambda s: new if s == old else ILLEGAL
        raise _bad(model, inp)

    return compile_


def _step_from_compile(compile_: Callable[[tuple[str, Any], Any], Callable[[State], State]]) -> Step:
    def step(state: State, inp: tuple[str, Any], out: Any) -> tuple[bool, State]:
        new = compile_(inp, out)(state)
        return (False, state) if new is ILLEGAL else (True, new)

    return step


def _register_prunable(calls: Sequence[Call], value_of: Callable[[Any], Any] = lambda v: v) -> set[int]:
    """Return crashed calls that cannot change the verdict.

    A crashed read changes nothing. A crashed write or cas of ``v`` can be dropped when no
    call observes ``v`` (no completed read of it, no cas from it) and no cas returned false:
    a state nobody reads can only matter by making such a failed cas fail.
    """
    if all(c.ret is not None for c in calls):
        return set()
    observed: set[Any] = set()
    failed_cas = False
    for c in calls:
        f = c.f
        if f == "read" and c.ret is not None:
            observed.add(_freeze(value_of(c.output)))
        elif f == "cas":
            value = value_of(c.input)
            if isinstance(value, (list, tuple)) and len(value) == 2:
                observed.add(_freeze(value[0]))
                failed_cas = failed_cas or c.output is False
    drop = set()
    for c in calls:
        if c.ret is not None:
            continue
        value = value_of(c.input)
        if c.f == "read":
            drop.add(c.id)
        elif not failed_cas:
            written = value if c.f == "write" else (value[1] if isinstance(value, (list, tuple)) and len(value) == 2 else None)
            if c.f in ("write", "cas") and _freeze(written) not in observed:
                drop.add(c.id)
    return drop


def _register_read_only(inp: tuple[str, Any], out: Any) -> bool:
    # A read, or a cas that returned false, only observes the register.
    return inp[0] == "read" or (inp[0] == "cas" and out is False)


def _make_register(name: str, allow_cas: bool, init: Any) -> Model:
    compile_ = _register_compile(name, allow_cas)
    return Model(name=name, init=lambda key: _freeze(init), step=_step_from_compile(compile_),
                 compile=compile_, prunable=_register_prunable, init_value=init, read_only=_register_read_only,
                 doc="read / write" + (" / cas [from to] (ok value false: happened, did not match)" if allow_cas else ""))


# ---------------------------------------------------------------- kv: a cas-register per key


def _kv_key(c: Call) -> Any:
    value = c.input
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ModelError(f"kv op {c.f}({value!r}) is not [key, value]", line=c.invoke.line)
    return _freeze(value[0])


def _kv_partition(calls: Sequence[Call]) -> dict[Any, list[Call]]:
    groups: dict[Any, list[Call]] = {}
    for c in calls:
        groups.setdefault(_kv_key(c), []).append(c)
    return groups


def _second(value: Any) -> Any:
    if value is UNKNOWN or value is False:
        return value
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return value[1]
    return value


def _init_for_key(init: Any, key: Any, default: Any) -> Any:
    """Return one key's initial value: ``init`` maps keys (JSON keys are strings) or is one value."""
    if isinstance(init, Mapping):
        return init[key] if key in init else init.get(str(key), default)
    return default if init is None else init


def _make_kv(init: Any) -> Model:
    inner = _register_compile("kv", True)

    def compile_(inp: tuple[str, Any], out: Any) -> Callable[[State], State]:
        if inp[0] == "delete":  # the key is absent again: it reads as nil
            return lambda s: None
        return inner((inp[0], _second(inp[1])), _second(out))

    def init_for(key: Any) -> State:
        return _freeze(_init_for_key(init, key, None))

    return Model(name="kv", init=init_for, step=_step_from_compile(compile_), partition=_kv_partition,
                 compile=compile_, prunable=lambda calls: _register_prunable(calls, _second),
                 read_only=_register_read_only,
                 init_value=init, doc="a cas-register per key (delete: nil again); values are [key, v]")


def _make_kv_append(init: Any) -> Model:
    def compile_(inp: tuple[str, Any], out: Any) -> Callable[[State], State]:
        f, value = inp[0], _second(inp[1])
        if f == "get":
            want = _second(out)
            if want is UNKNOWN:
                return lambda s: s
            want = "" if want is None else want
            return lambda s: s if s == want else ILLEGAL
        if f in ("put", "append") and not isinstance(value, str):
            raise _bad("kv-append", inp)
        if f == "put":
            return lambda s: value
        if f == "append":
            return lambda s: s + value
        raise _bad("kv-append", inp)

    def init_for(key: Any) -> State:
        return _init_for_key(init, key, "")

    def prunable(calls: Sequence[Call]) -> set[int]:
        return {c.id for c in calls if c.crashed and c.f == "get"}

    return Model(name="kv-append", init=init_for, step=_step_from_compile(compile_), partition=_kv_partition,
                 compile=compile_, prunable=prunable, init_value=init, read_only=lambda inp, out: inp[0] == "get",
                 doc="get / put / append on a string per key; values are [key, v]")


# ---------------------------------------------------------------- multi-register


def _make_multi_register(init: Any) -> Model:
    defaults = dict(init) if isinstance(init, Mapping) else {}
    fallback = None if isinstance(init, Mapping) else init

    def step(state: State, inp: tuple[str, Any], out: Any) -> tuple[bool, State]:
        f, value = inp
        ops = value if out is UNKNOWN or out is None else out
        if f != "txn" or not isinstance(ops, (list, tuple)):
            raise _bad("multi-register", inp)
        current = dict(state)
        for micro in ops:
            if not isinstance(micro, (list, tuple)) or len(micro) != 3:
                raise _bad("multi-register", inp)
            kind, key, v = micro
            if kind == "read":
                if v is not None and out is not UNKNOWN and current.get(key, fallback) != _freeze(v):
                    return False, state
            elif kind == "write":
                current[key] = _freeze(v)
            else:
                raise _bad("multi-register", inp)
        return True, tuple(sorted(current.items()))

    def prunable(calls: Sequence[Call]) -> set[int]:
        return {c.id for c in calls if c.crashed and all(isinstance(m, (list, tuple)) and m and m[0] == "read"
                                                           for m in (c.input or []))}

    return Model(name="multi-register", init=lambda key: tuple(sorted((k, _freeze(v)) for k, v in defaults.items())),
                 step=step, prunable=prunable, init_value=init,
                 read_only=lambda inp, out: all(isinstance(m, (list, tuple)) and m and m[0] == "read"
                                                for m in (inp[1] or [None])),
                 doc="txn of [read k v] / [write k v]; a read of nil matches anything")


# ---------------------------------------------------------------- counter, mutex, set, queue


def _make_counter(init: Any) -> Model:
    def compile_(inp: tuple[str, Any], out: Any) -> Callable[[State], State]:
        f, value = inp
        if f in ("add", "increment", "inc"):
            delta = 1 if value is None else value
            return lambda s: s + delta
        if f == "read":
            if out is UNKNOWN:
                return lambda s: s
            return lambda s: s if s == out else ILLEGAL
        raise _bad("counter", inp)

    return Model(name="counter", init=lambda key: 0 if init is None else init, step=_step_from_compile(compile_),
                 compile=compile_, prunable=lambda calls: {c.id for c in calls if c.crashed and c.f == "read"},
                 read_only=lambda inp, out: inp[0] == "read", init_value=init, doc="add n / read")


_LOCK_OPS = ("acquire", "release")


def _mutex_partition(calls: Sequence[Call]) -> dict[Any, list[Call]]:
    # A lock workload's history also has its fenced writes; they are not the lock's operations.
    return {None: [c for c in calls if c.f in _LOCK_OPS] + _lease_expiries(calls)}


def _lease_expiries(calls: Sequence[Call]) -> list[Call]:
    """A crashed release after every lock held by a process that crashed before releasing it.

    The lock is a lease: when its holder's process crashed (its acquire, or a later op of it,
    ended ``info``, and the process never issued again), the lock service frees the lock once
    the session expires, at a time the history does not show. A crashed call may take effect
    any time after its invoke or never, which is exactly that; without it a later grant to
    another process would look like two holders at once, a false "invalid". A process that
    completed every op and kept the lock still holds it.
    """
    unreleased: dict[Any, Call] = {}
    last: dict[Any, Call] = {}
    for call in sorted(calls, key=lambda c: c.call):
        last[call.process] = call
        if call.f == "acquire":
            unreleased[call.process] = call
        elif call.f == "release":
            unreleased.pop(call.process, None)
    next_id = max((c.id for c in calls), default=0) + 1
    expiries = []
    for process, acquire in sorted(unreleased.items(), key=lambda item: item[1].call):
        if acquire.crashed or last[process].crashed:
            expiries.append(Call(id=next_id, process=process, f="release", input=None, output=None,
                                 call=acquire.call, ret=None, invoke=acquire.invoke, completion=None))
            next_id += 1
    return expiries


def _make_mutex(init: Any) -> Model:
    def compile_(inp: tuple[str, Any], out: Any) -> Callable[[State], State]:
        if inp[0] == "acquire":
            return lambda s: True if not s else ILLEGAL
        if inp[0] == "release":
            return lambda s: False if s else ILLEGAL
        raise _bad("mutex", inp)

    return Model(name="mutex", init=lambda key: bool(init), step=_step_from_compile(compile_), compile=compile_,
                 partition=_mutex_partition, describe_state=lambda s: "held" if s else "free", init_value=init,
                 doc="acquire / release (other ops, such as fenced writes, are left out); a lock whose holder "
                     "crashed before releasing may be freed any time later (its lease expired)")


def _set_compile(model: str, value_of: Callable[[Any], Any]) -> Callable[[tuple[str, Any], Any], Callable[[State], State]]:
    def compile_(inp: tuple[str, Any], out: Any) -> Callable[[State], State]:
        f, value = inp[0], value_of(inp[1])
        if f == "add":
            item = _freeze(value)
            return lambda s: s | {item}
        if f == "read":
            if out is UNKNOWN:
                return lambda s: s
            elements = value_of(out)
            if elements is not None and not isinstance(elements, (list, tuple)):
                raise _bad(model, inp)
            want = frozenset(_freeze(x) for x in (elements or ()))
            return lambda s: s if s == want else ILLEGAL
        raise _bad(model, inp)

    return compile_


def _set_prunable(value_of: Callable[[Any], Any]) -> Callable[[Sequence[Call]], set[int]]:
    """Crashed reads change nothing; a crashed add of an element no read saw changes no read's
    legality if it never happens, and only reads can tell, so it can go too."""

    def prunable(calls: Sequence[Call]) -> set[int]:
        seen: set[Any] = set()
        for c in calls:
            if c.f == "read" and c.ret is not None and isinstance(value_of(c.output), (list, tuple)):
                seen.update(_freeze(x) for x in value_of(c.output))
        return {c.id for c in calls if c.crashed and (c.f == "read" or
                                                      (c.f == "add" and _freeze(value_of(c.input)) not in seen))}

    return prunable


def _describe_set(s: State) -> str:
    return "{" + ", ".join(sorted(map(repr, s))) + "}"


def _make_set(init: Any) -> Model:
    compile_ = _set_compile("set", lambda v: v)
    return Model(name="set", init=lambda key: frozenset(_freeze(x) for x in (init or ())),
                 step=_step_from_compile(compile_), compile=compile_, prunable=_set_prunable(lambda v: v),
                 read_only=lambda inp, out: inp[0] == "read", describe_state=_describe_set, init_value=init,
                 doc="add x / read -> all elements")


def _make_kv_set(init: Any) -> Model:
    compile_ = _set_compile("kv-set", _second)

    def init_for(key: Any) -> State:
        return frozenset(_freeze(x) for x in (_init_for_key(init, key, None) or ()))

    return Model(name="kv-set", init=init_for, step=_step_from_compile(compile_), partition=_kv_partition,
                 compile=compile_, prunable=_set_prunable(_second), read_only=lambda inp, out: inp[0] == "read",
                 describe_state=_describe_set, init_value=init,
                 doc="a set per key; values are [key, x] for add and [key, [elements]] for read")


def _make_queue(init: Any) -> Model:
    def compile_(inp: tuple[str, Any], out: Any) -> Callable[[State], State]:
        f, value = inp
        if f == "enqueue":
            item = _freeze(value)
            return lambda s: s + (item,)
        if f == "dequeue":
            if out is UNKNOWN:
                return lambda s: s[1:]
            if out is None:  # the queue was empty
                return lambda s: s if not s else ILLEGAL
            want = _freeze(out)
            return lambda s: s[1:] if s and s[0] == want else ILLEGAL
        raise _bad("queue", inp)

    return Model(name="queue", init=lambda key: tuple(_freeze(x) for x in (init or ())),
                 step=_step_from_compile(compile_), compile=compile_, init_value=init,
                 read_only=lambda inp, out: inp[0] == "dequeue" and out is None,
                 doc="enqueue x / dequeue -> x (nil: empty), FIFO")


MODELS: dict[str, Callable[[Any], Model]] = {
    "register": lambda init: _make_register("register", False, init),
    "cas-register": lambda init: _make_register("cas-register", True, init),
    "multi-register": _make_multi_register,
    "kv": _make_kv,
    "kv-append": _make_kv_append,
    "counter": _make_counter,
    "mutex": _make_mutex,
    "set": _make_set,
    "kv-set": _make_kv_set,
    "queue": _make_queue,
}


def model_names() -> list[str]:
    """Return the names accepted by :func:`make_model`."""
    return list(MODELS)


def make_model(name: str, init: Any = None) -> Model:
    """Return the model called ``name`` starting from ``init`` (None: the model's own default)."""
    try:
        factory = MODELS[name]
    except KeyError:
        raise ModelError(f"unknown model {name!r} (known: {', '.join(MODELS)})") from None
    return factory(init)
