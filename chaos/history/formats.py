"""Read and write histories: our JSON Lines, Jepsen/Knossos EDN, and Porcupine's two formats.

Every importer translates its format's meaning into the history model of :mod:`.ops`:

- JSON Lines (ours): one Jepsen-shaped op per line; ``fail`` did not happen. A run's history
  starts with one header line, ``{"raftwork_history": 1, "model": "kv", "init": 0, ...}``, that
  states the model its checker used and the initial value of every key (``init``, as
  :func:`chaos.checker.make_model` takes it), so a re-check never depends on a convention.
- Jepsen/Knossos EDN: a vector (or bare sequence) of op maps; ``fail`` did not happen; a
  completed read of nil matches any value, so it becomes an ``info`` read (result unknown);
  registers start at 0.
- Porcupine etcd log: ``:fail :cas`` is a CAS that happened and returned false, so it becomes
  an ``ok`` cas whose value is ``false``; ``:fail :read :timed-out`` is a read with an
  unknown result (``info``); ``:info`` is crashed; the register starts absent (None).
- Porcupine kv: EDN maps a line with ``:key``; the key moves into the value as ``[key, v]``
  (Jepsen's independent-key convention); values are strings starting at "".
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from . import edn
from .ops import FAIL, INFO, INVOKE, OK, HistoryError, Op

__all__ = ["MISSING", "HEADER_KEY", "HEADER_LINES", "Loaded", "detect_format", "load", "parse", "read_jsonl",
           "read_jsonl_header", "write_jsonl", "dumps_jsonl", "read_knossos_edn", "read_porcupine_etcd",
           "read_porcupine_kv", "to_edn"]

MISSING: Any = type("Missing", (), {"__repr__": lambda self: "MISSING"})()

FORMATS = ("jsonl", "knossos-edn", "porcupine-etcd-log", "porcupine-kv-edn-lines")
# The initial value each format implies; MISSING lets the model choose.
DEFAULT_INIT: dict[str, Any] = {"jsonl": MISSING, "knossos-edn": 0, "porcupine-etcd-log": None,
                                "porcupine-kv-edn-lines": ""}


HEADER_KEY = "raftwork_history"  # its value is the header's version
HEADER_LINES = 1  # a run's history.jsonl: the header, then one op a line


@dataclass(frozen=True)
class Loaded:
    """A history read from a file, with the format it was in, the initial value it implies (the
    header's ``init`` when it states one), the model its header names, and the header itself."""

    ops: list[Op]
    format: str
    init: Any = MISSING
    model: str | None = None
    header: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def _plain(value: Any) -> Any:
    """Return ``value`` with EDN tuples and frozensets made JSON-friendly lists."""
    if isinstance(value, (list, tuple)):
        return [_plain(x) for x in value]
    if isinstance(value, frozenset):
        return sorted((_plain(x) for x in value), key=repr)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (edn.Keyword, edn.Symbol)):
        return str(value)
    return value


# ---------------------------------------------------------------- JSON Lines


def read_jsonl(text: str) -> list[Op]:
    """Return the ops of a JSON Lines history (a header line, if any, is skipped)."""
    return read_jsonl_header(text)[1]


def read_jsonl_header(text: str) -> tuple[dict[str, Any], list[Op]]:
    """Return the header (``{}`` if the first line is an op) and the ops of a JSON Lines history."""
    ops: list[Op] = []
    header: dict[str, Any] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise HistoryError(f"not JSON: {exc.msg}", line=lineno) from None
        if not isinstance(data, dict):
            raise HistoryError("a history line must be a JSON object", line=lineno)
        if HEADER_KEY in data:
            if ops or header:
                raise HistoryError("a header line must come first", line=lineno)
            header = data
            continue
        ops.append(Op.from_dict(data, index=len(ops), line=lineno))
    return header, ops


def dumps_jsonl(ops: Iterable[Op], header: Mapping[str, Any] | None = None) -> str:
    """Return ops as JSON Lines text, after a header line if ``header`` is given."""
    lines = [] if header is None else [json.dumps({HEADER_KEY: 1, **header}, separators=(",", ":"), default=_plain) + "\n"]
    lines += [json.dumps(op.to_dict(), separators=(",", ":"), default=_plain) + "\n" for op in ops]
    return "".join(lines)


