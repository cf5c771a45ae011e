"""Check a history with its workload's checkers and fold the verdicts into one, Jepsen's way."""

from __future__ import annotations

import time
from typing import Any, Iterable

from chaos.history import Op
from chaos.runner.config import TestConfig
from chaos.workloads import Workload

EXIT_CODES = {True: 0, False: 1, "unknown": 2}
CRASHED = 255


def merge_valid(verdicts: Iterable[Any]) -> Any:
    """Return False if any verdict is False, else "unknown" if any is not True, else True."""
    verdicts = list(verdicts)
    if any(v is False for v in verdicts):
        return False
    if any(v is not True for v in verdicts):
        return "unknown"
    return True


def exit_code(valid: Any) -> int:
    """Return Jepsen's exit code for a verdict: 0 valid, 1 invalid, 2 unknown."""
    return EXIT_CODES.get(valid, 2) if isinstance(valid, bool) or valid == "unknown" else 2


def op_counts(history: list[dict[str, Any]]) -> dict[str, Any]:
    """Return client completions by type and by f, and nemesis op count."""
    by_type = {"ok": 0, "fail": 0, "info": 0}
    by_f: dict[str, dict[str, int]] = {}
    invokes = nemesis = 0
    for op in history:
        if not isinstance(op.get("process"), int) or isinstance(op.get("process"), bool):
            nemesis += 1
            continue
        if op["type"] == "invoke":
            invokes += 1
            continue
        by_type[op["type"]] = by_type.get(op["type"], 0) + 1
        by_f.setdefault(op["f"], {"ok": 0, "fail": 0, "info": 0})[op["type"]] += 1
    return {"invokes": invokes, "by_type": by_type, "by_f": by_f, "nemesis_ops": nemesis}


def check_history(workload: Workload, history: list[dict[str, Any]], config: TestConfig) -> dict[str, Any]:
    """Return ``results.json``: the verdict, each checker's result, and op counts."""
    started = time.monotonic()
    # Ops carry their line in history.jsonl (index + 1), so a failing op can be found in the file.
    ops = [Op.from_dict(op, index=i, line=i + 1) for i, op in enumerate(history)]
    checkers = workload.check(ops, timeout=config.checker_timeout)  # type: ignore[arg-type]
    valid = merge_valid(r.get("valid") for r in checkers.values())
    return {"valid": valid, "test": config.test_name, "workload": config.workload, "nemesis": config.nemesis,
            "seed": config.seed, "checkers": checkers, "ops": op_counts(history),
            "check_seconds": round(time.monotonic() - started, 3)}
