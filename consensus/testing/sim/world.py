"""The simulated world: a clock, an event queue, nodes running the real engine, and clients.

Everything happens in one thread, in the order of a priority queue keyed by simulated time (ties
broken by the order events were scheduled), and every random choice comes from one
``random.Random(seed)``: a seed replays exactly. pysyncobj reads time through its module-level
``monotonicTime`` and draws election timeouts from the ``random`` module; while a world runs,
both are pointed at the world (``_patched``), and restored afterwards.

Nodes are real ``RaftCore`` objects (pysyncobj plus every raftwork rule) on a ``SimTransport``
and a ``MemoryStorage`` (a crash loses what was not synced); snapshots go to a temporary
directory. The state machine is a register that records, per command id, where it applied.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import os
import random
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import pysyncobj.syncobj as pysyncobj_syncobj
from pysyncobj.node import TCPNode

from consensus import codec
from consensus.dispatch import Dispatcher, encode_entry
from consensus.engine.base import EngineConfig
from consensus.engine.core import RaftCore
from consensus.engine.pysyncobj_engine import _close_pipes, wrap_callback
from consensus.engine.snapshots import inline_runner
from consensus.engine.storage import MemoryStorage
from consensus.machine import ApplyContext
from consensus.testing.sim.network import Network, Noise, SimTransport

EPOCH_NS = 1_700_000_000 * 10**9  # simulated wall clocks start here


class Register:
    """The simulated machine: records each command id with the index and term it applied at."""

    def __init__(self) -> None:
        self.applied: dict[int, list[list[int]]] = {}  # command id -> every [index, term] it applied at

    def apply(self, command: dict[str, Any], ctx: ApplyContext) -> list[int]:
        # A command can apply twice (a duplicated forward: Raft itself does not deduplicate; client
        # sessions do). Its acknowledgement names one of the places.
        self.applied.setdefault(command["id"], []).append([ctx.index, ctx.term])
        return [ctx.index, ctx.term]

    def query(self, query: dict[str, Any]) -> Any:
        return len(self.applied)

    def snapshot(self) -> bytes:
        return codec.pack(sorted(self.applied.items()))

    def restore(self, data: bytes) -> None:
        self.applied = {k: v for k, v in codec.unpack(data)}


class SimHooks:
    """The engine's state hooks: a real ``Dispatcher``; every apply is reported to the checker."""

    def __init__(self, world: "World", node_id: str) -> None:
        self.world = world
        self.node_id = node_id
        self.register = Register()
        self.dispatcher = Dispatcher({"reg": self.register})

    def apply(self, payload: bytes, index: int, term: int) -> Any:
        outcomes = self.dispatcher.apply(payload, index, term)
        self.world.checks.on_apply(self.node_id, index, term, payload)
        return outcomes

    def snapshot(self) -> bytes:
        return self.dispatcher.snapshot()

    def capture(self) -> Callable[[], bytes]:
        return self.dispatcher.capture()

    def restore(self, data: bytes) -> None:
        self.dispatcher.restore(data)
        self.world.checks.on_restore(self.node_id, self.dispatcher.last_index)


@dataclass
class SimNode:
    node_id: str
    storage: MemoryStorage = field(default_factory=MemoryStorage)
    core: RaftCore | None = None
    hooks: SimHooks | None = None
    skew_ns: int = 0

    @property
    def alive(self) -> bool:
        return self.core is not None


@dataclass
class SimConfig:
    nodes: int = 3
    election_timeout: tuple[float, float] = (0.4, 1.4)
    heartbeat: float = 0.1
    tick_seconds: tuple[float, float] = (0.02, 0.05)  # periodic ticks; a delivery ticks at once
    compaction_entries: int = 60
    message_bytes: int = 400  # small, so the leader sends entries in several messages
    leader_fallback: float | None = None  # how long a leader keeps leading unheard (default: pysyncobj's 1.5 s)
    noise: Noise = field(default_factory=Noise)


