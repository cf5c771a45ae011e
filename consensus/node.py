"""Run a Raft node from asyncio: propose commands, read, watch and change the cluster.

The engine runs on its own thread; this module bridges it to the event loop. Each wait has a
deadline, and every outcome is one of: a result, a definite error (nothing changed), or
``Indeterminate`` (it may have changed; retry with the same idempotency key).

Group commit: proposals and linearizable reads that arrive in the same event-loop turn travel in
one log entry. A linearizable read runs on the engine thread right after that entry applies, so it
sees every write committed before the read started (the entry was appended after them). Reads
that arrive with no write need no entry: the engine's ReadIndex (``engine/read_index.py``)
confirms leadership with one heartbeat round shared by every read waiting, and answers once the
node has applied the leader's commit index of the moment the read arrived.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Mapping

from consensus import codec
from consensus.dispatch import SYSTEM, Dispatcher, Outcome, encode_entry
from consensus.engine import EngineConfig, EngineEvent, EngineStatus, Failure, Role, create_engine, is_loopback
from consensus.errors import (
    Compacted,
    ConsensusError,
    error_class,
    from_dict,
    Indeterminate,
    InvalidRequest,
    NotFound,
    NotLeader,
    Rejected,
    Unavailable,
)
from consensus.machine import ReplicatedObject, StateMachine

log = logging.getLogger("consensus.node")

NodeStatus = EngineStatus
NodeEvent = EngineEvent

# One log entry carries at most this many operations and bytes (whole ops counted: machine name,
# command, key and framing). An entry with one op may be larger (up to max_command_bytes); every
# entry stays far below the engine's message size, so pysyncobj never takes its chunked path.
_MAX_BATCH_OPS = 512
_MAX_BATCH_BYTES = 256 * 1024
_OP_FRAMING = 16  # msgpack framing of one [machine, command, key] op, rounded up
_ENTRY_FRAMING = 64  # payload header, entry framing, pysyncobj's pickle of the call
_READ_RETRY_SECONDS = 0.05
_SWEEP_SECONDS = 0.01  # how often expired deadlines are enforced
# An entry whose callback pysyncobj lost must not hold the queue: flush anyway after this long.
_IN_FLIGHT_GRACE_SECONDS = 0.2


class Consistency(str, enum.Enum):
    LINEARIZABLE = "linearizable"  # ReadIndex (or a write entry): sees every write acknowledged before it began
    STALE = "stale"  # this node's local state, possibly behind; reports its applied index


@dataclass
class NodeConfig:
    """How to run one node. ``node_id`` is its peer address ("host:port"), also its identity."""

    node_id: str
    peers: list[str]
    data_dir: str
    secret: str | None = None
    bind_address: str | None = None
    default_timeout: float = 5.0
    max_command_bytes: int = 1 << 20
    election_timeout: tuple[float, float] = (0.4, 1.4)
    heartbeat_interval: float = 0.1
    leader_fallback_timeout: float = 1.5
    connection_retry_time: float = 0.5
    compaction_min_entries: int = 5000
    compaction_min_time: float = 300.0
    # While a machine wants time (leases, waiters), the leader appends a time entry at least this
    # often, so leader-stamped time moves on in the log when nobody writes.
    time_granularity: float = 0.1
    # At most this many entries of this node's in flight: proposals that arrive meanwhile wait and
    # go together in the next entry (group commit), so each entry, and each fsync, carries many.
    # More than one pipelines entries (the leader never rewinds on acknowledgements any more).
    max_in_flight: int = 1
    # "always": every entry and vote is fsynced before it is acknowledged or sent (survives
    # machine crashes); "never": the OS decides (survives process crashes only; for tests).
    fsync: str = "always"
    dial_routes: dict[str, tuple[str, int]] = field(default_factory=dict)

    def engine_config(self) -> EngineConfig:
        return EngineConfig(
            node_id=self.node_id,
            peers=list(self.peers),
            data_dir=self.data_dir,
            secret=self.secret,
            bind_address=self.bind_address,
            election_timeout=self.election_timeout,
            heartbeat_interval=self.heartbeat_interval,
            leader_fallback_timeout=self.leader_fallback_timeout,
            connection_retry_time=self.connection_retry_time,
            compaction_min_entries=self.compaction_min_entries,
            compaction_min_time=self.compaction_min_time,
            fsync=self.fsync,
            dial_routes=dict(self.dial_routes),
        )


@dataclass(frozen=True)
class ReadResult:
    value: Any
    index: int  # the log index the state reflects
    consistency: Consistency


@dataclass
class _Batch:
    ops: list[list[Any]] = field(default_factory=list)
    writes: list[asyncio.Future[Any]] = field(default_factory=list)
    reads: list[tuple[str, dict[str, Any], asyncio.Future[Any]]] = field(default_factory=list)
    size: int = 0


class _StateHooks:
    """The engine's view of our state: the dispatcher, guarded for stale reads."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher
        self.lock = threading.Lock()
        self.on_applied: Callable[[], None] | None = None  # engine thread, after every entry

    def apply(self, payload: bytes, index: int, term: int) -> Any:
        with self.lock:
            result = self.dispatcher.apply(payload, index, term)
        if self.on_applied is not None:
            self.on_applied()
        return result

    def snapshot(self) -> bytes:
        with self.lock:
            return self.dispatcher.snapshot()

    def capture(self) -> Callable[[], bytes]:
        with self.lock:
            return self.dispatcher.capture()

    def restore(self, data: bytes) -> None:
        with self.lock:
            self.dispatcher.restore(data)


