"""``chaos check``: exit codes, summaries, --json, --html and one-line errors for bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "data" / "histories"
GOOD = DATA / "porcupine" / "jepsen" / "etcd_002.log"  # valid
BAD = DATA / "porcupine" / "jepsen" / "etcd_000.log"  # invalid
SLOW = DATA / "porcupine" / "jepsen" / "etcd_007.log"  # valid, but needs ~70,000 states
ROOT = Path(__file__).resolve().parents[2]


def chaos(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m chaos`` and capture its output."""
    return subprocess.run([sys.executable, "-m", "chaos", *args], capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_valid_file_exits_0_with_a_summary() -> None:
    run = chaos("check", "--model", "cas-register", str(GOOD))
    assert run.returncode == 0, run.stderr
    assert "valid" in run.stdout and "INVALID" not in run.stdout


def test_any_invalid_exits_1_and_names_the_failing_op(tmp_path: Path) -> None:
    run = chaos("check", "--model", "cas-register", "--html", str(tmp_path), str(GOOD), str(BAD))
    assert run.returncode == 1
    assert "etcd_000.log: INVALID" in run.stdout and "cannot linearize" in run.stdout and "line 85-86" in run.stdout
    page = (tmp_path / "jepsen_etcd_000.log.html").read_text()
    assert "not linearizable" in page and "cannot be linearized" in page
    assert "<script" not in page and "http" not in page.replace("http-equiv", "")  # standalone


def test_json_prints_one_object_per_file() -> None:
    run = chaos("check", "--json", "-m", "cas-register", str(GOOD), str(BAD))
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert [(r["file"], r["valid"]) for r in lines] == [(str(GOOD), True), (str(BAD), False)]
    assert all({"model", "ops", "elapsed_ms"} <= r.keys() for r in lines)
    assert lines[1]["failing_op"]["f"] == "read" and lines[1]["failing_line"] == 85
    assert lines[0]["ops"] == 77


def test_timeout_exits_2_when_nothing_is_invalid() -> None:
    run = chaos("check", "--json", "--timeout", "0", "-m", "cas-register", str(SLOW), str(GOOD))
    assert run.returncode == 2
    assert json.loads(run.stdout.splitlines()[0])["valid"] == "unknown"
    run = chaos("check", "--timeout", "0", "-m", "cas-register", str(SLOW), str(BAD))
    assert run.returncode == 1


def test_init_json_changes_the_verdict(tmp_path: Path) -> None:
    history = tmp_path / "h.jsonl"
    history.write_text('{"type":"invoke","process":0,"f":"read","value":null}\n'
                       '{"type":"ok","process":0,"f":"read","value":5}\n')
    assert chaos("check", "-m", "register", str(history)).returncode == 1
    assert chaos("check", "-m", "register", "--init", "5", str(history)).returncode == 0


def test_bad_input_is_one_line_naming_file_and_line_exit_255(tmp_path: Path) -> None:
    unpaired = tmp_path / "unpaired.jsonl"
    unpaired.write_text('{"type":"invoke","process":0,"f":"read","value":null}\n'
                        '{"type":"ok","process":1,"f":"read","value":5}\n')
    run = chaos("check", "-m", "register", str(unpaired))
    assert run.returncode == 255
    assert run.stderr.strip().count("\n") == 0 and f"{unpaired}:2:" in run.stderr
    garbage = tmp_path / "garbage.edn"
    garbage.write_text("[{:process 0 :type :invoke\n :f :read}\n {:process")
    run = chaos("check", "-m", "register", str(garbage))
    assert run.returncode == 255 and str(garbage) in run.stderr and run.stderr.strip().count("\n") == 0
    run = chaos("check", "-m", "paxos", str(GOOD))
    assert run.returncode == 255 and "unknown model 'paxos'" in run.stderr
    run = chaos("check", "-m", "register", str(tmp_path / "missing.jsonl"))
    assert run.returncode == 255 and "missing.jsonl" in run.stderr
    run = chaos("check", "-m", "register", "--init", "{bad", str(GOOD))
    assert run.returncode == 255 and "--init" in run.stderr


def test_model_that_cannot_read_the_ops_is_bad_input() -> None:
    run = chaos("check", "-m", "register", str(GOOD))  # the etcd log has cas ops
    assert run.returncode == 255 and f"{GOOD}:4:" in run.stderr and "cas" in run.stderr


def test_a_checker_crash_exits_255_with_one_line(monkeypatch) -> None:
    import argparse
    import io

    from chaos.checker import cli

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(cli, "check_calls", boom)
    args = argparse.Namespace(model="cas-register", init=None, timeout=None, json=False, html=None, files=[str(GOOD)])
    out, err = io.StringIO(), io.StringIO()
    assert cli.run(args, out, err) == 255
    assert err.getvalue().count("\n") == 1 and "crashed: RuntimeError: bug" in err.getvalue()


GOLDEN_SUMMARY = """\
porcupine/jepsen/etcd_000.log: INVALID  [cas-register, 85 ops, 1 partition(s), 0 crashed op(s) pruned, _ ms, 387 states]
  cannot linearize: process 11 read -> 2 (line 85-86)
  longest linearizable prefix: 43 of 85 ops, ending in state 0
knossos/cas-register/bad/rethink-fail-minimal.edn: INVALID  [cas-register, 4 ops, 1 partition(s), 0 crashed op(s) pruned, _ ms, 2 states]
  cannot linearize: process 1 read -> 3 (line 4-7)
  longest linearizable prefix: 2 of 4 ops, ending in state 4
porcupine/jepsen/etcd_095.log: valid  [cas-register, 0 ops, 0 partition(s), 0 crashed op(s) pruned, _ ms, 0 states]
"""


def test_summary_matches_the_golden_text() -> None:
    # Golden output (elapsed time masked): update it here when a change is intended.
    import re

    files = ["porcupine/jepsen/etcd_000.log", "knossos/cas-register/bad/rethink-fail-minimal.edn",
             "porcupine/jepsen/etcd_095.log"]
    run = chaos("check", "-m", "cas-register", *(str(DATA / f) for f in files))
    text = re.sub(r"\d+\.\d ms", "_ ms", run.stdout.replace(str(DATA) + "/", ""))
    assert text == GOLDEN_SUMMARY


def _register_history(path: Path, header: bool) -> Path:
    """A register run's history: a read of 0 before any write, valid only if keys start at 0."""
    lines = ['{"raftwork_history":1,"workload":"register","model":"kv","init":0}'] if header else []
    lines += ['{"index":0,"time":1,"type":"invoke","process":0,"f":"read","value":[7,null]}',
              '{"index":1,"time":2,"type":"ok","process":0,"f":"read","value":[7,0]}',
              '{"index":2,"time":3,"type":"invoke","process":1,"f":"write","value":[7,3]}',
              '{"index":3,"time":4,"type":"ok","process":1,"f":"write","value":[7,3]}']
    path.write_text("\n".join(lines) + "\n")
    return path


def test_the_history_header_states_the_model_and_initial_value(tmp_path: Path) -> None:
    stated = _register_history(tmp_path / "run.jsonl", header=True)
    assert chaos("check", "--model", "kv", str(stated)).returncode == 0  # the README's command, the run's verdict
    bare = chaos("check", str(stated))  # no --model: the header names it
    assert bare.returncode == 0 and "[kv, 2 ops" in bare.stdout, bare.stdout + bare.stderr
    assert chaos("check", "--model", "kv", "--init", "null", str(stated)).returncode == 1  # --init overrides
    unstated = _register_history(tmp_path / "old.jsonl", header=False)
    assert chaos("check", "--model", "kv", str(unstated)).returncode == 1  # nothing stated: keys start absent
    nameless = chaos("check", str(unstated))
    assert nameless.returncode == 255 and "names no model" in nameless.stderr and nameless.stderr.count("\n") == 1