class World:
    def __init__(self, seed: int, config: SimConfig | None = None, core_class: type[RaftCore] = RaftCore) -> None:
        self.seed = seed
        self.config = config or SimConfig()
        self.core_class = core_class
        self.rng = random.Random(seed)
        self.engine_rng = random.Random(seed ^ 0x5EED)  # pysyncobj's election timeouts
        self.now = 0.0
        self._queue: list[tuple[float, int, Callable[[], None], str | None]] = []
        self._seq = 0
        self.trace: list[str] = []
        self.tmp = tempfile.mkdtemp(prefix="raftwork-sim-")
        self.network = Network(self, self.config.noise)
        ids = [f"sim{i + 1}:{7000 + i + 1}" for i in range(self.config.nodes)]
        self.nodes = {i: SimNode(i) for i in ids}
        from consensus.testing.sim.checks import Checks

        self.checks = Checks(self)
        self.next_command = 1
        self.acked: dict[int, tuple[int, int]] = {}  # command id -> (index, term) it committed at
        self.pending: dict[int, str] = {}  # command id -> the node it was submitted to
        self.next_read = 1
        self.reads: dict[int, tuple[str, bool | None]] = {}  # read id -> (node, answered ok / failed / None)
        self.touched: dict[str, None] = {}  # nodes to tick after this step, in a stable order

    # -- the event queue ---------------------------------------------------------------------

    def at(self, when: float, fn: Callable[[], None], label: str | None) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (when, self._seq, fn, label))

    def after(self, delay: float, fn: Callable[[], None], label: str | None) -> None:
        self.at(self.now + delay, fn, label)

    def note(self, text: str) -> None:
        self.trace.append(f"{self.now:9.4f} {text}")

    def node_touched(self, node_id: str) -> None:
        self.touched[node_id] = None

    def run_until(self, until: float) -> None:
        while self._queue and self._queue[0][0] <= until:
            when, _, fn, label = heapq.heappop(self._queue)
            self.now = when
            if label is not None:
                self.note(label)
            fn()
            for node_id in list(self.touched):
                self._tick(node_id)
            self.touched.clear()
            self.checks.after_step()
        self.now = until

    # -- nodes -------------------------------------------------------------------------------

    def start(self, node_id: str) -> None:
        node = self.nodes[node_id]
        if node.alive:
            return
        others = [n for n in self.nodes if n != node_id]
        transport = SimTransport(self.network, node_id, others)
        node.hooks = SimHooks(self, node_id)
        c = self.config
        config = EngineConfig(
            node_id=node_id, peers=list(self.nodes), data_dir=os.path.join(self.tmp, node_id.replace(":", "_")),
            election_timeout=c.election_timeout, heartbeat_interval=c.heartbeat,
            leader_fallback_timeout=c.leader_fallback or max(c.heartbeat * 4, 1.5), connection_timeout=max(3.5, c.election_timeout[1]),
            compaction_min_entries=c.compaction_entries, compaction_min_time=3600.0, max_message_bytes=c.message_bytes,
            fsync="never",  # snapshot files only: the journal lives in MemoryStorage, with its own sync rules
        )
        node.core = self.core_class(
            config, node.hooks, storage=node.storage, transport=transport, clock=lambda: self.now,
            wall_ns=lambda: EPOCH_NS + int(self.now * 1e9) + node.skew_ns, snapshot_runner=inline_runner,
            node_class=TCPNode, forward_sweep_seconds=2.0,
        )
        self.network.attach(transport)
        self.checks.on_start(node_id)
        self._schedule_tick(node_id, node.core)

    def _schedule_tick(self, node_id: str, core: RaftCore) -> None:
        def tick() -> None:
            if self.nodes[node_id].core is core:
                self._tick(node_id)
                self._schedule_tick(node_id, core)

        self.after(self.rng.uniform(*self.config.tick_seconds), tick, None)

    def _tick(self, node_id: str) -> None:
        core = self.nodes[node_id].core
        if core is None:
            return
        try:
            core.tick(0.0)
        except Exception as exc:  # the real engine logs "engine tick failed" and goes on: a bug
            self.checks.fail(f"{node_id} engine tick raised {type(exc).__name__}: {exc}")

    def crash(self, node_id: str, torn_bytes: int = 0) -> None:
        """Kill the node at once: unsynced writes are lost (a torn tail may survive)."""
        node = self.nodes[node_id]
        core = node.core
        if core is None:
            return
        node.core = None
        self.network.detach(node_id)
        _close_pipes(getattr(core.so, "_SyncObj__pipeNotifier", None))
        node.storage.crash(torn_bytes)
        for cid in [c for c, n in self.pending.items() if n == node_id]:
            del self.pending[cid]  # its answer died with the node
        self.checks.on_crash(node_id)

    def alive(self) -> list[str]:
        return [n for n, node in self.nodes.items() if node.alive]

    def core(self, node_id: str) -> RaftCore:
        core = self.nodes[node_id].core
        assert core is not None, f"{node_id} is down"
        return core

    def leaders(self) -> list[str]:
        from consensus.engine.internals import LEADER

        return [n for n in self.alive() if self.core(n).raft.state == LEADER]

    # -- clients -----------------------------------------------------------------------------

    def submit(self, node_id: str) -> int | None:
        """Propose a new command through ``node_id`` (any node: followers forward)."""
        node = self.nodes[node_id]
        if node.core is None:
            return None
        cid = self.next_command
        self.next_command += 1
        payload = encode_entry(0, [["reg", codec.pack({"id": cid}), None]])
        self.pending[cid] = node_id

        def done(result: Any, failure: Any) -> None:
            self.pending.pop(cid, None)
            if failure is None and result:
                index, term = result[0].value
                self.acked[cid] = (index, term)
                self.checks.on_ack(cid, index, term)

        node.core.replicator.apply_payload(payload, callback=wrap_callback(done))
        self.touched[node_id] = None
        return cid

    def read(self, node_id: str) -> int | None:
        """Invoke a linearizable read (ReadIndex) on ``node_id``; the checks judge its answer."""
        node = self.nodes[node_id]
        if node.core is None:
            return None
        rid = self.next_read
        self.next_read += 1
        required = list(self.acked)  # every write acknowledged before the read was invoked
        self.reads[rid] = (node_id, None)
        hooks = node.hooks

        def done(result: Any, failure: Any) -> None:
            self.reads[rid] = (node_id, failure is None)
            if failure is None:
                assert hooks is not None
                self.checks.on_read(node_id, rid, required, hooks.register)

        node.core.reads.read(wrap_callback(done))
        self.touched[node_id] = None
        return rid

    # -- lifetime ----------------------------------------------------------------------------

    def close(self) -> None:
        for node_id in list(self.nodes):
            core = self.nodes[node_id].core
            if core is not None:
                self.nodes[node_id].core = None
                _close_pipes(getattr(core.so, "_SyncObj__pipeNotifier", None))
        shutil.rmtree(self.tmp, ignore_errors=True)


class _EngineRandom:
    def __init__(self, world: World) -> None:
        self.world = world

    def random(self) -> float:
        return self.world.engine_rng.random()


@contextlib.contextmanager
def patched(world: World) -> Iterator[None]:
    """Point pysyncobj's clock and election randomness at ``world`` while it runs."""
    saved = (pysyncobj_syncobj.monotonicTime, pysyncobj_syncobj.random)
    pysyncobj_syncobj.monotonicTime = lambda: world.now
    pysyncobj_syncobj.random = _EngineRandom(world)  # type: ignore[assignment]
    logger = logging.getLogger("pysyncobj")
    level = logger.level
    try:
        yield
    finally:
        pysyncobj_syncobj.monotonicTime, pysyncobj_syncobj.random = saved
        logger.setLevel(level)
