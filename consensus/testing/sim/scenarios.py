"""Named regression scenarios: hand-written schedules for the stories that broke Raft before.

Each scenario drives a world step by step (holding and releasing chosen messages where the story
needs a particular order), then heals everything, lets the cluster settle, and runs the same
checks as a seed sweep. ``SCENARIOS[name](legacy=False) -> SimResult``; with ``legacy=True`` the
engine runs as it was before the Raft fixes (``legacy.py``), which is how a scenario proves it
reproduces its bug.

- ``lost_ack_resend``: the issue's schedule. A follower F that was down catches up from a new
  leader L; the leader handles F's first acknowledgement before the others, rewinds, re-sends;
  F receives an old batch after acknowledging later ones and (in pysyncobj) deletes entries it
  acknowledged; L is cut off and the next leader's log lacks an acknowledged write.
- ``follower_restart_during_leader_change``: a follower is down while thousands of entries
  commit (through snapshots), leadership is transferred, and the follower restarts under
  writers on every node.
- ``deposed_leader_divergent_tail``: an isolated leader appends 200 entries nobody else has; the
  majority moves on; on rejoining, its tail is replaced within a few round trips (conflict hints).
- ``rejoin_no_term_bump``: a follower cut off for many election timeouts rejoins; pre-vote keeps
  it from raising the term or deposing the leader.
- ``crash_unsynced``: a majority crashes right after acknowledging writes; with fsync before every
  acknowledgement they survive; ``unsynced=True`` (a journal that never fsyncs, as pysyncobj's)
  loses them.
- ``dropped_forward``: a follower's forwarded commands are answered into the void; their
  callbacks fail as unknown within the bound and later writes through that follower succeed.
- ``clock_skew``: a leader whose wall clock is an hour fast cannot move log time more than the
  first-step bound, and time never goes backwards when a slow-clocked leader follows.
- ``garbage_messages``: malformed peer messages are dropped without an exception in the tick.
- ``snapshot_install_during_write``: a follower's own snapshot, captured before it installed a
  newer one from the leader, finishes writing afterwards; put in place, it would make a restart
  clear the journal.
- ``stale_refusal_snapshot``: a late duplicate of a follower's old refusal makes the leader send
  it an old snapshot after it caught up; installing it would delete entries it acknowledged.
- ``deposed_leader_reads``: a leader cut off from the others keeps believing it leads while a new
  leader commits writes; linearizable reads sent to it never answer (they fail or time out),
  reads on the majority's side see the new writes. ``unconfirmed=True`` runs ReadIndex without
  its heartbeat round (the bug it prevents): the old leader then answers stale reads.
"""

from __future__ import annotations

import pickle
import time
from typing import Any, Callable

from consensus.engine.core import FIRST_STEP_NS, RaftCore
from consensus.engine.internals import LEADER
from consensus.engine.read_index import ReadIndex
from consensus.testing.sim import SimResult, _critical_lines, _liveness
from consensus.testing.sim.faults import Fault, apply_fault
from consensus.testing.sim.network import Noise, _pair
from consensus.testing.sim.world import SimConfig, World, patched


