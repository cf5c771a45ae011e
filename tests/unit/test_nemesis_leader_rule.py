"""The rule ChaosCluster.leader() uses to name the leader from the nodes' statuses."""

from __future__ import annotations

from chaos.cluster import agreed_leader

RAFT = {"n1": "r1", "n2": "r2", "n3": "r3"}


def st(role: str, term: int, leader: str | None) -> dict:
    return {"role": role, "term": term, "leader": leader}


def test_everyone_agrees():
    assert agreed_leader({"n1": st("leader", 2, "r1"), "n2": st("follower", 2, "r1"), "n3": st("follower", 2, "r1")},
                         RAFT, 3) == "n1"


def test_a_deposed_leader_at_a_lower_term_does_not_veto():
    statuses = {"n1": st("leader", 1, "r1"), "n2": st("leader", 2, "r2"), "n3": st("follower", 2, "r2")}
    assert agreed_leader(statuses, RAFT, 3) == "n2"


def test_a_node_at_a_higher_term_that_knows_no_leader_does_not_veto():
    # A node whose messages are lost keeps starting elections nobody hears.
    statuses = {"n1": st("candidate", 9, None), "n2": st("leader", 2, "r2"), "n3": st("follower", 2, "r2")}
    assert agreed_leader(statuses, RAFT, 3) == "n2"


def test_no_majority_or_a_conflict_means_no_leader():
    assert agreed_leader({"n1": st("leader", 1, "r1")}, RAFT, 3) is None            # only itself
    assert agreed_leader({"n1": st("leader", 2, "r1"), "n2": st("follower", 2, "r1"),
                          "n3": st("follower", 3, "r3")}, RAFT, 3) is None       # n3 names another at a later term
    assert agreed_leader({"n1": st("follower", 2, "r2"), "n2": st("follower", 2, "r2")}, RAFT, 3) is None  # n2 does not say it leads
    assert agreed_leader({}, RAFT, 3) is None


def test_two_of_three_down_a_single_survivor_never_leads():
    assert agreed_leader({"n3": st("leader", 4, "r3")}, RAFT, 3) is None
    assert agreed_leader({"n1": st("leader", 4, "r1")}, {"n1": "r1"}, 1) == "n1"
