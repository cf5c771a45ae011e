"""Availability figures from a history: the client stall after each fault that lost the leader."""

from __future__ import annotations

import pytest

from chaos.history import Op
from chaos.runner.availability import availability, leader_loss_stalls, loses_leader

S = 1_000_000_000


def op(i, type_, process, f, value=None, t=0, node=None, **extra):
    if type_ == "ok" and isinstance(process, int) and node is None:
        node = "n2"
    return Op(index=i, type=type_, process=process, f=f, value=value, time=int(t * S), node=node or None, extra=extra)


def start(f, value, leader, members=("n1", "n2", "n3")):
    return op(0, "info", "nemesis", f, value, phase="start", leader=leader, members=list(members))


@pytest.mark.parametrize("nemesis, lost", [
    (start("kill", {"target": "leader", "nodes": ["n1"]}, "n1"), True),
    (start("kill", {"target": "one", "nodes": ["n2"]}, "n1"), False),
    (start("pause", {"target": "one", "nodes": ["n1"]}, "n1"), True),
    (start("start-partition", {"grudge": "isolate_one", "cut": [["n1", "n2"], ["n1", "n3"]]}, "n1"), True),
    (start("start-partition", {"grudge": "isolate_one", "cut": [["n1", "n3"], ["n2", "n3"]]}, "n1"), False),
    (start("start-partition", {"grudge": "bridge", "cut": [["n1", "n2"], ["n4", "n5"], ["n1", "n4"], ["n2", "n5"]]},
           "n1", ("n1", "n2", "n3", "n4", "n5")), False),  # n1 still has n3 and n5: a majority with itself
    (start("start-partition", {"grudge": "one_way", "cut": [], "one_way": [["n1", "n2"], ["n1", "n3"]]}, "n1"), True),
    (start("restart-follower", {"nodes": ["n2"], "leader": "n1", "transfer_to": "n3"}, "n1"), True),
    (start("kill", {"target": "leader", "nodes": ["n1"]}, None), False),  # no leader known: not counted
    (start("start-latency", {"latency_ms": 100, "jitter_ms": 50, "nodes": ["n1", "n2", "n3"]}, "n1"), False),
])
def test_which_faults_lose_the_leader(nemesis, lost):
    assert loses_leader(nemesis) is lost


def test_the_stall_runs_from_the_fault_to_the_first_ok_of_an_op_invoked_after_it():
    history = [
        op(0, "invoke", 0, "write", 1, t=0.9),
        op(1, "invoke", "nemesis", "start", t=1.0),
        op(2, "info", "nemesis", "kill", {"target": "leader", "nodes": ["n1"]}, t=1.1, phase="start", leader="n1",
           members=["n1", "n2", "n3"]),
        op(3, "ok", 0, "write", 1, t=1.2),  # invoked before the fault: does not end the stall
        op(4, "invoke", 1, "read", t=1.5),
        op(5, "info", 1, "read", t=3.0),
        op(6, "invoke", 2, "read", t=3.0),
        op(61, "invoke", 3, "write", t=3.1),
        op(62, "ok", 3, "write", t=3.2, node=""),  # no node answered it (a local fenced write): no end
        op(7, "ok", 2, "read", 0, t=3.5),
        op(8, "invoke", "nemesis", "start", t=5.0),
        op(9, "info", "nemesis", "kill", {"target": "one", "nodes": ["n3"]}, t=5.0, phase="start", leader="n2",
           members=["n1", "n2", "n3"]),
    ]
    assert leader_loss_stalls(history) == [pytest.approx(2.5)]
    figures = availability(history, 0.8).to_dict()
    assert figures == {"leader_losses": 1, "stalls_s": [2.5], "median_stall_s": 2.5, "recovery_s": 0.8}
