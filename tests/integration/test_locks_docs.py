"""docs/locks.md's example runs as written, outside the repository, and prints what the text says."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from consensus.testing.procs import child_env

ROOT = Path(__file__).resolve().parents[2]
_BLOCK = re.compile(r"<!-- example: python -->\n```python\n(.*?)```", re.S)


@pytest.mark.timeout(120)
def test_the_fencing_example_runs_and_refuses_the_late_write(tmp_path):
    text = (ROOT / "docs" / "locks.md").read_text()
    (block,) = _BLOCK.findall(text)
    (tmp_path / "example.py").write_text(block)
    result = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, env=child_env(), capture_output=True,
                            text=True, timeout=100)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout == "late write refused: True\nwritten by the second holder\n"
    assert "It prints `late write refused: True` and `written by the second holder`." in text


def test_the_documented_limits_are_the_machines():
    from apps.locks import LockLimits

    text = (ROOT / "docs" / "locks.md").read_text()
    for name, value in vars(LockLimits()).items():
        assert f"`{name}`" in text and f"{value:,}" in text, name