def _failure_error(failure: Failure, leader: str | None) -> ConsensusError:
    if failure is Failure.NOT_LEADER:
        return NotLeader(leader=leader)
    if failure is Failure.DENIED:
        return Rejected("the engine refused the request (another membership change may be in progress)", leader=leader)
    if failure.definite:
        return Unavailable(f"not applied: {failure.value[0]}", leader=leader)
    return Indeterminate(f"outcome unknown: {failure.value[0]}", leader=leader)


def _outcome_value(outcome: Outcome, leader: str | None) -> Any:
    if outcome.kind == "ok":
        return outcome.value
    body = {"code": outcome.code, "message": str(outcome.value), "leader": leader, "detail": outcome.detail}
    cls = error_class(outcome.code) if outcome.code else None
    if cls is not None:
        if isinstance(outcome.detail, dict) and issubclass(cls, Compacted):
            body["oldest_revision"] = outcome.detail.get("oldest_revision", 0)
        raise from_dict(body)
    if outcome.kind == "rejected":
        raise Rejected(str(outcome.value), leader=leader, detail=outcome.detail)
    if isinstance(outcome.value, str) and outcome.value.startswith("NotFound"):
        raise NotFound(outcome.value, leader=leader)
    raise InvalidRequest(str(outcome.value), leader=leader)


