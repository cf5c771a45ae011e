"""Scenarios that break a node under load: failover and catch-up, for raftwork and etcd alike.

- failover: writers (all on the leader, moving to the next node after a connection error, a
  timeout or a 503/504, one-second attempts) run; the leader is killed -9 once writes flow; the
  sample is the time from the kill to the first successful write issued after it. The victim
  is restarted and the cluster settles before the next sample; systems alternate. The writers
  stop at that first write (or when the window runs out), so a sample costs its own length.
- catch-up after a restart: a follower is killed -9, the leader commits ``catchup_entries``
  more log entries (entries, not writes: raftwork's group commit puts several writes in one),
  the follower is restarted; the sample is the time from the restart (process start included)
  to the follower having applied what the leader had committed at that moment.
- catch-up after a pause: a follower is SIGSTOPped for ``pause_seconds`` under write load and
  resumed; the sample is the time from SIGCONT to having applied the leader's commit index as of
  the resume. Both catch-up rows report the highest term before and after: a resumed or restarted
  follower that forces an election shows as a rise.

Times are measured on the monotonic clock, which every process of the machine shares.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Callable, Sequence

from consensus.bench import load
from consensus.bench.clusters import LocalCluster
from consensus.bench.load import LoadProcess, LoadSpec
from consensus.bench.results import EventRow

_PROGRESS_ENTRIES = 10  # committed entries that show the writers are flowing before a fault
_CATCHUP_TIMEOUT = 300.0
_ATTEMPT_TIMEOUT = 1.0


def _max_term(cluster: LocalCluster) -> int:
    terms = [s.term for s in (cluster.status(i) for i in cluster.running()) if s is not None]
    return max(terms, default=0)


def _commit(cluster: LocalCluster, i: int) -> int:
    state = cluster.status(i)
    return state.commit if state is not None else 0


def _wait(what: str, predicate: Callable[[], bool], timeout: float, interval: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def wait_writes_flow(cluster: LocalCluster, leader: int, load_proc: LoadProcess) -> None:
    base = _commit(cluster, leader)

    def flowing() -> bool:
        if load_proc.proc is not None and load_proc.proc.poll() is not None:
            raise RuntimeError("the load client exited before the fault")
        return _commit(cluster, leader) >= base + _PROGRESS_ENTRIES

    _wait("writes to flow", flowing, 30)


def _writers(workload: str, targets: list[str], concurrency: int, duration: float, timeline: bool = False) -> LoadSpec:
    return LoadSpec(workload, targets, concurrency, duration, warmup=0.0, timeout=_ATTEMPT_TIMEOUT, rotate=True,
                    spread=False, timeline=timeline, stop_on_line=timeline, key_prefix=f"f{uuid.uuid4().hex[:6]}")


def failover_sample(cluster: LocalCluster, workload: str, writers: int, window: float) -> float | None:
    """Kill -9 the leader under write load; return seconds to the first write that succeeds after it."""
    leader = cluster.leader()
    targets = [cluster.urls[leader]] + [cluster.urls[i] for i in cluster.running() if i != leader]
    writers_proc = LoadProcess()
    writers_proc.start(_writers(workload, targets, writers, window + 5, timeline=True))
    try:
        wait_writes_flow(cluster, leader, writers_proc)
        killed_at = time.monotonic()
        cluster.kill(leader)
        writers_proc.stop_at_first_success_since(killed_at)  # the sample is in: no need to run out the window
        result = writers_proc.result()
    finally:
        writers_proc.kill()
    cluster.start_node(leader)
    cluster.wait_ready()
    after = [end for start, end in result["timeline"] or [] if start >= killed_at]
    return round(min(after) - killed_at, 3) if after else None


def restart_catchup(cluster: LocalCluster, workload: str, entries: int) -> EventRow:
    leader = cluster.leader()
    follower = next(i for i in cluster.running() if i != leader)
    term_before = _max_term(cluster)
    cluster.kill(follower)
    base = _commit(cluster, leader)
    while _commit(cluster, leader) - base < entries:
        load.run(LoadSpec(workload, [cluster.urls[leader]], 4, 2.0, warmup=0.0, key_prefix=f"c{uuid.uuid4().hex[:6]}"))
    target = _commit(cluster, leader)
    started = time.monotonic()
    cluster.start_node(follower)
    answered: list[float] = []

    def caught_up() -> bool:
        state = cluster.status(follower)
        if state is not None and not answered:
            answered.append(time.monotonic() - started)
        return state is not None and state.applied >= target

    _wait(f"{cluster.system} node {follower + 1} to catch up", caught_up, _CATCHUP_TIMEOUT)
    elapsed = round(time.monotonic() - started, 3)
    detail = {"entries_missed": target - base, "first_answer_s": round(answered[0], 3) if answered else None}
    return EventRow("catchup", cluster.system, f"restart after {entries} entries -> caught up", cluster.n, [elapsed],
                    term_before, _max_term(cluster), detail)


def pause_catchup(cluster: LocalCluster, workload: str, pause_seconds: float) -> EventRow:
    leader = cluster.leader()
    follower = next(i for i in cluster.running() if i != leader)
    term_before = _max_term(cluster)
    writers_proc = LoadProcess()
    writers_proc.start(_writers(workload, [cluster.urls[leader]], 8, pause_seconds + 30))
    try:
        wait_writes_flow(cluster, leader, writers_proc)
        cluster.pause(follower)
        try:
            time.sleep(pause_seconds)  # the fault itself: the follower misses this much
            target = _commit(cluster, leader)
        finally:
            cluster.resume(follower)
        started = time.monotonic()

        def caught_up() -> bool:
            state = cluster.status(follower)
            return state is not None and state.applied >= target

        _wait(f"{cluster.system} node {follower + 1} to catch up", caught_up, _CATCHUP_TIMEOUT)
        elapsed = round(time.monotonic() - started, 3)
    finally:
        writers_proc.kill()
    return EventRow("catchup", cluster.system, f"resume after a {pause_seconds:g}s pause -> caught up", cluster.n,
                    [elapsed], term_before, _max_term(cluster))


def ratio_of(row: EventRow, baseline: EventRow) -> None:
    """Record on ``row`` its median time over the baseline's (below 1 is faster)."""
    row.baseline = baseline.system
    if row.median_s is not None and baseline.median_s:
        row.ratio = round(row.median_s / baseline.median_s, 2)


def failover_rows(clusters: Sequence[tuple[LocalCluster, str]], runs: int, writers: int, window: float,
                  progress: Callable[[str], None]) -> list[EventRow]:
    """Alternate failover samples over the clusters; return one row per cluster."""
    samples: dict[str, list[float]] = {c.system: [] for c, _ in clusters}
    missed: dict[str, int] = {c.system: 0 for c, _ in clusters}
    for run in range(runs):
        for cluster, workload in clusters:
            progress(f"failover: {cluster.system}, kill {run + 1} of {runs}")
            sample = failover_sample(cluster, workload, writers, window)
            if sample is None:
                missed[cluster.system] += 1
            else:
                samples[cluster.system].append(sample)
    what = f"kill -9 leader -> first write ({writers} writers)"
    rows = [EventRow("failover", c.system, what, c.n, samples[c.system], detail=_missed(missed[c.system], window))
            for c, _ in clusters]
    for row in rows[1:]:
        ratio_of(rows[0], row)
    return rows


def _missed(count: int, window: float) -> dict[str, Any]:
    return {"no_write_within_window": count, "window_s": window} if count else {}
