"""Every `consensus bench` command the docs show is accepted by the real parser, flags and values.

The scenarios behind them run end to end in tests/integration/test_bench_smoke.py (tiny figures)
and test_bench_full.py (the default run, pytest -m bench).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from consensus.bench.settings import SCENARIOS
from consensus.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
DOCS = ["docs/benchmarks.md", "docs/capacity.md", "README.md"]


def _commands() -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        for line in (ROOT / doc).read_text().splitlines():
            match = re.match(r"^\s*(?:\$ )?(consensus bench\b[^#`]*)", line)
            if match:
                found.append((doc, match.group(1).strip()))
    return found


def test_the_docs_show_bench_commands():
    docs = {doc for doc, _ in _commands()}
    assert docs == set(DOCS)


@pytest.mark.parametrize("doc, command", _commands())
def test_each_documented_bench_command_parses(doc, command):
    args = build_parser().parse_args(shlex.split(command)[1:])
    assert args.command == "bench" and callable(args.func)


def test_every_scenario_and_flag_is_documented():
    text = (ROOT / "docs/benchmarks.md").read_text()
    for name in SCENARIOS:
        assert f"`{name}`" in text, name
    bench = next(a for a in build_parser()._actions if hasattr(a, "choices") and a.choices and "bench" in a.choices)
    for action in bench.choices["bench"]._actions:
        for flag in action.option_strings:
            if flag.startswith("--") and flag != "--help":
                assert f"`{flag}" in text, flag
