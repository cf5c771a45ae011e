"""Leader-stamped time: the leader writes its clock into each entry as it appends it.

pysyncobj appends what proposers send; the time in an entry was the proposer's clock, so a slow
proposer froze time and a fast one moved it forward for good (expiring leases and exactly-once
keys at once). Here the leader stamps every framework payload as it takes it from its command
queue to append it (followers' forwarded commands included), with

    first entry of a term:  t = clamp(wall, prev, prev + first_step)   (wall, if the log has none)
    later entries:          t = clamp(wall, prev + 0.9 * elapsed, prev + 1.1 * elapsed + 1 ms)

where ``prev`` is the time of the newest stamped entry in the log (or this leader's last stamp)
and ``elapsed`` is the leader's monotonic time since its last stamp. Time in the log therefore
never decreases, advances at 0.9x to 1.1x of real time while a leader lasts whatever its wall
clock says, follows a correct wall clock, and jumps at most ``first_step`` at a leader change.
``ctx.term`` needs no stamp: it is read from the entry's own term when it applies.
"""

from __future__ import annotations

import queue
from typing import Any, Callable

from pysyncobj import pickle as pysyncobj_pickle

from consensus.engine import payload
from consensus.engine.internals import LEADER, REGULAR, Raft

_SLOW, _FAST = 0.9, 1.1
_SLACK_NS = 1_000_000
_LOG_SCAN = 256  # entries to look back for the last stamp when leadership starts


class LeaderClock:
    def __init__(self, raft: Raft, wall_ns: Callable[[], int], mono: Callable[[], float], first_step_ns: int) -> None:
        self.raft = raft
        self.wall_ns = wall_ns
        self.mono = mono
        self.first_step_ns = first_step_ns
        self._term: int | None = None
        self._prev = 0
        self._prev_mono = 0.0

    def next_time(self) -> int:
        now_mono = self.mono()
        wall = self.wall_ns()
        term = self.raft.current_term
        if term != self._term:
            prev = max(self._prev, self._newest_in_log())
            # A log that never saw a stamp (a new cluster) starts at the leader's wall clock.
            lo, hi = (prev, prev + self.first_step_ns) if prev else (wall, wall)
            self._term = term
        else:
            prev = self._prev
            elapsed = max(0.0, now_mono - self._prev_mono) * 1e9
            lo, hi = prev + int(elapsed * _SLOW), prev + int(elapsed * _FAST) + _SLACK_NS
        t = max(prev, min(max(wall, lo), hi))
        self._prev, self._prev_mono = t, now_mono
        return t

    def _newest_in_log(self) -> int:
        log = self.raft.log
        for i in range(len(log) - 1, max(-1, len(log) - 1 - _LOG_SCAN), -1):
            stamped = payload_of(log[i][0])
            if stamped is not None:
                return payload.time_of(stamped)
        return 0

    def stamp(self, command: bytes) -> bytes:
        """Return ``command`` (a pysyncobj log command) with the leader's time in its payload."""
        if self.raft.state != LEADER:
            return command
        decoded = _decode(command)
        if decoded is None:
            return command
        func_id, data = decoded
        return _encode(func_id, payload.restamp(data, self.next_time()))


def _decode(command: Any) -> tuple[Any, bytes] | None:
    if not command or command[0] != REGULAR:
        return None
    try:
        call = pysyncobj_pickle.loads(command[1:])
    except Exception:
        return None
    if not (isinstance(call, tuple) and len(call) == 2 and isinstance(call[1], tuple) and len(call[1]) == 1):
        return None
    data = call[1][0]
    if not isinstance(data, bytes) or not payload.is_stamped_payload(data):
        return None
    return call[0], data


def _encode(func_id: Any, data: bytes) -> bytes:
    return bytes([REGULAR]) + pysyncobj_pickle.dumps((func_id, (data,)))


def payload_of(command: bytes) -> bytes | None:
    """The framework payload inside a pysyncobj log command, if it carries one."""
    decoded = _decode(command)
    return None if decoded is None else decoded[1]


class StampingQueue:
    """pysyncobj's command queue, stamping each command the leader takes from it to append.

    While the node cannot persist (``blocked``), commands stay queued rather than being taken
    and lost in an append that fails; the node steps down and they go to the next leader. While a
    leadership transfer is under way (``paused``) they wait too, then go to the new leader.
    """

    def __init__(self, inner: Any, clock: LeaderClock, blocked: Callable[[], str | None],
                 paused: Callable[[], bool] = lambda: False) -> None:
        self._inner = inner
        self._clock = clock
        self._blocked = blocked
        self._paused = paused  # a leadership transfer is under way: hold new commands
        self.last_taken: Any = None  # (command, callback) taken last (see RaftCore.tick)
        self.on_take: Callable[[], None] = lambda: None

    def put_nowait(self, item: Any) -> None:
        self._inner.put_nowait(item)

    def get_nowait(self) -> Any:
        if (self._blocked() is not None and self._clock.raft.state == LEADER) or self._paused():
            raise queue.Empty
        command, callback = self._inner.get_nowait()
        stamped = self._clock.stamp(command)
        self.last_taken = (stamped, callback)
        self.on_take()
        return stamped, callback
