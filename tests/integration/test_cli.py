"""The `consensus` command line: misuse exits 2 in one line, failures exit 1 in one line, and
`cluster` / `serve` stop every process they started (also when their parent dies)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess

import pytest

from consensus.cli import main
from tests.integration.server_procs import (
    ROOT,
    LocalCluster,
    ServeProcess,
    consensus_cmd,
    env,
    free_port_range,
    get_json,
    pid_alive,
    run_cli,
    wait_for,
)

pytestmark = pytest.mark.timeout(180)

MISUSE = [
    [],
    ["bogus"],
    ["serve"],
    ["serve", "--id", "127.0.0.1:7001", "--peers", "127.0.0.1:7001", "--http", "127.0.0.1:8001"],
    ["serve", "--id", "nope", "--peers", "127.0.0.1:7001", "--http", "127.0.0.1:8001", "--data-dir", "d"],
    ["serve", "--id", "127.0.0.1:99999", "--peers", "127.0.0.1:7001", "--http", "127.0.0.1:8001", "--data-dir", "d"],
    ["serve", "--id", "127.0.0.1:7001", "--peers", "127.0.0.1:7002=ftp://x", "--http", "127.0.0.1:8001", "--data-dir", "d"],
    ["serve", "--id", "127.0.0.1:7001", "--peers", "127.0.0.1:7001", "--http", "127.0.0.1:8001", "--data-dir", "d", "--apps", "nosuch"],
    ["serve", "--id", "10.1.2.3:7001", "--peers", "10.1.2.3:7001", "--http", "127.0.0.1:8001", "--data-dir", "d"],
    ["serve", "--id", "127.0.0.1:7001", "--peers", "127.0.0.1:7001", "--http", "127.0.0.1:8001", "--data-dir", "d",
     "--token-file", "/nonexistent/token"],
    ["serve", "--id", "127.0.0.1:7001", "--peers", "127.0.0.1:7001", "--http", "127.0.0.1:8001", "--data-dir", "d",
     "--forward-route", "127.0.0.1:7002=ftp://x"],
    ["serve", "--id", "127.0.0.1:7001", "--peers", "127.0.0.1:7001", "--http", "127.0.0.1:8001", "--data-dir", "d",
     "--forward-route", "nope=http://127.0.0.1:9"],
    ["cluster", "--nodes", "0"],
    ["cluster", "--nodes", "three"],
    ["cluster", "--base-port", "8000", "--http-base-port", "8001"],
    ["status"],
    ["status", "--endpoints", "not a url"],
    ["status", "--endpoints", "http://127.0.0.1:1", "--timeout", "-1"],
    ["members", "add", "--endpoints", "http://127.0.0.1:1"],
    ["members", "add", "no-port", "--endpoints", "http://127.0.0.1:1"],
    ["members", "drop", "127.0.0.1:7004", "--endpoints", "http://127.0.0.1:1"],
    ["leader", "transfer", "--to", "x", "--endpoints", "http://127.0.0.1:1"],
]


@pytest.mark.parametrize("argv", MISUSE, ids=[" ".join(a)[:60] or "no-args" for a in MISUSE])
def test_misuse_exits_2_with_one_line(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "error" in lines[0], captured.err
    assert "Traceback" not in captured.err


def test_misuse_in_a_real_process_exits_2_with_one_line():
    out = run_cli("serve", "--bogus")
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr


def unused_port() -> int:
    return free_port_range(1)


@pytest.mark.parametrize(
    "args",
    [
        ["status", "--endpoints", "http://127.0.0.1:{port}"],
        ["status", "--json", "--endpoints", "http://127.0.0.1:{port}"],
        ["members", "add", "127.0.0.1:7009", "--endpoints", "http://127.0.0.1:{port}", "--timeout", "1"],
        ["members", "remove", "127.0.0.1:7009", "--endpoints", "http://127.0.0.1:{port}", "--timeout", "1"],
        ["leader", "transfer", "--endpoints", "http://127.0.0.1:{port}", "--timeout", "1"],
    ],
)
def test_an_unreachable_endpoint_is_one_line_and_exit_1(args, capsys):
    port = unused_port()
    code = main([a.format(port=port) for a in args])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert len(err.splitlines()) == 1 and "Traceback" not in err and str(port) in err


def test_a_port_in_use_is_one_line_and_exit_1(tmp_path):
    base = free_port_range(4)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", base + 1))
        taken.listen()
        out = run_cli("cluster", "--nodes", "2", "--base-port", str(base), "--http-base-port", str(base + 2),
                      "--data-dir", str(tmp_path / "c"))
        assert out.returncode == 1
        assert out.stderr.strip().count("\n") == 0 and "in use" in out.stderr and "Traceback" not in out.stderr
        out = run_cli("serve", "--id", f"127.0.0.1:{base + 1}", "--peers", f"127.0.0.1:{base + 1}",
                      "--http", f"127.0.0.1:{base + 3}", "--data-dir", str(tmp_path / "s"))
        assert out.returncode == 1
        assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr, out.stderr
        out = run_cli("serve", "--id", f"127.0.0.1:{base}", "--peers", f"127.0.0.1:{base}",
                      "--http", f"127.0.0.1:{base + 1}", "--data-dir", str(tmp_path / "s"))
        assert out.returncode == 1
        assert len(out.stderr.strip().splitlines()) == 1 and "HTTP" in out.stderr, out.stderr


def test_serve_stops_cleanly_on_sigterm_and_logs_fixed_phrases(tmp_path):
    node = ServeProcess(tmp_path).start()
    try:
        assert get_json(node.url + "/v1/status")["role"] == "leader"
    finally:
        code = node.stop()
    assert code == 0
    log = node.log.read_text()
    assert f"{node.raft} serving HTTP on {node.url}" in log
    assert f"{node.raft} became leader at term" in log
    assert f"{node.raft} stopping at term" in log and f"{node.raft} stopped" in log
    assert "Traceback" not in log


def test_cluster_stops_every_child_on_sigterm(tmp_path):
    cluster = LocalCluster(tmp_path / "c", nodes=2)
    try:
        cluster.start()
        out = "".join(cluster.lines)
        assert "NODE" in out and "HTTP" in out and str(tmp_path / "c") in out
        cluster.proc.send_signal(signal.SIGTERM)
        assert cluster.proc.wait(30) == 0
        assert not any(pid_alive(n["pid"]) for n in cluster.nodes)
        wait_for(lambda: any("cluster stopped" in line for line in cluster.lines), 5, "the goodbye line")
    finally:
        cluster.stop()


def test_cluster_children_do_not_outlive_a_killed_parent(tmp_path):
    cluster = LocalCluster(tmp_path / "c", nodes=1)
    try:
        cluster.start()
        child = cluster.nodes[0]["pid"]
        os.kill(cluster.proc.pid, signal.SIGKILL)
        cluster.proc.wait(10)
        wait_for(lambda: not pid_alive(child), 15, "the orphaned node to stop")
    finally:
        cluster.stop()


def test_cluster_json_lets_a_node_be_restarted_by_hand(tmp_path):
    # The recorded command line is complete: it names the node's flags and data dir.
    base = free_port_range(2)
    proc = subprocess.Popen(consensus_cmd("cluster", "--nodes", "1", "--base-port", str(base), "--http-base-port",
                                          str(base + 1), "--data-dir", str(tmp_path)),
                            cwd=ROOT, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: (tmp_path / "cluster.json").exists() or proc.poll() is not None, 30, "cluster.json")
        spec = json.loads((tmp_path / "cluster.json").read_text())["nodes"][0]
        argv = spec["argv"]
        assert argv[argv.index("--id") + 1] == spec["raft"] == f"127.0.0.1:{base}"
        assert argv[argv.index("--data-dir") + 1] == spec["data_dir"] == str(tmp_path / "n1")
        assert argv[argv.index("--http") + 1] == f"127.0.0.1:{base + 1}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
