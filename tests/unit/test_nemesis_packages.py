"""Nemesis packages as data: which can run on how many nodes, comma lists, and the run's own
checks (faults that failed, CRITICAL log lines, replica agreement from digest samples)."""

from __future__ import annotations

import pytest

from chaos.history import as_ops
from chaos.nemesis import MixNemesis, UnknownNemesis, make_nemesis
from chaos.runner import ConfigError, TestConfig, compare_samples, faults_check, logs_check, prepare
from chaos.verdict import Verdict


def test_a_nemesis_that_cannot_run_is_named_before_the_run():
    assert make_nemesis("bridge").problems(2) == ["bridge needs at least 3 nodes, not 2"]
    assert make_nemesis("bridge").problems(3) == []
    assert make_nemesis("partition").problems(2) == []  # the default grudges keep those that fit
    assert make_nemesis("partition").problems(1) == ["a partition needs at least 2 nodes, not 1"]
    assert make_nemesis("restart-follower").problems(2) and not make_nemesis("restart-follower").problems(3)
    assert make_nemesis("all").problems(2) == []  # "all" keeps what fits
    assert make_nemesis("kill,restart-follower").problems(2)  # a list the user named must fit whole
    with pytest.raises(ConfigError, match="nemesis bridge cannot run on 2 nodes: bridge needs at least 3 nodes"):
        prepare(TestConfig(workload="register", nemesis="bridge", nodes=2))
    prepare(TestConfig(workload="register", nemesis="partition", nodes=2))


def test_comma_lists_mix_the_named_nemeses():
    mix = make_nemesis("partition, kill-majority")
    assert isinstance(mix, MixNemesis) and mix.name == "partition,kill-majority"
    assert [n.name for n in mix.nemeses] == ["partition", "kill"]
    assert mix.nemeses[1].targets == ("majority",)
    for bad in ("partition,flood", "none,kill", ","):
        with pytest.raises(UnknownNemesis):
            make_nemesis(bad)


def _nemesis_ops(*ops):
    return as_ops([{"time": i * 10**9, "process": "nemesis", **op} for i, op in enumerate(ops)])


def test_a_fault_that_failed_makes_the_run_unknown_and_says_why():
    good = _nemesis_ops({"type": "invoke", "f": "start", "phase": "start"},
                        {"type": "info", "f": "start-partition", "phase": "start", "value": {"grudge": "bridge"}},
                        {"type": "info", "f": "stop-partition", "phase": "stop"})
    assert faults_check(good).valid is Verdict.VALID and faults_check(good).injected == 1
    bad = _nemesis_ops({"type": "invoke", "f": "start", "phase": "start"},
                       {"type": "info", "f": "start", "phase": "start", "error": "ValueError: bridge needs at least 3 nodes"})
    result = faults_check(bad)
    assert result.valid is Verdict.UNKNOWN
    assert result.failures == ("nemesis start failed at 1.0s: ValueError: bridge needs at least 3 nodes",)
    assert "bridge needs at least 3 nodes" in result.summary() and result.to_dict()["valid"] == "unknown"


def test_critical_engine_lines_make_the_run_invalid(tmp_path):
    (tmp_path / "n1.log").write_text("2026-01-01 INFO consensus.node: n1 became leader at term 2\n")
    (tmp_path / "n2.log").write_text("x WARNING pysyncobj: slow\n"
                                     "2026-01-01 CRITICAL pysyncobj.syncobj: truncating already-applied log entries from index 7\n")
    clean = logs_check({"n1": tmp_path / "n1.log"})
    assert clean.valid is Verdict.VALID and clean.scanned == ("n1",)
    found = logs_check({"n1": tmp_path / "n1.log", "n2": tmp_path / "n2.log", "n3": tmp_path / "missing.log"})
    assert found.valid is Verdict.INVALID and found.scanned == ("n1", "n2") and len(found.lines) == 1
    assert found.lines[0].startswith("n2: 2026-01-01 CRITICAL") and "truncating already-applied" in found.summary()


def test_replicas_are_compared_where_every_node_has_a_sample():
    assert compare_samples({"n1": {5: "a"}, "n2": {}}) is None
    assert compare_samples({"n1": {5: "a"}, "n2": {6: "a"}}) is None  # the log moved: no common index yet
    agreed = compare_samples({"n1": {5: "a", 6: "b"}, "n2": {6: "b"}, "n3": {4: "z", 6: "b"}})
    assert agreed is not None and agreed.valid is Verdict.VALID and agreed.index == 6
    split = compare_samples({"n1": {9: "a"}, "n2": {9: "a"}, "n3": {9: "c"}})
    assert split is not None and split.valid is Verdict.INVALID
    assert split.reason == "state digests differ at applied index 9: n1,n2 vs n3"