class Script:
    """A world driven by hand; ``finish()`` heals, settles and checks, returning the verdict."""

    def __init__(self, name: str, legacy: bool, config: SimConfig | None = None, seed: int = 1) -> None:
        from consensus.testing.sim.legacy import LegacyCore

        self.name = name
        self.legacy = legacy
        self.world = World(seed, config or SimConfig(noise=Noise()), LegacyCore if legacy else RaftCore)
        self.started = time.perf_counter()
        self.notes: list[str] = []
        self.problems: list[str] = []

    def run(self, seconds: float) -> None:
        self.world.run_until(self.world.now + seconds)

    def run_until(self, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = self.world.now + timeout
        while self.world.now < deadline:
            value = predicate()
            if value:
                return value
            self.run(0.01)
        self.problems.append(f"scenario step timed out: {what}")
        raise _Stuck(what)

    def leader(self) -> str | None:
        leaders = self.world.leaders()
        return leaders[0] if len(leaders) == 1 else None

    def raft(self, node: str) -> Any:
        return self.world.core(node).raft

    def write(self, node: str, n: int = 1) -> list[int]:
        return [cid for cid in (self.world.submit(node) for _ in range(n)) if cid is not None]

    def acked(self, cid: int) -> bool:
        return cid in self.world.acked

    def note(self, text: str) -> None:
        self.notes.append(text)
        self.world.note(f"scenario: {text}")

    def finish(self, settle: float = 10.0) -> SimResult:
        world = self.world
        for (src, dst) in list(world.network.held):
            world.network.unhold(src, dst)
            world.network.release(src, dst)
        apply_fault(world, Fault(world.now, "heal"))
        for node in world.nodes.values():
            node.storage.failing = False
            node.skew_ns = 0
        apply_fault(world, Fault(world.now, "restart_all"))
        self.run(settle)
        liveness = _liveness(world)
        world.checks.final()
        return self.result(liveness)

    def result(self, liveness: list[str] | None = None) -> SimResult:
        world = self.world
        violations = list(world.checks.violations) + self.problems
        return SimResult(world.seed, violations, liveness or [], [], list(world.trace), acked=len(world.acked),
                         terms=len(world.checks.leader_of_term), seconds=time.perf_counter() - self.started,
                         legacy=self.legacy, scenario=self.name)


class _Stuck(Exception):
    pass


def _scenario(fn: Callable[[Script], SimResult | None], config: Callable[[], SimConfig] | None = None) -> Callable[..., SimResult]:
    def run(legacy: bool = False, **options: Any) -> SimResult:
        chosen = options.pop("config", None) or (config() if config else None)
        script = Script(fn.__name__, legacy, chosen, options.pop("seed", 1))
        script.options = options  # type: ignore[attr-defined]
        try:
            with patched(script.world), _critical_lines(script.world):
                for node in script.world.nodes:
                    script.world.start(node)
                try:
                    result = fn(script)
                except _Stuck:
                    result = script.result()
            return result if result is not None else script.result()
        finally:
            script.world.close()

    run.__name__ = fn.__name__
    run.__doc__ = fn.__doc__
    SCENARIOS[fn.__name__] = run
    return run


SCENARIOS: dict[str, Callable[..., SimResult]] = {}


def _is_success_ack(message: dict[str, Any]) -> bool:
    return message.get("type") == "next_node_idx" and bool(message.get("success"))


def _two_entries_per_message() -> SimConfig:
    return SimConfig(noise=Noise(), message_bytes=100)


def lost_ack_resend(s: Script) -> SimResult:
    """The issue's schedule (see the module docstring)."""
    world, net = s.world, s.world.network
    lead = s.run_until(s.leader, 5, "a first leader")
    g, f = [n for n in world.nodes if n != lead]
    s.note(f"L={lead} G={g} F={f}")
    world.crash(f)
    s.run(0.2)
    writes = s.write(lead, 5)
    s.run_until(lambda: all(s.acked(c) for c in writes), 5, "entries committed by L and G while F is down")
    world.crash(g)
    s.run_until(lambda: s.raft(lead).state != LEADER, 5, "L steps down without a quorum")
    first_term = s.raft(lead).current_term
    net.hold(f, lead, _is_success_ack)  # F's acknowledgements wait from the start
    world.start(f)
    s.run_until(lambda: s.leader() == lead and s.raft(lead).current_term > first_term, 10, "L wins a new term with F")
    [a] = s.write(lead)
    s.run_until(lambda: any(s.raft(f).term_at(i) == s.raft(lead).current_term for i in range(s.raft(f).first_index(), s.raft(f).last_index() + 1))
                and s.raft(f).last_index() >= s.raft(lead).last_index(), 5, "F holds every entry, acks held")
    s.note(f"F acknowledged {len(net.held[(f, lead)])} batches; L sees only the first")
    net.release(f, lead, 1)
    s.run(0.05)
    net.hold(lead, f)  # what L sends F from now on (the re-send) waits
    s.write(lead)
    s.run(0.05)
    net.unhold(f, lead)
    net.release(f, lead)  # the other acknowledgements: A commits
    s.run_until(lambda: s.acked(a), 5, "A acknowledged")
    resends = [m for _, _, m in net.held.get((lead, f), []) if m.get("type") == "append_entries" and m.get("entries")]
    s.note(f"L re-sent {len(resends)} batches to F; F receives only the first")
    if resends:
        first = next(i for i, (_, _, m) in enumerate(net.held[(lead, f)]) if m.get("entries"))
        net.release(lead, f, first + 1)
    net.drop_held(lead, f)
    net.unhold(lead, f)
    s.run(0.05)
    world.crash(lead)  # L is cut off
    world.start(g)
    s.run_until(lambda: s.leader() is not None, 10, "F and G elect a leader")
    s.run(1.0)
    return s.finish()


_scenario(lost_ack_resend, _two_entries_per_message)


@_scenario
def follower_restart_during_leader_change(s: Script) -> SimResult:
    """A follower misses thousands of entries and restarts while leadership moves."""
    world = s.world
    lead = s.run_until(s.leader, 5, "a leader")
    follower = next(n for n in world.nodes if n != lead)
    world.crash(follower)
    total = int(getattr(s, "options", {}).get("entries", 600))
    for _ in range(total // 50):
        s.write(lead, 50)
        s.run(0.05)
    s.run_until(lambda: not world.pending, 20, "the writes commit")
    world.core(lead).transfer_leadership(None, lambda *_: None)
    world.touched[lead] = None
    s.run(0.05)
    world.start(follower)
    for _ in range(60):  # writers on every node while leadership moves and the follower catches up
        for node in world.alive():
            s.write(node)
        s.run(0.03)
    s.run(2.0)
    return s.finish()


@_scenario
def deposed_leader_divergent_tail(s: Script) -> SimResult:
    """An isolated leader's 200 unreplicated entries are replaced in a few round trips."""
    world = s.world
    lead = s.run_until(s.leader, 5, "a leader")
    others = [n for n in world.nodes if n != lead]
    for other in others:
        world.network.block(lead, other)
        world.network.block(other, lead)
    s.write(lead, 200)  # they will never commit
    s.run(0.1)
    s.run_until(lambda: any(world.core(n).raft.state == LEADER for n in others), 10, "the majority elects a leader")
    new = next(n for n in others if world.core(n).raft.state == LEADER)
    s.write(new, 20)
    s.run(0.5)
    rejections_before = sum(world.core(n).leader.rejections for n in others)
    heal_at = world.now
    apply_fault(world, Fault(world.now, "heal"))

    def repaired() -> bool:
        current = s.leader()
        if current is None or current == lead:
            return False
        commit = s.raft(current).commit_index
        return s.raft(lead).last_index() >= commit and s.raft(lead).term_at(commit) == s.raft(current).term_at(commit)

    s.run_until(repaired, 120, "the old leader's tail is replaced")
    s.repair_seconds = world.now - heal_at  # type: ignore[attr-defined]
    s.round_trips = sum(world.core(n).leader.rejections for n in others) - rejections_before  # type: ignore[attr-defined]
    s.note(f"repaired in {s.repair_seconds:.2f}s of simulated time, {s.round_trips} refused AppendEntries")  # type: ignore[attr-defined]
    result = s.finish()
    result.stats = {"repair_seconds": s.repair_seconds, "round_trips": s.round_trips}  # type: ignore[attr-defined]
    return result


@_scenario
def rejoin_no_term_bump(s: Script) -> SimResult:
    """A follower cut off for many election timeouts rejoins without raising the term."""
    world = s.world
    lead = s.run_until(s.leader, 5, "a leader")
    term = s.raft(lead).current_term
    loner = next(n for n in world.nodes if n != lead)
    for other in world.nodes:
        if other != loner:
            world.network.block(loner, other)
            world.network.block(other, loner)
    for _ in range(40):  # 10 s cut off, writes continuing on the majority
        s.write(lead)
        s.run(0.25)
    apply_fault(world, Fault(world.now, "heal"))
    s.run(5.0)
    now_leader = s.leader()
    if now_leader != lead or s.raft(lead).current_term != term:
        s.problems.append(f"the rejoining node disrupted the leader: term {term} -> {s.raft(lead).current_term}, "
                          f"leader {lead} -> {now_leader}")
    return s.finish()


@_scenario
def crash_unsynced(s: Script) -> SimResult:
    """A majority crashes right after acknowledging writes; the writes survive the restart."""
    world = s.world
    if getattr(s, "options", {}).get("unsynced"):
        for node in world.nodes.values():
            node.storage.honour_sync = False
    lead = s.run_until(s.leader, 5, "a leader")
    s.write(lead, 5)
    s.run(1.0)
    for sim_node in world.nodes.values():
        sim_node.storage.writeback()  # what the OS wrote back on its own so far
    follower, lagging = [n for n in world.nodes if n != lead]
    for node_id in (lead, follower):  # the third node misses the next writes
        world.network.block(node_id, lagging)
        world.network.block(lagging, node_id)
    writes = s.write(lead, 20)
    s.run_until(lambda: all(s.acked(c) for c in writes), 5, "the writes are acknowledged")
    for node_id in (lead, follower):
        world.crash(node_id)  # power cut of the majority that acknowledged: what was not synced is gone
    apply_fault(world, Fault(world.now, "heal"))
    s.run(0.5)
    for node_id in (lead, follower):
        world.start(node_id)
    s.run_until(s.leader, 10, "a leader after the restart")
    return s.finish()


@_scenario
def dropped_forward(s: Script) -> SimResult:
    """Forwarded commands whose answers are lost fail as unknown; later writes still succeed."""
    world = s.world
    lead = s.run_until(s.leader, 5, "a leader")
    follower = next(n for n in world.nodes if n != lead)
    world.network.hold(lead, follower, lambda m: m.get("type") == "apply_command_response")
    lost = s.write(follower, 5)
    s.run(0.5)
    world.network.drop_held(lead, follower)
    world.network.unhold(lead, follower)
    s.run_until(lambda: not any(c in world.pending for c in lost), 30, "the lost answers are failed as unknown")
    later = s.write(follower, 5)
    s.run_until(lambda: all(s.acked(c) for c in later), 5, "later writes through the follower succeed")
    return s.finish()


@_scenario
def clock_skew(s: Script) -> SimResult:
    """Log time jumps at most the first step for a fast leader and never goes backwards."""
    from consensus.engine import payload
    from consensus.engine.stamping import payload_of

    world = s.world
    lead = s.run_until(s.leader, 5, "a leader")
    s.write(lead, 5)
    s.run(0.5)
    fast = next(n for n in world.nodes if n != lead)
    world.nodes[fast].skew_ns = 3600 * 10**9
    slow = next(n for n in world.nodes if n not in (lead, fast))
    world.nodes[slow].skew_ns = -600 * 10**9
    for target in (fast, slow):
        world.core(s.leader() or lead).transfer_leadership(world.core(target).so.selfNode, lambda *_: None)
        s.run_until(lambda t=target: s.leader() == t, 10, f"{target} leads")  # type: ignore[misc]
        for _ in range(20):
            s.write(target)
            s.run(0.05)
    raft = s.raft(s.leader() or lead)
    times = [payload.time_of(p) for p in (payload_of(raft.entry(i)[0]) for i in range(raft.first_index(), raft.last_index() + 1)) if p]
    steps = [b - a for a, b in zip(times, times[1:])]
    if any(step < 0 for step in steps):
        s.problems.append("leader time went backwards")
    if steps and max(steps) > FIRST_STEP_NS + 10**9:
        s.problems.append(f"leader time jumped {max(steps) / 1e9:.1f}s")
    return s.finish()


@_scenario
def garbage_messages(s: Script) -> SimResult:
    """Malformed peer messages are dropped; the node keeps working."""
    world = s.world
    lead = s.run_until(s.leader, 5, "a leader")
    victim = next(n for n in world.nodes if n != lead)
    transport = world.network.endpoints[victim]
    bad: list[Any] = [None, 7, "x", [], {"type": "append_entries"}, {"type": "append_entries", "term": "1", "commit_index": 0},
                      {"type": "next_node_idx", "next_node_idx": None, "reset": 1, "success": 0},
                      {"type": "request_vote", "term": 99}, {"type": "apply_command", "command": 5},
                      {"type": "nope"}, {"type": "append_entries", "term": 1, "commit_index": 0, "entries": [[1, 2]]}]
    for message in bad:
        transport.deliver(lead, message)
    if world.core(victim).dropped_messages != len(bad):
        s.problems.append(f"{world.core(victim).dropped_messages} of {len(bad)} malformed messages dropped")
    writes = s.write(victim, 5)
    s.run_until(lambda: all(s.acked(c) for c in writes), 5, "writes still succeed")
    return s.finish()


@_scenario
def snapshot_while_capturing(s: Script) -> SimResult:
    """A follower behind the leader's first entry returns while the leader writes a snapshot.

    Until the write finishes pysyncobj has no snapshot to send; before the fix its leader sent
    empty snapshot messages in a loop that ended only on a wall-clock tick (forever here, under
    virtual time: the run never finished). Now the follower waits for the snapshot and catches up.
    """
    world = s.world
    lead = s.run_until(s.leader, 5, "a leader")
    follower = next(n for n in world.nodes if n != lead)
    world.crash(follower)
    s.write(lead, 150)  # past the compaction threshold: the leader's log now starts after 1
    s.run_until(lambda: not world.pending, 20, "the writes commit")
    s.run_until(lambda: s.raft(lead).first_index() > 1, 20, "the leader compacts its log")
    held: list[Callable[[], None]] = []
    world.core(lead).snapshots.runner = held.append  # the next snapshot write waits for us
    s.write(lead, 150)
    s.run_until(lambda: held, 20, "the leader starts writing a snapshot")
    world.start(follower)
    s.run(1.0)  # the follower asks for entries the leader no longer has; no snapshot to send yet
    world.core(lead).snapshots.runner = world.core(follower).snapshots.runner
    for write in held:
        write()
    s.run_until(lambda: s.raft(follower).commit_index >= s.raft(lead).commit_index, 30, "the follower catches up")
    return s.finish()


@_scenario
def stale_refusal_snapshot(s: Script) -> SimResult:
    """A late duplicate of an old refusal makes the leader send an old snapshot to a caught-up follower.

    F misses enough entries that the leader compacts past them, returns, is refused-then-
    repaired by a snapshot and catches up. G goes down; L and F commit (F acknowledges) more
    writes. Then the network delivers a second copy of F's first refusal (a duplicate delayed
    past later messages: Raft assumes a network that does this). pysyncobj's leader takes the
    old hint, finds it below its log's start and sends F its snapshot; pysyncobj's follower
    installs any snapshot it is sent: it clears its journal, deleting the entries it
    acknowledged. L dies, G returns, F and G elect a leader without the acknowledged writes.
    """
    world, net = s.world, s.world.network
    lead = s.run_until(s.leader, 5, "a leader")
    f, g = [n for n in world.nodes if n != lead]
    s.note(f"L={lead} F={f} G={g}")
    net.hold(lead, f, lambda m: m.get("type") == "append_entries")  # F misses what L sends it
    s.write(lead, 30)  # fewer than a compaction takes
    s.run_until(lambda: not world.pending, 20, "the writes commit with G")
    refusals: list[tuple[int, bytes]] = []

    def keep_a_copy(message: dict[str, Any]) -> bool:
        if message.get("type") == "next_node_idx" and message.get("reset") and not refusals:
            refusals.append((net.epoch[_pair(f, lead)], pickle.dumps(message, protocol=2)))
        return False  # delivered now as usual; the copy comes later

    net.hold(f, lead, keep_a_copy)
    net.drop_held(lead, f)
    net.unhold(lead, f)  # L's next heartbeat starts past F's log: F refuses it
    s.run_until(lambda: refusals and s.raft(f).commit_index >= s.raft(lead).commit_index, 20, "F is refused, repaired, caught up")
    net.unhold(f, lead)
    s.write(lead, 150)  # past the compaction threshold: L's log now starts after F's old hint
    s.run_until(lambda: not world.pending and s.raft(lead).first_index() > 40, 20, "the writes commit; L compacts")
    world.crash(g)
    writes = s.write(lead, 10)  # too few for another compaction: L's snapshot stays the old one
    s.run_until(lambda: all(s.acked(c) for c in writes), 5, "L and F commit the writes")
    epoch, data = refusals[0]
    s.note(f"F's late refusal names index {pickle.loads(data)['next_node_idx']}; L's log starts at {s.raft(lead).first_index()}")
    if getattr(s, "options", {}).get("unnamed", False):
        # Without the probe number it refused: the leader cannot tell it is late, and the
        # follower's snapshot rule alone must keep the log.
        data = pickle.dumps({k: v for k, v in pickle.loads(data).items() if k != "rw_probe"}, protocol=2)
    net.hold(lead, f, lambda m: m.get("type") == "append_entries" and "prevLogIdx" in m)  # only snapshots reach F
    net._deliver(f, lead, epoch, data)
    s.run(1.0)  # what L sends F because of it arrives; then L is lost
    stats = {"late_refusals_ignored": getattr(world.core(lead).leader, "stale_refusals", 0),
             "snapshots_kept": getattr(world.core(f).follower, "snapshots_kept", 0)}
    world.crash(lead)
    world.start(g)
    s.run_until(s.leader, 10, "F and G elect a leader")
    s.run(1.0)
    result = s.finish()
    result.stats.update(stats)
    return result


@_scenario
def snapshot_install_during_write(s: Script) -> SimResult:
    """A follower installs the leader's snapshot while its own, older one is still being written.

    F captures a snapshot and writes it off the engine thread (held here). Meanwhile F falls
    behind the leader's log and is sent the leader's newer snapshot, which it installs. Then F's
    own write finishes. pysyncobj (and the store before the fix) put that older file in place
    over the installed one: the journal now starts after the snapshot's end, and on restart F
    clears its journal to match the file, deleting entries it acknowledged. G is down by then,
    so L and F alone held those entries; L and F go down, F restarts with G, and they elect a
    leader without them.
    """
    world, net = s.world, s.world.network
    lead = s.run_until(s.leader, 5, "a leader")
    f, g = [n for n in world.nodes if n != lead]
    s.note(f"L={lead} F={f} G={g}")
    held: list[Callable[[], None]] = []
    world.core(f).snapshots.runner = held.append  # F's next snapshot write waits for us
    s.write(lead, 80)  # past the compaction threshold: F starts a snapshot
    s.run_until(lambda: held and not world.pending, 20, "the writes commit; F is writing a snapshot")
    net.hold(lead, f, lambda m: m.get("type") == "append_entries")  # F misses what L sends now
    s.write(lead, 150)
    s.run_until(lambda: not world.pending and s.raft(lead).first_index() > s.raft(f).last_index(), 20,
                "the writes commit with G; L compacts past F's log")
    net.drop_held(lead, f)
    net.unhold(lead, f)
    s.run_until(lambda: s.raft(f).first_index() > 100, 20, "F installs L's snapshot")
    older, held[:] = list(held), []
    for write in older:
        write()  # F's own, older snapshot is written now; F's later ones stay unwritten
    s.run_until(lambda: s.raft(f).commit_index >= s.raft(lead).commit_index, 20, "F catches up")
    world.crash(g)
    writes = s.write(lead, 10)
    s.run_until(lambda: all(s.acked(c) for c in writes), 5, "L and F commit the writes")
    world.crash(f)
    world.crash(lead)
    world.start(f)  # F restarts from its snapshot file and journal
    world.start(g)
    s.run_until(s.leader, 10, "F and G elect a leader")
    s.run(1.0)
    return s.finish()


@_scenario
def failover_rounds(s: Script) -> SimResult:
    """Kill the leader under writes, twenty times: how many terms and seconds until the next one."""
    world = s.world
    rounds, seconds = [], []
    for _ in range(int(getattr(s, "options", {}).get("failovers", 20))):
        lead = s.run_until(s.leader, 10, "a leader")
        for _ in range(10):
            for node in world.alive():
                s.write(node)
            s.run(0.02)
        term = s.raft(lead).current_term
        killed_at = world.now
        world.crash(lead)
        new = s.run_until(s.leader, 20, "a new leader")
        rounds.append(s.raft(new).current_term - term)
        seconds.append(world.now - killed_at)
        world.start(lead)
        s.run(5.0)  # longer than pysyncobj's connection timeout: the followers' link goes idle
    result = s.finish()
    ordered = sorted(seconds)
    result.stats = {"failovers": len(rounds), "one_round": sum(r == 1 for r in rounds), "max_rounds": max(rounds),
                    "median_seconds": ordered[len(ordered) // 2]}
    return result


class _UnconfirmedReadIndex(ReadIndex):
    """ReadIndex that skips the leadership check (step 2 of thesis 6.4): what must never ship."""

    def _majority_acked(self, round_: int) -> bool:
        return True


def _long_fallback() -> SimConfig:
    # The old leader keeps leading unheard for 30 s: long after the majority elected another.
    return SimConfig(noise=Noise(), leader_fallback=30.0)


def deposed_leader_reads(s: Script) -> SimResult:
    """A cut-off leader that still believes it leads must not answer reads (see the module docstring)."""
    world = s.world
    lead = s.run_until(s.leader, 5, "a first leader")
    if getattr(s, "options", {}).get("unconfirmed"):
        world.core(lead).reads.__class__ = _UnconfirmedReadIndex
    early = s.write(lead, 5)
    s.run_until(lambda: all(s.acked(c) for c in early), 5, "first writes acknowledged")
    others = [n for n in world.nodes if n != lead]
    for other in others:
        world.network.block(lead, other)
        world.network.block(other, lead)
    s.run_until(lambda: any(world.core(n).raft.state == LEADER for n in others), 10, "the majority elects a leader")
    new = next(n for n in others if world.core(n).raft.state == LEADER)
    later = s.write(new, 5)
    s.run_until(lambda: all(s.acked(c) for c in later), 5, "writes acknowledged by the new leader")
    if s.raft(lead).state != LEADER:
        s.problems.append(f"the old leader {lead} stepped down early; the scenario tests nothing")
    stale = [world.read(lead) for _ in range(10)]
    fresh = [world.read(n) for n in others for _ in range(5)]
    s.run(3.0)
    answered = [r for r in stale if world.reads[r][1]]
    s.note(f"old leader {lead} answered {len(answered)} of {len(stale)} reads; still leader: "
           f"{s.raft(lead).state == LEADER}")
    if answered:
        s.problems.append(f"the deposed leader {lead} answered {len(answered)} linearizable reads")
    unanswered = [r for r in fresh if not world.reads[r][1]]
    if unanswered:
        s.problems.append(f"{len(unanswered)} of {len(fresh)} reads on the majority's side did not succeed")
    return s.finish()


_scenario(deposed_leader_reads, _long_fallback)
