"""The pytest plugin: light to import, registered as pytest11, works in a plain pytest run (strict mode)."""

from __future__ import annotations

import configparser
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.integration.server_procs import ROOT, env

USER_TESTS = '''
import pytest
from chaos.cluster import pid_alive

PIDS = []

def test_collection_is_fine_without_the_fixture():
    assert True

@pytest.mark.asyncio
async def test_uses_the_fixture(cluster, tmp_path):
    c = await cluster(n=1)
    assert await c.wait_for_leader() == "n1"
    assert str(c.data_dir).startswith(str(tmp_path))
    PIDS.extend(node.pid for node in c.nodes)
    assert False, "fails on purpose: the cluster must be stopped anyway"

def test_the_failed_tests_cluster_was_stopped():
    assert PIDS and not any(pid_alive(pid) for pid in PIDS)
'''


def test_importing_the_plugin_is_light():
    code = "import sys, chaos.pytest_plugin; print(sorted(m for m in ('chaos.cluster', 'aiohttp', 'consensus') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env(), capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_entry_point_is_declared():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    assert "raftwork_chaos = chaos.pytest_plugin" in config["options.entry_points"]["pytest11"]


def installed_env(tmp_path: Path) -> dict[str, str]:
    """An environment where a distribution declares our pytest11 entry point, as `pip install -e .` does."""
    site = tmp_path / "site"
    dist = site / "raftwork_plugin_check-0.0.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: raftwork-plugin-check\nVersion: 0.0.0\n")
    (dist / "entry_points.txt").write_text("[pytest11]\nraftwork_chaos = chaos.pytest_plugin\n")
    e = env()
    e["PYTHONPATH"] = f"{site}:{e['PYTHONPATH']}"
    return e


def test_the_fixture_cleans_up_after_a_failing_test(tmp_path: Path):
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_user.py").write_text(textwrap.dedent(USER_TESTS))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "asyncio_mode=strict",
         "--rootdir", str(tmp_path), str(tmp_path / "tests" / "test_user.py")],
        cwd=tmp_path, env=installed_env(tmp_path), capture_output=True, text=True, timeout=120,
    )
    assert "1 failed, 2 passed" in result.stdout, result.stdout + result.stderr
    assert "fails on purpose" in result.stdout


ORPHAN_SCRIPT = '''
import asyncio, sys
from pathlib import Path
from chaos.cluster import ChaosCluster

async def main():
    c = ChaosCluster(n=3, data_dir=Path(sys.argv[1]))
    await c.start()
    print(" ".join(str(node.pid) for node in c.nodes), flush=True)
    await asyncio.Event().wait()  # until killed

asyncio.run(main())
'''


def test_nodes_do_not_outlive_a_killed_harness(tmp_path: Path):
    import os
    import signal

    from chaos.cluster import pid_alive
    from tests.integration.server_procs import wait_for

    harness = subprocess.Popen([sys.executable, "-c", ORPHAN_SCRIPT, str(tmp_path / "c")], cwd=ROOT, env=env(),
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    pids: list[int] = []
    try:
        assert harness.stdout is not None
        pids = [int(p) for p in harness.stdout.readline().split()]
        assert len(pids) == 3 and all(pid_alive(p) for p in pids)
        os.kill(harness.pid, signal.SIGKILL)  # no stop(), no finally: only the children's own watch
        harness.wait(10)
        wait_for(lambda: not any(pid_alive(p) for p in pids), 15, "the nodes to stop by themselves")
    finally:
        if harness.poll() is None:
            harness.kill()
            harness.wait()
        for pid in pids:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
