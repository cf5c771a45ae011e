"""The chaos docs' examples run as written outside the repository: each block marked
``<!-- example: python -->`` (or ``pytest``) is copied into an empty temporary directory and run
there, with raftwork importable but none of the repository's files (no setup.cfg: pytest runs in
its default strict asyncio mode, so the fixture example needs its asyncio mark)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from consensus.testing.procs import child_env

ROOT = Path(__file__).resolve().parents[2]
_BLOCK = re.compile(r"<!-- example: (python|pytest) -->\n```python\n(.*?)```", re.S)

# What each example prints, in the order the docs give them (the prose beside each says so too).
EXPECTED = {
    ("chaos-cluster.md", 0): "new leader elected: True\ncounter: 1\n",
    ("chaos-cluster.md", 1): "True [] 4\n",
    ("chaos.md", 0): "INVALID wrong-total 26 2 (6, 14, 10)\n",
    ("chaos.md", 1): "VALID ['faults', 'linear', 'logs', 'replicas', 'stats']\n",
}


def examples() -> list[tuple[str, int, str, str]]:
    found = []
    for doc in ("chaos.md", "chaos-cluster.md"):
        for i, (kind, code) in enumerate(_BLOCK.findall((ROOT / "docs" / doc).read_text())):
            found.append((doc, i, kind, code))
    return found


def _params() -> list[object]:
    return [pytest.param(doc, i, kind, code, id=f"{doc}-{i}-{kind}") for doc, i, kind, code in examples()]


def test_every_marked_example_is_checked():
    kinds = {(doc, i): kind for doc, i, kind, _ in examples()}
    assert {k for k, v in kinds.items() if v == "python"} == set(EXPECTED)
    assert [k for k, v in kinds.items() if v == "pytest"] == [("chaos-cluster.md", 2)]


@pytest.mark.timeout(240)
@pytest.mark.parametrize("doc, index, kind, code", _params())
def test_example_runs_in_an_empty_directory(tmp_path, doc, index, kind, code):
    work = tmp_path / "outside"
    work.mkdir()
    env = child_env()  # raftwork importable (this checkout), nothing else of the repository around
    if kind == "python":
        (work / "example.py").write_text(code)
        result = subprocess.run([sys.executable, "example.py"], cwd=work, env=env, capture_output=True, text=True,
                                timeout=200)
        assert result.returncode == 0, result.stderr[-3000:]
        assert result.stdout == EXPECTED[(doc, index)]
    else:
        (work / "test_example.py").write_text(code)
        result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_example.py"],
                                cwd=work, env=env, capture_output=True, text=True, timeout=200)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
        assert "1 passed" in result.stdout  # not "1 skipped": strict mode skips an unmarked async test
