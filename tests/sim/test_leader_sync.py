"""The leader writes its log in parallel with replicating it (Raft thesis 10.2.1), yet every tick
ends with its journal synced: it counts itself towards a commit only at the next tick."""

from __future__ import annotations

from consensus.engine.core import RaftCore
from consensus.testing.sim import run_seed


def test_every_step_ends_with_every_journal_synced():
    result = run_seed(3)
    assert result.ok, result.report()
    assert result.acked > 0


def test_a_leader_that_never_synced_its_appends_is_caught(monkeypatch):
    def append_without_sync(self: RaftCore) -> None:
        self.journal._batching += 1  # a batch that never ends: nothing syncs the appends
        self._take_commands()

    monkeypatch.setattr(RaftCore, "_append_then_sync", append_without_sync)
    result = run_seed(3)
    assert any("unsynced journal entries" in v for v in result.violations), result.report()


def test_a_follower_that_replies_before_its_tick_sync_is_caught(monkeypatch):
    # Followers append a whole tick's messages and sync once; the replies wait for that sync.
    from consensus.engine.follower import FollowerRules

    monkeypatch.setattr(FollowerRules, "begin_round", lambda self: None)  # replies go out at once
    result = run_seed(3)
    assert any("before syncing its journal" in v for v in result.violations), result.report()