class Node:
    """One Raft node with named state machines, driven from asyncio."""

    def __init__(self, config: NodeConfig, machines: Mapping[str, StateMachine]) -> None:
        for name in machines:
            if not isinstance(name, str) or not name:
                raise InvalidRequest(f"machine names must be non-empty strings, not {name!r}")
        self.config = config
        self.machines = dict(machines)
        self._dispatcher = Dispatcher(self.machines)
        self._hooks = _StateHooks(self._dispatcher)
        self._hooks.on_applied = self._on_applied
        self._apply_waiters: list[asyncio.Future[None]] = []
        self._apply_wake_scheduled = False
        self._last_entry_sent = 0.0  # monotonic time the leader last submitted an entry of ours
        self._time_ticker: asyncio.TimerHandle | None = None
        self._digest: tuple[int, str] | None = None
        self._engine = create_engine(config.engine_config(), self._hooks)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: _Batch | None = None
        self._in_flight: set[int] = set()
        self._in_flight_batches: dict[int, _Batch] = {}
        self._subscribers: set[asyncio.Queue[NodeEvent]] = set()
        self._deadlines: dict[asyncio.Future[Any], tuple[float, bool]] = {}  # future -> (deadline, is write)
        self._sweeper: asyncio.TimerHandle | None = None
        self._started = False
        self._stopped = False

    @property
    def id(self) -> str:
        return self.config.node_id

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the peer port and start the engine; returns once the node is listening."""
        if self._started:
            raise RuntimeError("node already started")
        self._loop = asyncio.get_running_loop()
        self._engine.subscribe(self._on_engine_event)
        await self._loop.run_in_executor(None, self._engine.start)
        self._started = True
        self._sweep_deadlines()
        self._tick_time()
        log.info("%s started, peers %s", self.id, ",".join(self.config.peers))

    async def stop(self) -> None:
        """Stop the engine and fail whatever is still waiting."""
        if not self._started or self._stopped:
            return
        self._stopped = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._time_ticker is not None:
            self._time_ticker.cancel()
        self._deadlines.clear()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._engine.stop)
        if self._pending is not None:
            self._fail_batch(self._pending, Unavailable("node stopped before the request was submitted"))
            self._pending = None
        for batch in list(self._in_flight_batches.values()):
            self._fail_batch(batch, Indeterminate("node stopped while the request was in flight"))
        self._in_flight_batches.clear()
        for queue in self._subscribers:
            queue.put_nowait(None)  # type: ignore[arg-type]
        self._wake_apply_waiters()
        log.info("%s stopped", self.id)

    async def __aenter__(self) -> "Node":
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    # -- status ------------------------------------------------------------------------------

    def status(self) -> NodeStatus:
        status = self._engine.status()
        applied = self._dispatcher.last_index
        if applied > status.last_applied:  # the engine publishes after each tick; apply is sooner
            status = dataclasses.replace(status, last_applied=applied, commit_index=max(status.commit_index, applied))
        return status

    def is_leader(self) -> bool:
        return self._engine.status().role is Role.LEADER

    async def wait_for_leader(self, timeout: float = 10.0) -> str:
        """Wait until this node knows a leader; return the leader's id."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.status()
            if status.leader is not None:
                return status.leader
            if time.monotonic() >= deadline:
                raise Unavailable(f"{self.id} found no leader within {timeout:.1f}s")
            await asyncio.sleep(0.02)

    async def wait_for_apply(self, after_index: int, timeout: float) -> int:
        """Wait until this node has applied an entry past ``after_index``; return its applied index.

        Returns the current applied index at once if it is already past ``after_index``, and when
        ``timeout`` runs out or the node stops (then the index may still be ``after_index``). This is
        how waiters (lock grants, watches) wake when an entry applies here, without polling.
        """
        self._check_running()
        applied = self._dispatcher.last_index
        if applied > after_index or timeout <= 0:
            return applied
        fut: asyncio.Future[None] = self._loop.create_future()  # type: ignore[union-attr]
        self._apply_waiters.append(fut)
        try:
            async with asyncio.timeout(timeout):
                while self._dispatcher.last_index <= after_index and not self._stopped:
                    await asyncio.shield(fut)
                    if self._dispatcher.last_index <= after_index:
                        fut = self._loop.create_future()  # type: ignore[union-attr]
                        self._apply_waiters.append(fut)
        except TimeoutError:
            pass
        finally:
            if not fut.done():
                fut.cancel()
        return self._dispatcher.last_index

    def _on_applied(self) -> None:
        # Engine thread: wake the loop's apply waiters once per loop turn, not once per entry.
        if not self._apply_waiters or self._apply_wake_scheduled:
            return
        loop = self._loop
        if loop is None:
            return
        self._apply_wake_scheduled = True
        try:
            loop.call_soon_threadsafe(self._wake_apply_waiters)
        except RuntimeError:  # loop closed during shutdown
            self._apply_wake_scheduled = False

    def _wake_apply_waiters(self) -> None:
        self._apply_wake_scheduled = False
        waiters, self._apply_waiters = self._apply_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    def _tick_time(self) -> None:
        """On the leader, append a time entry when a machine wants time and nothing else was sent."""
        if self._stopped:
            return
        granularity = self.config.time_granularity
        now = time.monotonic()
        if (
            self._dispatcher.wants_time
            and now - self._last_entry_sent >= granularity
            and self._pending is None
            and self._engine.status().role is Role.LEADER
        ):
            self._last_entry_sent = now
            self._engine.submit(encode_entry(0, []), lambda *_: None)
        self._time_ticker = self._loop.call_later(granularity / 2, self._tick_time)  # type: ignore[union-attr]

    async def events(self) -> AsyncIterator[NodeEvent]:
        """Yield role, leader and term changes as they happen, until the node stops."""
        queue: asyncio.Queue[NodeEvent] = asyncio.Queue()
        self._subscribers.add(queue)
        try:
            while True:
                event = await queue.get()
                if event is None:
                    return
                yield event
        finally:
            self._subscribers.discard(queue)

    def _on_engine_event(self, event: EngineEvent) -> None:
        # Engine thread: log in fixed phrases, hand the event to the loop.
        if event.kind == "role":
            log.info("%s became %s at term %d", self.id, event.new.value, event.term)
        elif event.kind == "leader":
            log.info("%s sees leader %s at term %d", self.id, event.new or "none", event.term)
        stepped_down = event.kind == "role" and event.old is Role.LEADER
        loop = self._loop
        if loop is not None and (self._subscribers or stepped_down):
            try:
                loop.call_soon_threadsafe(self._publish_event, event)
            except RuntimeError:  # loop closed during shutdown
                pass

    def _publish_event(self, event: EngineEvent) -> None:
        if event.kind == "role" and event.old is Role.LEADER and event.new is not Role.LEADER:
            self._fail_in_flight_on_step_down()
        for queue in self._subscribers:
            queue.put_nowait(event)

    def _fail_in_flight_on_step_down(self) -> None:
        """A deposed leader cannot tell whether its entries in flight will commit: say so now.

        Waiting for them would hold every client until its deadline, although a new leader is
        usually elected in about a second; the client retries elsewhere with the same key.
        Reads fail definitely (they changed nothing) and retry through the new leader.
        """
        for key, batch in list(self._in_flight_batches.items()):
            self._fail_batch(batch, Indeterminate("the leader stepped down before the outcome was known",
                                                  leader=self._engine.status().leader))
            del self._in_flight_batches[key]
        if self._pending is not None and len(self._in_flight_batches) < self.config.max_in_flight:
            self._flush()

    # -- proposals and reads -----------------------------------------------------------------

    def _check_running(self) -> None:
        if not self._started or self._stopped:
            raise Unavailable(f"node {self.id} is not running")

    def _check_machine(self, machine: str) -> StateMachine:
        if not isinstance(machine, str) or machine not in self.machines:
            raise NotFound(f"no state machine named {machine!r}")
        return self.machines[machine]

    async def propose(
        self,
        machine: str,
        command: dict[str, Any],
        *,
        idempotency_key: str | None = None,
        timeout: float | None = None,
        forward: bool = True,
        session: tuple[int, int, int] | None = None,
    ) -> Any:
        """Replicate ``command`` to ``machine`` and return what its ``apply`` returned.

        Any node takes a proposal: a follower hands it to the leader over the peer link (the
        leader stamps time and term when it appends it). ``forward=False`` makes it leader-only:
        a follower then raises ``NotLeader`` with a hint, and nothing is submitted.
        ``session=(client id, seq, lowest unacknowledged seq)`` makes it exactly-once per
        (client, seq) for as long as the session lives (see ``open_session``, which numbers
        requests for you).
        """
        self._check_running()
        target = self._check_machine(machine)
        if not isinstance(command, dict):
            raise InvalidRequest("a command must be a dict")
        if idempotency_key is not None and (not isinstance(idempotency_key, str) or not 0 < len(idempotency_key) <= 256):
            raise InvalidRequest("an idempotency key must be a string of 1 to 256 characters")
        if session is not None and not (
            isinstance(session, (tuple, list)) and len(session) == 3
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in session)
        ):
            raise InvalidRequest("a session is (client id, seq, lowest unacknowledged seq), positive integers")
        encoded = codec.check_plain(command, "command", self.config.max_command_bytes)
        validate = getattr(target, "validate", None)
        if validate is not None:
            validate(command)
        return await self._submit(machine, encoded, idempotency_key, session, timeout, forward)

    async def _submit(self, machine: str, encoded: bytes, idempotency_key: str | None,
                      session: tuple[int, int, int] | list[int] | None, timeout: float | None, forward: bool = True) -> Any:
        status = self._engine.status()
        if status.role is not Role.LEADER:
            if status.leader is None:
                raise Unavailable(f"{self.id} knows no leader", leader=None)
            if not forward:
                raise NotLeader(leader=status.leader)
        fut = self._loop.create_future()  # type: ignore[union-attr]
        size = len(machine) + len(encoded) + len(idempotency_key or "") + _OP_FRAMING
        batch = self._batch_for(size)
        batch.ops.append([machine, encoded, idempotency_key] + ([list(session)] if session is not None else []))
        batch.writes.append(fut)
        budget = self.config.default_timeout if timeout is None else timeout
        self._deadlines[fut] = (time.monotonic() + budget, True)
        return await fut

    async def read(
        self,
        machine: str,
        query: dict[str, Any],
        *,
        consistency: Consistency = Consistency.LINEARIZABLE,
        timeout: float | None = None,
    ) -> Any:
        """Run a read-only ``query`` against ``machine`` and return its value."""
        return (await self.read_result(machine, query, consistency=consistency, timeout=timeout)).value

    async def read_result(
        self,
        machine: str,
        query: dict[str, Any],
        *,
        consistency: Consistency = Consistency.LINEARIZABLE,
        timeout: float | None = None,
    ) -> ReadResult:
        """Like ``read``, and say which log index the answer reflects."""
        self._check_running()
        self._check_machine(machine)
        if not isinstance(query, dict):
            raise InvalidRequest("a query must be a dict")
        # Queries never enter the log, so they need no encoding check; the machine checks the
        # query when it runs it, and a bad one comes back as InvalidRequest.
        if consistency is not Consistency.LINEARIZABLE:
            consistency = Consistency(consistency)
        if consistency is Consistency.STALE:
            outcome, index = await self._stale_query(machine, query)
            return ReadResult(_outcome_value(outcome, self._engine.status().leader), index, consistency)
        return await self._linearizable_read(machine, query, timeout)

    async def _stale_query(self, machine: str, query: dict[str, Any]) -> tuple[Outcome, int]:
        """Run a query on local state without ever blocking the event loop on the engine thread.

        If the state lock is free the query runs here at once (the common case, no thread hop);
        if the engine thread holds it (applying an entry, capturing a snapshot), the query is
        handed to the engine thread and awaited instead of waiting on the lock.
        """
        lock = self._hooks.lock
        if lock.acquire(blocking=False):
            try:
                return self._dispatcher.query(machine, query), self._dispatcher.last_index
            finally:
                lock.release()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[tuple[Outcome, int]] = loop.create_future()

        def run() -> None:
            with lock:
                result = (self._dispatcher.query(machine, query), self._dispatcher.last_index)
            try:
                loop.call_soon_threadsafe(lambda: fut.done() or fut.set_result(result))  # type: ignore[func-returns-value]
            except RuntimeError:
                pass

        self._engine.call_soon(run)
        return await fut

    async def _linearizable_read(self, machine: str, query: dict[str, Any], timeout: float | None) -> ReadResult:
        # A read changes nothing, so every failure is definite and worth retrying until the
        # deadline: a read round lost to a leader change just means "try again".
        budget = self.config.default_timeout if timeout is None else timeout
        deadline = time.monotonic() + budget
        last_error = "no leader"
        while True:
            if time.monotonic() >= deadline:
                raise Unavailable(f"read did not complete within {budget:.2f}s: {last_error}", leader=self._engine.status().leader)
            if self._engine.status().leader is None:
                last_error = f"{self.id} knows no leader"
            else:
                fut = self._loop.create_future()  # type: ignore[union-attr]
                self._batch_for(0).reads.append((machine, query, fut))
                self._deadlines[fut] = (deadline, False)
                try:
                    value, index = await fut
                    return ReadResult(value, index, Consistency.LINEARIZABLE)
                except (Indeterminate, Unavailable, NotLeader) as exc:
                    last_error = exc.message
            await asyncio.sleep(min(_READ_RETRY_SECONDS, max(0.0, deadline - time.monotonic())))

    def _sweep_deadlines(self) -> None:
        """Fail every waiting proposal or read whose deadline passed; runs every few ms.

        One sweep for all waiters is far cheaper than a timer per request (a timer is a heap
        push and pop plus a cancellation scope), and a few milliseconds of slack on a deadline
        of seconds does not matter.
        """
        now = time.monotonic()
        expired = []
        for fut, (deadline, write) in self._deadlines.items():
            if fut.done() or now >= deadline:
                expired.append((fut, write))
        for fut, write in expired:
            del self._deadlines[fut]
            if fut.done():
                continue
            if write:
                fut.set_exception(Indeterminate("no outcome before the deadline", leader=self._engine.status().leader))
            else:
                fut.set_exception(Unavailable("timed out", leader=self._engine.status().leader))
        if expired:
            self._release_abandoned_batches()
        if not self._stopped:
            self._sweeper = self._loop.call_later(_SWEEP_SECONDS, self._sweep_deadlines)  # type: ignore[union-attr]

    async def _wait(self, fut: asyncio.Future[Any], timeout: float | None, write: bool) -> Any:
        budget = self.config.default_timeout if timeout is None else timeout
        try:
            async with asyncio.timeout(budget):  # cheaper than wait_for: no extra task per call
                return await fut
        except TimeoutError:
            raise Indeterminate(f"no outcome within {budget:.2f}s", leader=self.status().leader) from None

    def _release_abandoned_batches(self) -> None:
        """Stop waiting for in-flight entries nobody waits for any more (a lost engine callback).

        Their outcome was already reported (unknown); keeping them in flight would make every
        later proposal on this node wait for the grace period before it is sent.
        """
        for key, batch in list(self._in_flight_batches.items()):
            if all(f.done() for f in batch.writes) and all(f.done() for _, _, f in batch.reads):
                del self._in_flight_batches[key]
        if self._pending is not None and len(self._in_flight_batches) < self.config.max_in_flight:
            self._flush()

    def _batch_for(self, size: int) -> _Batch:
        batch = self._pending
        if batch is not None and (len(batch.ops) >= _MAX_BATCH_OPS or batch.size + size > _MAX_BATCH_BYTES):
            self._flush()
            batch = None
        if batch is None:
            batch = self._pending = _Batch()
            loop = self._loop
            assert loop is not None
            if len(self._in_flight_batches) < self.config.max_in_flight:
                loop.call_soon(self._flush)
            else:  # flushed when an entry in flight resolves, or after the grace period
                loop.call_later(_IN_FLIGHT_GRACE_SECONDS, self._flush_if_pending, batch)
        batch.size += size
        return batch

    def _flush_if_pending(self, batch: _Batch) -> None:
        if self._pending is batch:
            self._flush()

    def _flush(self) -> None:
        batch = self._pending
        if batch is None:
            return
        self._pending = None
        key = id(batch)
        self._in_flight_batches[key] = batch
        loop = self._loop
        assert loop is not None

        def on_done(results: Any, failure: Failure | None) -> None:
            # Engine thread (or the submitting thread for immediate refusals).
            reads: list[Outcome] = []
            index = 0
            if failure is None and batch.reads:
                with self._hooks.lock:
                    reads = [self._dispatcher.query(m, q) for m, q, _ in batch.reads]
                    index = self._dispatcher.last_index
            try:
                loop.call_soon_threadsafe(self._resolve, key, results, failure, reads, index)
            except RuntimeError:  # loop closed: nobody is waiting any more
                pass

        if batch.ops:  # the leader stamps its clock into the entry when it appends it
            self._last_entry_sent = time.monotonic()
            self._engine.submit(encode_entry(0, batch.ops), on_done)
        else:  # reads alone need no log entry: the leader confirms it still leads (ReadIndex)
            self._engine.read_index(on_done)

    def _resolve(self, key: int, results: Any, failure: Failure | None, reads: list[Outcome], index: int) -> None:
        batch = self._in_flight_batches.pop(key, None)
        if self._pending is not None and len(self._in_flight_batches) < self.config.max_in_flight:
            self._flush()
        if batch is None:
            return
        leader = self._engine.status().leader
        if failure is not None:
            self._fail_batch(batch, _failure_error(failure, leader), reads_error=_failure_error(failure, leader))
            return
        if batch.ops and (not isinstance(results, list) or len(results) != len(batch.writes)):
            # Cannot happen unless an entry was unreadable; never guess an outcome.
            self._fail_batch(batch, Indeterminate("the engine returned no outcome for this entry"))
            return
        for fut, outcome in zip(batch.writes, results or ()):
            if fut.done():
                continue
            try:
                fut.set_result(_outcome_value(outcome, leader))
            except ConsensusError as exc:
                fut.set_exception(exc)
        for (_, _, fut), outcome in zip(batch.reads, reads):
            if fut.done():
                continue
            try:
                fut.set_result((_outcome_value(outcome, leader), index))
            except ConsensusError as exc:
                fut.set_exception(exc)

    @staticmethod
    def _fail_batch(batch: _Batch, error: ConsensusError, reads_error: ConsensusError | None = None) -> None:
        for fut in batch.writes:
            if not fut.done():
                fut.set_exception(error)
        read_error = reads_error or (error if error.definite else Unavailable(error.message))
        if not read_error.definite:
            read_error = Unavailable(read_error.message, leader=read_error.leader)
        for _, _, fut in batch.reads:
            if not fut.done():
                fut.set_exception(read_error)

    # -- client sessions and replicated limits ------------------------------------------------

    async def open_session(self, *, timeout: float | None = None) -> "ClientSession":
        """Register a client session (a log entry): its requests are exactly-once, retries included."""
        return ClientSession(self, await self.register_client(timeout=timeout), timeout)

    async def register_client(self, *, timeout: float | None = None) -> int:
        """Register a client in the replicated session table; return its id (``open_session`` wraps it)."""
        self._check_running()
        return int(await self._submit(SYSTEM, codec.pack({"op": "register_client"}), None, None, timeout))

    async def close_client(self, client_id: int, *, timeout: float | None = None) -> bool:
        """Drop a client's session and the outcomes it keeps; False if it was not there."""
        self._check_running()
        command = codec.pack({"op": "close_client", "client_id": int(client_id)})
        return bool(await self._submit(SYSTEM, command, None, None, timeout))

    async def set_limits(self, *, timeout: float | None = None, **limits: int) -> dict[str, int]:
        """Change replicated limits (session TTL, sessions, idempotency window...) through the log."""
        self._check_running()
        command = codec.check_plain({"op": "set_limits", "limits": limits}, "limits", 4096)
        return await self._submit(SYSTEM, command, None, None, timeout)  # type: ignore[no-any-return]

    def limits(self) -> dict[str, int]:
        """The replicated limits as this node has applied them."""
        return self._dispatcher.sessions.limits.to_wire()

    # -- membership and leadership -----------------------------------------------------------

    async def _engine_call(self, start: Callable[[Callable[[Any, Failure | None], None]], None], timeout: float | None) -> Any:
        self._check_running()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()

        def on_done(result: Any, failure: Failure | None) -> None:
            def settle() -> None:
                if fut.done():
                    return
                if failure is None:
                    fut.set_result(result)
                else:
                    fut.set_exception(_failure_error(failure, self.status().leader))

            try:
                loop.call_soon_threadsafe(settle)
            except RuntimeError:
                pass

        start(on_done)
        return await self._wait(fut, timeout, write=True)

    async def add_member(self, address: str, *, timeout: float | None = None) -> None:
        """Add ``address`` ("host:port") to the cluster; one change at a time."""
        _check_address(address)
        if not self.config.secret and not is_loopback(address):
            raise InvalidRequest(f"refusing to add non-loopback member {address} without a shared secret "
                                 "(the peer protocol is pickle; start every node with a secret file)")
        # Every node logs the change when it reaches its log ("membership change: added ...").
        await self._engine_call(lambda cb: self._engine.add_member(address, cb), timeout)

    async def remove_member(self, address: str, *, timeout: float | None = None) -> None:
        """Remove ``address`` from the cluster; one change at a time."""
        _check_address(address)
        if address != self.id and address not in self._members():
            raise NotFound(f"{address} is not a member")
        await self._engine_call(lambda cb: self._engine.remove_member(address, cb), timeout)

    async def state_digest(self, timeout: float = 5.0) -> tuple[int, str]:
        """Return ``(applied index, digest)``: a hash of every machine's state at that index.

        Replicas that applied the same log agree on both; comparing them after a test is
        hashicorp/raft's "every replica saw the same apply sequence" check. Computed on the engine
        thread (consistent with applies) and cached until the next apply.
        """
        self._check_running()
        cached = self._digest
        if cached is not None and cached[0] == self._dispatcher.last_index:
            return cached
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[tuple[int, str]] = loop.create_future()

        def settle(result: tuple[int, str]) -> None:
            if not fut.done():
                fut.set_result(result)

        def compute() -> None:
            with self._hooks.lock:
                index = self._dispatcher.last_index
                digest = self._dispatcher.state_digest()
            try:
                loop.call_soon_threadsafe(settle, (index, digest))
            except RuntimeError:
                pass

        self._engine.call_soon(compute)
        async with asyncio.timeout(timeout):
            self._digest = await fut
        return self._digest

    def _members(self) -> set[str]:
        return {p.id for p in self.status().peers} | {self.id}

    async def transfer_leadership(self, to: str | None = None, *, timeout: float | None = None) -> str:
        """Hand leadership to ``to`` (or the most caught-up follower); return the new leader."""
        if to is not None:
            _check_address(to)
        if not self.is_leader():
            raise NotLeader(leader=self.status().leader)
        budget = self.config.default_timeout if timeout is None else timeout
        deadline = time.monotonic() + budget
        await self._engine_call(lambda cb: self._engine.transfer_leadership(to, cb), budget)
        while time.monotonic() < deadline:
            leader = self.status().leader
            if leader is not None and leader != self.id and (to is None or leader == to):
                return leader
            await asyncio.sleep(0.02)
        # The transfer was asked for and may still complete: the outcome is unknown, not a refusal.
        raise Indeterminate(f"leadership did not move within {budget:.1f}s", leader=self.status().leader)

    def force_compaction(self) -> None:
        """Snapshot the state and compact the log at the next opportunity."""
        self._engine.force_compaction()

    # -- the embedding API -------------------------------------------------------------------

    def machine(self, name: str, *, consistency: Consistency = Consistency.LINEARIZABLE, timeout: float | None = None,
                session: "ClientSession | None" = None) -> "MachineProxy":
        """Return an awaitable proxy to a ``ReplicatedObject``: ``await node.machine("inv").add("x", 3)``.

        With ``session=`` (from ``open_session``) every command call is exactly-once.
        """
        target = self._check_machine(name)
        if not isinstance(target, ReplicatedObject):
            raise InvalidRequest(f"machine {name!r} is not a ReplicatedObject; use propose() and read()")
        return MachineProxy(self, name, type(target), consistency, timeout, session)


