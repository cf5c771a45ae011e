"""Every `consensus bench` scenario, end to end with tiny figures, through the command line.

The default suite runs the embedded, http and kv scenarios; the rest (locks, sweeps, failover,
catch-up, memory, profile, the plots) run with ``pytest -m bench``.

One run covers all scenarios (starting clusters is the costly part); the assertions check each
scenario's rows, the ratios against the baselines, the events' terms and the output files.
The full-size run is in test_bench_full.py (pytest -m bench).
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from consensus.bench.etcd import etcd_binary
from consensus.bench.profile import py_spy
from consensus.bench.settings import SCENARIOS

ROOT = Path(__file__).resolve().parents[2]
HAS_ETCD = etcd_binary() is not None

SMOKE = ["--scenario", "all", "--concurrency", "4", "--embedded-concurrency", "4", "--sweep", "1,4", "--payloads", "16,1024",
         "--sizes", "1", "--duration", "0.3", "--warmup", "0.1", "--repeats", "1", "--failovers", "1",
         "--failover-writers", "4", "--failover-window", "4", "--catchup-entries", "100", "--pause-seconds", "0.5",
         "--profile-seconds", "1", "--memory-items", "300", "--lock-clients", "4"]


def _bench(*args: str, timeout: float = 280) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "consensus", "bench", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=env)


# The default suite runs the main scenarios (the embedded API and the HTTP paths beside etcd);
# every scenario, sweeps, failover, catch-up, memory and profile included, runs under -m bench.
FAST = ["--scenario", "embedded,http,kv", *SMOKE[2:]]


def _run_smoke(tmp_path_factory, args: list[str]) -> tuple[subprocess.CompletedProcess[str], Path, dict]:
    out = tmp_path_factory.mktemp("bench")
    result = _bench(*args, "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    return result, out, json.loads((out / "results.json").read_text())


@pytest.fixture(scope="module")
def fast(tmp_path_factory) -> tuple[subprocess.CompletedProcess[str], Path, dict]:
    return _run_smoke(tmp_path_factory, FAST)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> tuple[subprocess.CompletedProcess[str], Path, dict]:
    return _run_smoke(tmp_path_factory, SMOKE)


def _loads(data: dict, scenario: str, system: str | None = None) -> list[dict]:
    return [r for r in data["loads"] if r["scenario"] == scenario and (system is None or r["system"] == system)]


def _sane(row: dict) -> None:
    lat = row["latency_ms"]
    assert row["rate"] > 0 and 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"], row


def test_the_client_ceiling_is_measured_at_every_level_and_printed(fast):
    result, _, data = fast
    # every level the run loads at: --concurrency 4 (the sweep's 1 and 4 under -m bench)
    assert set(data["client_ceiling"]) == {"4"} and all(v > 0 for v in data["client_ceiling"].values())
    samples = data["client_ceiling_samples"]
    assert all(len(v) >= 2 for v in samples.values())  # before the first scenario and after each
    assert "load client ceiling (do-nothing HTTP server, median of" in result.stdout


def test_embedded_rows_compare_each_op_with_raw_pysyncobj(fast):
    _, _, data = fast
    rows = _loads(data, "embedded", "raftwork")
    assert [r["op"] for r in rows] == ["propose", "linearizable read", "stale read"]
    for row in rows + _loads(data, "embedded", "pysyncobj"):
        _sane(row)
    assert all(r["baseline"] == "pysyncobj" and r["ratio"] > 0 for r in rows)


def _paired_rows(data: dict, scenario: str, ops: list[str], concurrency: int) -> list[dict]:
    """Check ``scenario`` has each op to the leader and through a follower, clean and paired with etcd."""
    rows = _loads(data, scenario, "raftwork")
    assert [(r["op"], r["target"]) for r in rows] == [(op, t) for op in ops for t in ("leader", "follower")]
    for row in rows:
        _sane(row)
        assert row["failed"] == row["unknown"] == 0, row["errors"]
        assert row["concurrency"] == concurrency and row["client_ceiling"] == data["client_ceiling"][str(concurrency)]
        if HAS_ETCD:
            assert row["baseline"] == "etcd" and row["ratio"] == pytest.approx(row["rate"] / _etcd_twin(data, row)["rate"], abs=0.01)
    if HAS_ETCD:
        etcd_rows = _loads(data, scenario, "etcd")
        assert [(r["op"], r["target"]) for r in etcd_rows] == [(r["op"], r["target"]) for r in rows]
        for row in etcd_rows:
            _sane(row)
            assert row["failed"] == row["unknown"] == 0, row["errors"]
    else:
        assert any("etcd is not installed" in s["reason"] for s in data["skipped"])
    return rows


def _etcd_twin(data: dict, row: dict) -> dict:
    return next(r for r in _loads(data, row["scenario"], "etcd") if (r["op"], r["target"]) == (row["op"], row["target"]))


def test_http_rows_go_to_the_leader_and_through_a_follower_and_pair_with_etcd(fast):
    _, _, data = fast
    rows = _paired_rows(data, "http", ["counter incr", "linearizable get", "stale get"], 4)
    assert [r["workload"] for r in rows[::2]] == ["rw-incr", "rw-get", "rw-stale"]


def test_kv_rows_put_and_read_both_ways_beside_etcd_put_and_ranges(fast):
    _, _, data = fast
    rows = _paired_rows(data, "kv", ["kv put", "kv linearizable get", "kv stale get"], 4)
    assert [r["workload"] for r in rows[::2]] == ["rw-kv-put", "rw-kv-get", "rw-kv-stale"]
    if HAS_ETCD:
        assert [r["workload"] for r in _loads(data, "kv", "etcd")[::2]] == ["etcd-put", "etcd-range", "etcd-range-serializable"]


@pytest.mark.bench
def test_lock_rows_contend_on_one_lock_and_spread_over_one_lock_per_client_beside_etcd(smoke):
    result, _, data = smoke
    rows = _paired_rows(data, "locks", ["lock 1 name", "lock 4 names"], 4)  # --lock-clients 4
    assert {r["workload"] for r in rows} == {"rw-lock"}
    if HAS_ETCD:
        assert {r["workload"] for r in _loads(data, "locks", "etcd")} == {"etcd-lock"}
    assert "locks     raftwork   lock 1 name" in result.stdout


@pytest.mark.bench
def test_sweep_payload_and_sizes_rows_cover_every_level(smoke):
    _, _, data = smoke
    sweep = _loads(data, "sweep", "raftwork")
    assert sorted((r["op"], r["concurrency"]) for r in sweep) == [("counter incr", 1), ("counter incr", 4),
                                                                  ("linearizable get", 1), ("linearizable get", 4)]
    payload = _loads(data, "payload", "raftwork")
    assert sorted(r["payload"] for r in payload if r["op"] == "propose") == [16, 1024]
    assert sorted(r["payload"] for r in payload if r["op"] == "kv put") == [16, 1024]
    sizes = _loads(data, "sizes", "raftwork")
    assert {r["nodes"] for r in sizes} == {1} and {r["op"] for r in sizes} == {"counter incr", "linearizable get", "stale get"}
    for row in sweep + payload + sizes:
        _sane(row)


@pytest.mark.bench
def test_failover_and_catchup_events_report_times_and_terms(smoke):
    _, _, data = smoke
    systems = ["raftwork", "etcd"] if HAS_ETCD else ["raftwork"]
    failover = [e for e in data["events"] if e["scenario"] == "failover"]
    assert [e["system"] for e in failover] == systems
    for event in failover:
        assert len(event["samples_s"]) == 1 and 0 < event["median_s"] < 4
    catchup = [e for e in data["events"] if e["scenario"] == "catchup"]
    assert [e["system"] for e in catchup] == systems * 2
    for event in catchup:
        assert event["median_s"] is not None and event["median_s"] >= 0
        assert 0 < event["term_before"] <= event["term_after"]
    restarted = [e for e in catchup if e["what"].startswith("restart")]
    assert all(e["detail"]["entries_missed"] >= 100 for e in restarted)
    if HAS_ETCD:
        assert catchup[0]["baseline"] == "etcd" and catchup[0]["ratio"] is not None


@pytest.mark.bench
def test_memory_rows_give_bytes_per_item_on_every_node(smoke):
    _, out, data = smoke
    rows = data["memory"]
    expected = [("raftwork", "per counter key"), ("raftwork", "per exactly-once record"), ("raftwork", "per lock session")]
    if HAS_ETCD:
        expected += [("etcd", "per key"), ("etcd", "per lease")]
    assert [(m["system"], m["what"]) for m in rows] == expected
    for m in rows:
        assert m["items"] == 300 and len(m["bytes_per_item"]) == 3 and all(mb > 0 for mb in m["rss_before_mb"])
    with open(out / "memory.csv") as f:
        assert len(list(csv.DictReader(f))) == len(rows)


@pytest.mark.skipif(py_spy() is None, reason="py-spy is not installed (pip install py-spy)")
@pytest.mark.bench
def test_the_profile_names_the_leaders_threads_and_frames(smoke):
    _, out, data = smoke
    text = "\n".join(data["profile"])
    assert "leader:" in text and "follower:" in text and "client:" in text and "self (top of stack)" in text
    assert "self time by package:" in text and "aiohttp" in text
    assert "thread MainThread" in text
    assert (out / "profile" / "profile-leader.txt").stat().st_size > 0


@pytest.mark.bench
def test_the_results_dir_holds_csv_json_the_table_and_the_plots(smoke):
    result, out, data = smoke
    with open(out / "loads.csv") as f:
        assert len(list(csv.DictReader(f))) == len(data["loads"])
    with open(out / "events.csv") as f:
        assert len(list(csv.DictReader(f))) == len(data["events"])
    assert (out / "table.txt").read_text().strip() == result.stdout.strip()
    for png in ("throughput-vs-concurrency.png", "latency-quantiles.png", "cluster-size.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"results in {out}" in result.stderr


def test_help_lists_every_scenario_with_what_it_measures():
    result = _bench("--help", timeout=60)
    assert result.returncode == 0
    for name in SCENARIOS:
        assert f"  {name:<9} {SCENARIOS[name][:30]}" in result.stdout
    assert "--lock-clients N" in result.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--scenario", "nope"], "unknown scenario 'nope'"),
        (["--concurrency", "0"], "each value must be from 1 to 4096"),
        (["--targets", "leader,anywhere"], "--targets takes leader, follower or both"),
        (["--duration", "-1"], "must be positive"),
        (["--lock-clients", "0"], "must be positive"),
        (["--warmup", "-1"], "--warmup must not be negative"),
    ],
)
def test_bad_flags_exit_2_with_one_line(args, message):
    result = _bench(*args, timeout=60)
    assert result.returncode == 2 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and result.stdout == ""


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found |= {int(t) for t in text}
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_sigterm_stops_the_run_and_every_process_it_started(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "consensus", "bench", "--scenario", "http", "--duration", "60", "--repeats", "1",
                             "--concurrency", "2", "--no-etcd", "--out", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # wait until the cluster serves and a load runs
            if line.startswith("bench: http:"):
                break
        deadline = time.monotonic() + 30
        while len(started := _children(proc.pid)) < 4 and time.monotonic() < deadline:  # three nodes and the load client
            time.sleep(0.05)
        assert len(started) >= 4
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130 and "interrupted" in err
    assert not [pid for pid in started if _alive(pid)]
