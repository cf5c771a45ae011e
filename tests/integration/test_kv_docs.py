"""docs/kv.md runs as written: its Python example in an empty directory (it starts its own
cluster) prints what the page says, and its shell session gives the outputs shown, against a
fresh cluster; a command shown with no output is the failing one (exit 1, one line on stderr)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from consensus.testing.procs import child_env
from tests.integration.server_procs import ROOT, LocalCluster, pid_alive, run_cli

pytestmark = pytest.mark.timeout(240)
DOC = (ROOT / "docs" / "kv.md").read_text()


def test_the_python_example_prints_what_the_page_says(tmp_path):
    code, printed = re.search(r"<!-- example: python -->\n```python\n(.*?)```\n\nprints\n\n```\n(.*?)```", DOC, re.S).groups()
    (tmp_path / "example.py").write_text(code)
    result = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, env=child_env(), capture_output=True,
                            text=True, timeout=200)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout == printed


def session() -> list[tuple[list[str], str]]:
    block = re.search(r"<!-- example: shell -->\n```\n(.*?)```", DOC, re.S).group(1)
    steps: list[tuple[list[str], str]] = []
    for line in block.splitlines(keepends=True):
        if line.startswith("$ "):
            steps.append((line[2:].split(), ""))
        else:
            steps[-1] = (steps[-1][0], steps[-1][1] + line)
    return steps


def test_the_shell_session_gives_the_outputs_shown(tmp_path):
    steps = session()
    assert len(steps) == 8 and all(argv[:2] == ["consensus", "kv"] for argv, _ in steps)
    cluster = LocalCluster(tmp_path, nodes=3, extra=("--apps", "counter,kv"))
    try:
        cluster.start()
        cluster.leader_index()
        endpoints = ",".join(cluster.urls)
        for argv, expected in steps:
            result = run_cli(*[endpoints if a == "$ENDPOINTS" else a for a in argv[1:]])
            if expected:
                assert (result.returncode, result.stdout) == (0, expected), (argv, result.stderr)
            else:
                assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1, (argv, result.stderr)
    finally:
        cluster.stop()
        assert not [pid for pid in cluster.all_pids() if pid_alive(pid)]
