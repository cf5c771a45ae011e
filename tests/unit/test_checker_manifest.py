"""Every history in tests/data/histories/MANIFEST.tsv gets its known verdict."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from chaos.checker import UNKNOWN, Model, PartitionResult, check_linearizable, make_model
from chaos.checker.html import render
from chaos.history import MISSING, load
from chaos.verdict import Verdict

DATA = Path(__file__).resolve().parents[1] / "data" / "histories"
ROWS = list(csv.DictReader((DATA / "MANIFEST.tsv").open(encoding="utf-8"), delimiter="\t"))
FORMAT_MODELS = {"porcupine-etcd-log": "cas-register", "porcupine-kv-edn-lines": "kv-append"}


def model_for(row: dict[str, str]) -> str:
    """Return our model name for a manifest row."""
    if row["format"] in FORMAT_MODELS:
        return FORMAT_MODELS[row["format"]]
    for name in ("multi-register", "mutex", "cas-register"):
        if name in row["model"]:
            return name
    raise AssertionError(f"no model for {row['model']!r}")


def test_manifest_covers_every_history_file() -> None:
    listed = {row["file"] for row in ROWS}
    on_disk = {str(p.relative_to(DATA)) for p in DATA.rglob("*") if p.is_file() and p.name not in ("MANIFEST.tsv", "README.md")}
    assert listed == on_disk
    assert len(ROWS) == 231


@pytest.mark.parametrize("row", ROWS, ids=[row["file"] for row in ROWS])
def test_known_verdict(row: dict[str, str]) -> None:
    loaded = load(DATA / row["file"])
    assert loaded.format == row["format"]
    model = make_model(model_for(row), None if loaded.init is MISSING else loaded.init)
    result = check_linearizable(loaded.ops, model, timeout=60)
    if row["expected"] not in ("true", "false"):  # the empty etcd file: nothing to violate
        assert result.valid is Verdict.VALID and result.ops == 0
        return
    expected = row["expected"] == "true"
    assert result.valid is Verdict.of(expected), f"{row['file']}: got {result.valid}"
    if expected:
        for part in result.partitions:  # a valid verdict comes with a certificate: check it
            assert_certificate(part, model)
    else:
        assert result.failing is not None and not result.failing.crashed
        assert "cannot be linearized here" in render(result)


def assert_certificate(part: PartitionResult, model: Model) -> None:
    """Check a linearization without the search: complete, in real-time order, legal step by step."""
    by_id = {c.id: c for c in part.calls}
    order = [by_id[cid] for cid in part.linearization]
    assert {c.id for c in part.calls if not c.crashed} <= set(part.linearization)
    latest_call = -1
    state = model.init(part.key)
    for c, reported in zip(order, part.states):
        # No op may come after one that was invoked after it returned.
        assert c.ret is None or c.ret > latest_call, f"call {c.id} ordered after an op invoked after it returned"
        latest_call = max(latest_call, c.call)
        ok, state = model.step(state, (c.f, c.input), UNKNOWN if c.crashed else c.output)
        assert ok, f"call {c.id} ({c.f} {c.input!r} -> {c.output!r}) is illegal where it was placed"
        assert state == reported
