"""Derive plot inputs from a history: nemesis fault intervals."""

from __future__ import annotations

from typing import Any


def nemesis_intervals(history: list[dict[str, Any]], end_ns: int | None = None) -> list[tuple[int, int, str]]:
    """Return ``(start_ns, stop_ns, label)`` for each fault: from a nemesis ``start*`` completion
    (``start``, ``start-partition``...) to the next ``stop*`` or ``heal`` completion (or the end
    of the history)."""
    out, start, label = [], None, ""
    last = 0
    for op in history:
        t = op.get("time")
        if t is None:
            continue
        last = max(last, t)
        if op.get("process") != "nemesis" or op.get("type") == "invoke":
            continue
        f = str(op.get("f"))
        if f.startswith("start") and start is None:
            start, label = t, f[len("start-"):] if f.startswith("start-") else _label(op.get("value"))
        elif (f.startswith("stop") or f == "heal") and start is not None:
            out.append((start, t, label))
            start = None
    if start is not None:
        out.append((start, end_ns if end_ns is not None else last, label))
    return out


def _label(value: Any) -> str:
    if isinstance(value, dict):
        for key in ("fault", "kind", "name", "f"):
            if key in value:
                return str(value[key])
    return "" if value is None else str(value)[:40]
