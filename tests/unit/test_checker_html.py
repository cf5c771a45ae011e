"""The HTML view: standalone, the prefix numbered in order, the failing op marked."""

from __future__ import annotations

import re

from chaos.checker import check_linearizable, make_model
from chaos.checker.html import render
from chaos.verdict import Verdict


def history(reads: list[int]) -> list[dict]:
    """Return dict ops (as a harness records them): write 1, write 2, then the given reads."""
    events = [("invoke", 0, "write", 1), ("ok", 0, "write", 1), ("invoke", 1, "write", 2), ("ok", 1, "write", 2)]
    for value in reads:
        events += [("invoke", 2, "read", None), ("ok", 2, "read", value)]
    return [{"type": t, "process": p, "f": f, "value": v} for t, p, f, v in events]


def test_invalid_view_marks_prefix_and_failing_op() -> None:
    result = check_linearizable(history([2, 1]), make_model("register", 0))
    assert result.valid is Verdict.INVALID
    page = render(result, title="t")
    assert page.count('class="op lin') == len(result.partitions[0].linearization) == 3
    assert page.count('class="op fail') == 1
    labels = re.findall(r'class="op lin[^"]*"[^>]*>(\d+) ', page)
    assert sorted(map(int, labels)) == [1, 2, 3]
    assert "cannot be linearized here" in page and "not linearizable" in page
    assert "<script" not in page and "src=" not in page and "href=" not in page


def test_valid_view_has_no_failing_op() -> None:
    page = render(check_linearizable(history([2, 2]), make_model("register", 0)))
    assert "op fail" not in page and page.count('class="op lin') == 4 and ">linearizable<" in page