def write_jsonl(ops: Iterable[Op], path: str | Path, header: Mapping[str, Any] | None = None) -> None:
    """Write ops to ``path`` as JSON Lines (after a header line if ``header`` is given)."""
    Path(path).write_text(dumps_jsonl(ops, header), encoding="utf-8")


# ---------------------------------------------------------------- Jepsen / Knossos EDN


def _edn_op(form: Any, index: int, line: int) -> Op:
    if not isinstance(form, dict):
        raise HistoryError("expected an op map", line=line)
    data = {str(k): v for k, v in form.items()}
    data.setdefault("f", "")
    for name in ("type", "f"):
        if isinstance(data.get(name), edn.Keyword):
            data[name] = str(data[name])
    data["value"] = _plain(data.get("value"))
    data = {k: (_plain(v) if k not in ("process",) else v) for k, v in data.items()}
    if isinstance(data.get("process"), edn.Keyword):
        data["process"] = str(data["process"])
    data.pop("index", None)  # Knossos indexes are not always dense or ordered; position rules
    return Op.from_dict(data, index=index, line=line)


def read_knossos_edn(text: str, *, nil_reads_unknown: bool = True) -> list[Op]:
    """Return the ops of a Jepsen/Knossos EDN history, in file order.

    With ``nil_reads_unknown`` (Knossos's meaning) a completed read of nil becomes a read with
    an unknown result; pass False to read back our own :func:`to_edn` export unchanged.
    """
    try:
        items = list(edn.iter_elements(text))
    except edn.EdnError as exc:
        raise HistoryError(exc.reason, line=exc.line) from None
    ops = [_edn_op(form, i, line) for i, (form, line) in enumerate(items)]
    return [_knossos_read(op) for op in ops] if nil_reads_unknown else ops


def _knossos_read(op: Op) -> Op:
    # Knossos: a completed read of nil tells nothing, so it is a read with an unknown result.
    if op.type == OK and op.f == "read" and op.value is None:
        return dataclasses.replace(op, type=INFO)
    return op


def to_edn(ops: Iterable[Op]) -> str:
    """Return ops as a Jepsen EDN vector, one op map a line.

    Knossos reads a completed read of nil as "any value", so an absent-key read exported here
    loses its meaning there; :func:`read_knossos_edn` with ``nil_reads_unknown=False`` keeps it.
    """
    lines = []
    for op in ops:
        data = op.to_dict()
        form: dict[Any, Any] = {}
        for k, v in data.items():
            if v is None and k in ("time", "node"):
                continue
            if k in ("type", "f") and isinstance(v, str):
                v = edn.Keyword(v)
            if k == "process" and isinstance(v, str):
                v = edn.Keyword(v)
            form[edn.Keyword(k)] = v
        lines.append(edn.dumps(form))
    return "[" + "\n ".join(lines) + "]\n"


# ---------------------------------------------------------------- Porcupine etcd log

_ETCD_LINE = re.compile(r"INFO\s+jepsen\.util\s+-\s+(\S+)\s+:(\w+)\s+:(\w+)\s*(.*?)\s*$")


def read_porcupine_etcd(text: str) -> list[Op]:
    """Return the ops of a Porcupine/Jepsen-2014 etcd log (one event a line)."""
    ops: list[Op] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        m = _ETCD_LINE.match(raw)
        if m is None:
            raise HistoryError("not a jepsen.util event line", line=lineno)
        proc_text, kind, f, rest = m.groups()
        try:
            process: Any = int(proc_text)
            value = _plain(edn.loads(rest)) if rest else None
        except (ValueError, edn.EdnError):
            raise HistoryError(f"bad process or value in {raw.strip()!r}", line=lineno) from None
        if kind not in (INVOKE, OK, FAIL, INFO):
            raise HistoryError(f"unknown event type :{kind}", line=lineno)
        extra: dict[str, Any] = {}
        if kind == FAIL and f == "cas":
            kind, value = OK, False  # the CAS happened and returned false
        elif kind == FAIL and f == "read":
            kind, extra, value = INFO, {"error": value}, None  # read of unknown result
        elif kind == INFO:
            extra, value = {"error": value}, None
        elif kind == INVOKE and f == "read":
            value = None
        ops.append(Op(index=len(ops), type=kind, process=process, f=f, value=value, extra=extra, line=lineno))
    return ops