class MachineProxy:
    """Turn method calls into proposals (``@command``) and reads (``@query``)."""

    def __init__(self, node: Node, name: str, cls: type[ReplicatedObject], consistency: Consistency,
                 timeout: float | None, session: "ClientSession | None" = None) -> None:
        self._node = node
        self._name = name
        self._cls = cls
        self._consistency = consistency
        self._timeout = timeout
        self._session = session

    def __getattr__(self, method: str) -> Callable[..., Any]:
        kind = self._cls.method_kind(method)
        if kind is None:
            raise AttributeError(f"{self._cls.__name__} has no @command or @query named {method!r}")
        node, name = self._node, self._name

        async def call(*args: Any, idempotency_key: str | None = None, **kwargs: Any) -> Any:
            """Call the method; a command retried with the same ``idempotency_key`` applies once."""
            body = {"method": method, "args": list(args), "kwargs": kwargs}
            if kind == "command":
                if self._session is not None:
                    return await self._session.propose(name, body, idempotency_key=idempotency_key, timeout=self._timeout)
                key = idempotency_key if idempotency_key is not None else uuid.uuid4().hex
                return await node.propose(name, body, idempotency_key=key, timeout=self._timeout)
            if idempotency_key is not None:
                raise InvalidRequest("idempotency_key= is for @command methods; a query changes nothing")
            return await node.read(name, body, consistency=self._consistency, timeout=self._timeout)

        call.__name__ = method
        return call


