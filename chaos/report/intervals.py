"""Derive plot inputs from a history: nemesis fault intervals."""

from __future__ import annotations

from typing import Any, Sequence

from chaos.history import Op


def nemesis_intervals(history: Sequence[Op], end_ns: int | None = None) -> list[tuple[int, int, str]]:
    """Return ``(start_ns, stop_ns, label)`` for each fault: from a nemesis ``start*`` completion
    (``start``, ``start-partition``...) to the next ``stop*`` or ``heal`` completion (or the end
    of the history). A start that failed (its op has an ``error``) injected nothing: no interval."""
    out, start, label = [], None, ""
    last = 0
    for op in history:
        t = op.time
        if t is None:
            continue
        last = max(last, t)
        if op.is_client or op.type == "invoke":
            continue
        f = str(op.f)
        phase = str(op.get("phase") or f)  # the runner marks start / stop / heal; else guess from f
        if phase.startswith("start") and op.get("error"):
            continue
        if phase.startswith("start") and start is None:
            start, label = t, fault_label(f, op.value)
        elif (phase.startswith("stop") or phase == "heal") and start is not None:
            out.append((start, t, label))
            start = None
    if start is not None:
        out.append((start, end_ns if end_ns is not None else last, label))
    return out


def fault_label(f: str, value: Any) -> str:
    """Return a short fault label: the op's name (``start-`` dropped) and its targets."""
    parts = [] if f == "start" else [f[len("start-"):] if f.startswith("start-") else f]
    if isinstance(value, dict):
        for key in ("fault", "kind", "grudge", "target"):
            if key in value and str(value[key]) not in parts:
                parts.append(str(value[key]))
                break
        nodes = value.get("nodes") or value.get("node")
        if nodes:
            parts.append(",".join(nodes) if isinstance(nodes, list) else str(nodes))
    elif value is not None and not parts:
        parts.append(str(value)[:40])
    return " ".join(parts)
