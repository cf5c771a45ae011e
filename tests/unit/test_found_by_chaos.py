"""Histories that `chaos test` recorded on raftwork itself, kept as regression data.

register-put-retry-bug.jsonl: `chaos test --workload register --nemesis all --nodes 5
--time-limit 60 --rate 100 --nemesis-interval 2,5 --op-timeout 1 --seed 21`, before the client
fix. A `write [24, 2]` sent as the leader was killed came back as a definite failure (aiohttp had
silently re-sent the PUT, and the re-send's connect error looked like "never sent"), yet a later
read saw 2. The checker must call it illegal, and the history must become legal once that op is
recorded as what it was: unknown (`info`).
"""

from __future__ import annotations

import json
from pathlib import Path

from chaos.checker import check_linearizable, make_model
from chaos.verdict import Verdict

DATA = Path(__file__).resolve().parents[1] / "data" / "raftwork" / "register-put-retry-bug.jsonl"


def ops():
    return [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()]


def test_the_client_retry_bug_history_is_not_linearizable():
    result = check_linearizable(ops(), make_model("kv", init=0), timeout=60)
    assert result.valid is Verdict.INVALID
    assert result.failing_key == 24


def test_it_is_linearizable_once_the_misreported_write_is_unknown():
    history = ops()
    wrong = [op for op in history if op["type"] == "fail" and op["f"] == "write" and op["value"] == [24, 2]]
    assert len(wrong) == 1  # the one write the client wrongly called a definite failure
    wrong[0]["type"] = "info"
    result = check_linearizable(history, make_model("kv", init=0), timeout=60)
    assert result.valid is Verdict.VALID