class ClientSession:
    """A registered client: numbers its requests and retries each under its number until known.

    ``await session.propose(machine, command)`` applies ``command`` exactly once: on an unknown
    outcome (a leader change, a lost answer) it is re-sent under the same number until it is
    known or the deadline passes. A request whose outcome stayed unknown keeps its number
    outstanding, and its outcome is kept in the replicated table, until the session closes.
    If the session expired (no request for the session TTL) or was evicted, requests fail with a
    definite ``SessionExpired``: open a new session; nothing was applied.
    """

    _RETRY_SECONDS = 0.05

    def __init__(self, node: Node, client_id: int, timeout: float | None = None) -> None:
        self.node = node
        self.client_id = client_id
        self._timeout = timeout
        self._next = 1
        self._outstanding: set[int] = set()

    def lowest_unacknowledged(self) -> int:
        return min(self._outstanding, default=self._next)

    async def propose(self, machine: str, command: dict[str, Any], *, idempotency_key: str | None = None,
                      timeout: float | None = None) -> Any:
        seq = self._next
        self._next += 1
        self._outstanding.add(seq)
        budget = self.node.config.default_timeout if (timeout or self._timeout) is None else (timeout or self._timeout)
        deadline = time.monotonic() + budget  # type: ignore[operator]
        while True:
            remaining = deadline - time.monotonic()
            try:
                result = await self.node.propose(
                    machine, command, idempotency_key=idempotency_key, timeout=max(remaining, 0.001),
                    session=(self.client_id, seq, self.lowest_unacknowledged()),
                )
            except Indeterminate:
                if deadline - time.monotonic() <= self._RETRY_SECONDS:
                    raise  # seq stays outstanding: its outcome is kept for a later look
                await asyncio.sleep(self._RETRY_SECONDS)
                continue
            except (NotLeader, Unavailable):
                # Definite for this attempt: nothing was submitted. Try again while time is left.
                if deadline - time.monotonic() <= self._RETRY_SECONDS:
                    self._outstanding.discard(seq)
                    raise
                await asyncio.sleep(self._RETRY_SECONDS)
                continue
            except ConsensusError:
                self._outstanding.discard(seq)
                raise
            self._outstanding.discard(seq)
            return result

    async def close(self) -> None:
        """Drop the session and the outcomes it keeps (a log entry)."""
        await self.node.close_client(self.client_id, timeout=self._timeout)


def _check_address(address: str) -> None:
    if not isinstance(address, str) or ":" not in address:
        raise InvalidRequest(f"a member address is host:port, not {address!r}")
    host, port = address.rsplit(":", 1)
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidRequest(f"a member address is host:port, not {address!r}")
    if host.strip("[]") in ("0.0.0.0", "::", "*", ""):
        raise InvalidRequest(f"a member address names one host, not the wildcard {host!r}")