# ---------------------------------------------------------------- Porcupine kv


# The shape every line of Porcupine's kv files has; other lines take the general EDN path.
_KV_LINE = re.compile(r'\{:process (\d+), :type :(invoke|ok|fail|info), :f :(\w+), :key "([^"\\]*)", '
                      r':value (nil|"[^"\\]*")\}\s*$')


def read_porcupine_kv(text: str) -> list[Op]:
    """Return the ops of a Porcupine kv history; each value becomes ``[key, value]``."""
    ops: list[Op] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        fast = _KV_LINE.match(raw)
        if fast is not None:
            process, kind, f, key, value = fast.groups()
            ops.append(Op(index=len(ops), type=kind, process=int(process), f=f,
                          value=[key, None if value == "nil" else value[1:-1]], line=lineno))
            continue
        try:
            form = edn.loads(raw)
        except edn.EdnError as exc:
            raise HistoryError(exc.reason, line=lineno) from None
        if not isinstance(form, dict):
            raise HistoryError("expected an op map", line=lineno)
        data = {str(k): _plain(v) for k, v in form.items()}
        if "key" not in data:
            raise HistoryError("kv op has no :key", line=lineno)
        key = data.pop("key")
        data["value"] = [key, data.get("value")]
        ops.append(Op.from_dict(data, index=len(ops), line=lineno))
    return ops


# ---------------------------------------------------------------- detection and loading

_READERS = {"jsonl": read_jsonl, "knossos-edn": read_knossos_edn,
            "porcupine-etcd-log": read_porcupine_etcd, "porcupine-kv-edn-lines": read_porcupine_kv}


def detect_format(text: str, name: str = "") -> str:
    """Return the format of a history from its content (and, to break ties, its file name)."""
    first = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped and not stripped.startswith(";"):
            first = stripped
            break
    if first.startswith("INFO") and "jepsen.util" in first:
        return "porcupine-etcd-log"
    if first.startswith("{\"") or (first.startswith("{") and name.endswith((".jsonl", ".json"))):
        return "jsonl"
    if first.startswith("{") and ":key" in first and first.endswith("}"):
        return "porcupine-kv-edn-lines"
    if first.startswith(("[", "{", "(")):
        return "knossos-edn"
    if not first:
        return "porcupine-etcd-log" if name.endswith(".log") else "jsonl"
    raise HistoryError("cannot tell the history format (expected JSON Lines, EDN, or an etcd log)", line=1)


def parse(text: str, fmt: str | None = None, *, name: str = "") -> Loaded:
    """Return the history in ``text``, detecting its format unless ``fmt`` is given."""
    fmt = fmt or detect_format(text, name)
    if fmt not in _READERS:
        raise HistoryError(f"unknown history format {fmt!r} (known: {', '.join(FORMATS)})")
    if fmt == "jsonl":
        header, ops = read_jsonl_header(text)
        model = header.get("model")
        return Loaded(ops=ops, format=fmt, init=header.get("init", DEFAULT_INIT[fmt]),
                      model=model if isinstance(model, str) else None, header=header)
    return Loaded(ops=_READERS[fmt](text), format=fmt, init=DEFAULT_INIT[fmt])


def load(path: str | Path, fmt: str | None = None) -> Loaded:
    """Return the history in the file at ``path``; errors name the file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise HistoryError(f"cannot read: {exc}", file=str(path)) from None
    try:
        return parse(text, fmt, name=path.name)
    except HistoryError as exc:
        raise exc.located(str(path)) from None


def ops_from_dicts(items: Iterable[Mapping[str, Any]]) -> list[Op]:
    """Return ops built from in-memory dicts (as a harness records them)."""
    return [Op.from_dict(item, index=i) for i, item in enumerate(items)]
