"""Run one test: cluster up, clients and nemesis for the time limit, heal, recover, final reads,
cluster down (always), check, store.

Every fault is undone and every process stopped in ``finally`` blocks, so an exception or a
Ctrl-C (the main task cancelled) still leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from chaos import store
from chaos.runner.config import Pacer, TestConfig, derive_rng, nemesis_schedule
from chaos.runner.recorder import Recorder
from chaos.runner.verdict import check_history
from chaos.workloads import Answer, Workload, make_workload
from consensus.client import Client, normalize_url

FINAL_READ_ATTEMPTS = 3
NEMESIS = "nemesis"


@dataclass
class Result:
    """What a run produced: the verdict, the checker results, and where the store is."""

    valid: Any
    results: dict[str, Any]
    run_dir: Path | None
    history: list[dict[str, Any]] = field(repr=False)
    config: TestConfig = field(repr=False, default_factory=TestConfig)


def _default_cluster(config: TestConfig, data_dir: Path) -> Any:
    from chaos.cluster import ChaosCluster  # imported late: the runner's pure parts do not need it

    return ChaosCluster(n=config.nodes, apps=("counter",), data_dir=data_dir, toxiproxy_url=config.toxiproxy)


def _make_nemesis(name: str) -> Any:
    if name == "none":
        return None
    from chaos.nemesis import make_nemesis

    return make_nemesis(name)


class _Progress:
    """Plain progress lines on stderr every few seconds."""

    def __init__(self, config: TestConfig, recorder: Recorder, out: TextIO | None) -> None:
        self.config, self.recorder, self.out = config, recorder, out
        self.phase = "starting"
        self.fault = ""

    def say(self, text: str) -> None:
        if self.out is not None:
            print(f"[{self.recorder.elapsed():6.1f}s] {text}", file=self.out, flush=True)

    async def loop(self, every: float = 5.0) -> None:
        while True:
            await asyncio.sleep(every)
            c = self.recorder.counts()
            fault = f"; fault: {self.fault}" if self.fault else ""
            self.say(f"{self.phase}: {sum(c.values())} ops done (ok {c['ok']}, fail {c['fail']}, info {c['info']}){fault}")


class _Run:
    """One run's moving parts; :func:`run_test` drives it."""

    def __init__(self, config: TestConfig, workload: Workload, seed: int, progress: _Progress, recorder: Recorder) -> None:
        self.config = config
        self.workload = workload
        self.seed = seed
        self.progress = progress
        self.recorder = recorder
        self.concurrency = config.processes()
        self.next_process = self.concurrency  # fresh ids for processes that replace crashed ones
        self.names: dict[str, str] = {}
        self.pids_seen: set[int] = set()
        self.cluster: Any = None

    def watch(self, cluster: Any, data_dir: Path, run_dir: Path) -> None:
        """Note every node process seen so far in ``run_dir/cluster.json`` (for leak checks)."""
        nodes = [{"name": n.name, "raft": n.raft, "http": n.http, "pid": n.pid} for n in getattr(cluster, "nodes", ())]
        self.pids_seen.update(n["pid"] for n in nodes if n["pid"])
        store.write_json(run_dir / "cluster.json", {"data_dir": str(data_dir), "nodes": nodes,
                                                    "pids_seen": sorted(self.pids_seen)})

    # -- clients ---------------------------------------------------------------------------

    def _node_of(self, endpoint: str | None) -> str | None:
        return self.names.get(normalize_url(endpoint)) if endpoint else None

    def _requester(self, client: Client, seen: dict[str, Any]) -> Any:
        async def request(method: str, path: str, *, body: Any = None, write: bool = False) -> Answer:
            seen["node"] = None
            response = await client.request(method, path, body=body, write=write, leader=True)
            seen["node"] = self._node_of(response.endpoint)
            return Answer(response.body, response.endpoint)

        return request

    async def one_op(self, request: Any, seen: dict[str, Any], process: int, spec: dict[str, Any], timeout: float) -> str:
        """Invoke one op, record invoke and completion, return the completion type."""
        f, value = spec["f"], spec["value"]
        self.recorder.record("invoke", process, f, value)
        try:
            kind, out, extra = await asyncio.wait_for(self.workload.invoke(request, f, value), timeout + 2.0)
        except asyncio.TimeoutError:
            kind, out, extra = "info", None, {"error": "timeout"}
        except asyncio.CancelledError:
            self.recorder.record("info", process, f, value, error="cancelled")
            raise
        self.recorder.record(kind, process, f, out if kind == "ok" else value,
                             node=seen.get("node") if kind == "ok" else None, **extra)
        return kind

    async def worker(self, slot: int, endpoints: list[str], gen: Any, pacer: Pacer, stop: asyncio.Event) -> None:
        process = slot
        seen: dict[str, Any] = {}
        rng = derive_rng(self.seed, f"client-{slot}")
        async with Client(endpoints, timeout=self.config.op_timeout, rng=rng) as client:
            request = self._requester(client, seen)
            while not stop.is_set():
                delay = pacer.next_slot(time.monotonic()) - time.monotonic()
                if delay > 0:
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(stop.wait(), delay)
                if stop.is_set():
                    break
                if await self.one_op(request, seen, process, next(gen), self.config.op_timeout) == "info":
                    process = self.next_process  # its op may still be in flight: it never issues again
                    self.next_process += 1

    async def final_reads(self, endpoints: list[str]) -> None:
        """Read every key once more after recovery, each by a fresh process, retrying on failure."""
        seen: dict[str, Any] = {}
        timeout = self.config.final_timeout
        async with Client(endpoints, timeout=timeout) as client:
            request = self._requester(client, seen)
            for spec in self.workload.final_ops(self.recorder.ops):
                for _ in range(FINAL_READ_ATTEMPTS):
                    process = self.next_process
                    self.next_process += 1
                    if await self.one_op(request, seen, process, spec, timeout) == "ok":
                        break

    # -- nemesis ---------------------------------------------------------------------------

    async def _nemesis_op(self, f: str, call: Any) -> None:
        self.recorder.record("invoke", NEMESIS, f, phase=f)
        try:
            value = await call
        except Exception as exc:  # noqa: BLE001 - a nemesis error is recorded, the test goes on
            self.recorder.record("info", NEMESIS, f, None, phase=f, error=f"{type(exc).__name__}: {exc}"[:300])
            self.progress.say(f"nemesis {f} failed: {type(exc).__name__}: {exc}")
            return
        phase = f
        if isinstance(value, dict) and "f" in value:  # the nemesis names its op, Jepsen style: start-partition
            f, value = str(value["f"]), value.get("value")
        self.recorder.record("info", NEMESIS, f, _plain(value), phase=phase)
        if self.cluster is not None:
            self.pids_seen.update(n.pid for n in self.cluster.nodes if n.pid)

    async def nemesis_loop(self, nemesis: Any, cluster: Any, t0: float, done: asyncio.Event) -> None:
        """Start and stop faults on the seeded schedule; at the time limit (``done``) stop the
        fault in place, if any, and return. A nemesis op is never cancelled halfway."""
        rng = derive_rng(self.seed, "nemesis")
        for start, stop in nemesis_schedule(derive_rng(self.seed, "schedule"), self.config.time_limit,
                                            self.config.nemesis_interval):
            if await _wait(done, t0 + start):
                return
            self.progress.fault = nemesis.name
            await self._nemesis_op("start", nemesis.start(cluster, rng))
            started = self.recorder.ops[-1]
            self.progress.say(f"nemesis {started['f']}: {started.get('value') or started.get('error') or ''}")
            await _wait(done, t0 + stop)
            await self._nemesis_op("stop", nemesis.stop(cluster))
            self.progress.fault = ""
            self.progress.say(f"nemesis {self.recorder.ops[-1]['f']}")


def _plain(value: Any) -> Any:
    """Return ``value`` with anything not JSON-ready turned into a string."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


async def _wait(event: asyncio.Event, deadline: float) -> bool:
    """Wait until the monotonic ``deadline`` or until ``event`` is set; return whether it is set."""
    delay = deadline - time.monotonic()
    if delay > 0 and not event.is_set():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(event.wait(), delay)
    return event.is_set()


async def _heal(run: _Run, nemesis: Any, cluster: Any) -> None:
    """Undo every fault: the nemesis's own final heal, then the cluster's; errors reported, not raised."""
    if nemesis is not None:
        await run._nemesis_op("heal", nemesis.heal(cluster))
    try:
        await asyncio.wait_for(cluster.heal(), 30)
    except Exception as exc:  # noqa: BLE001 - keep healing and stopping whatever else is left
        run.progress.say(f"cluster heal failed: {type(exc).__name__}: {exc}")
    for name in (getattr(cluster, "faults", None) or {}).get("killed", []):
        try:  # the nemesis should have restarted it; a node left down is a fault left in place
            await asyncio.wait_for(cluster.restart(name), 60)
            run.progress.say(f"restarted {name}, which the nemesis left killed")
        except Exception as exc:  # noqa: BLE001
            run.progress.say(f"restart of {name} failed: {type(exc).__name__}: {exc}")


async def _drive(run: _Run, cluster: Any, nemesis: Any) -> None:
    config = run.config
    endpoints = list(cluster.endpoints)
    for node in cluster.nodes:
        run.names[normalize_url(node.http)] = node.name
    await cluster.wait_for_leader(30)
    gen = run.workload.generator(derive_rng(run.seed, "generator"))
    pacer = Pacer(derive_rng(run.seed, "pacer"), config.rate)
    stop = asyncio.Event()
    t0 = time.monotonic()
    run.recorder.restart()  # history time 0 is when the clients begin, as in Jepsen
    run.progress.phase = "running"
    run.progress.say(f"running {config.test_name}: {run.concurrency} clients, {config.rate:g} ops/s, "
                     f"{config.time_limit:g}s, seed {run.seed}")
    workers = [asyncio.create_task(run.worker(i, endpoints, gen, pacer, stop)) for i in range(run.concurrency)]
    nemesis_task = asyncio.create_task(run.nemesis_loop(nemesis, cluster, t0, stop)) if nemesis is not None else None
    try:
        await asyncio.sleep(config.time_limit)
        stop.set()
        run.progress.phase = "draining"
        run.progress.say("time limit reached; waiting for ops in flight")
        waiting = [*workers, *([nemesis_task] if nemesis_task is not None else [])]
        done, pending = await asyncio.wait(waiting, timeout=config.op_timeout + 60.0)
        for task in done:
            if task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    finally:
        stop.set()
        tasks = [t for t in [*workers, nemesis_task] if t is not None and not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        run.progress.phase = "healing"
        await _heal(run, nemesis, cluster)
    run.progress.phase = "recovering"
    run.progress.say(f"healed; recovering for {config.recovery:g}s")
    await asyncio.sleep(config.recovery)
    with contextlib.suppress(Exception):
        await cluster.wait_for_leader(30)
    run.progress.phase = "final reads"
    await run.final_reads(endpoints)


async def run_test_async(config: TestConfig, *, progress: TextIO | None = sys.stderr) -> Result:
    """Run the test described by ``config``; return its result (the store is written too)."""
    workload = make_workload(config.workload, **config.workload_options)
    seed = config.seed if config.seed is not None else random.SystemRandom().randrange(2**31)
    config.seed = seed
    nemesis = _make_nemesis(config.nemesis)
    run_dir = store.new_run_dir(Path(config.store), config.test_name)
    recorder = Recorder()
    reporter = _Progress(config, recorder, progress if config.progress else None)
    run = _Run(config, workload, seed, reporter, recorder)
    store.write_json(run_dir / "test.json", {**config.to_dict(), "workload_spec": workload.describe()})
    data_dir = Path(tempfile.mkdtemp(prefix="chaos-run-"))
    ticker = asyncio.create_task(reporter.loop())
    cluster = None
    try:
        factory = config.cluster_factory or _default_cluster
        cluster = factory(config, data_dir)
        async with cluster:
            run.cluster = cluster
            run.watch(cluster, data_dir, run_dir)
            await _drive(run, cluster, nemesis)
            reporter.phase = "stopping"
    except BaseException as exc:
        crashed = "interrupted" if isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt)) else f"{type(exc).__name__}: {exc}"
        store.write_json(run_dir / "results.json", {"valid": "unknown", "test": config.test_name, "crashed": crashed})
        raise
    finally:
        ticker.cancel()
        if cluster is not None:
            with contextlib.suppress(Exception):  # housekeeping must not hide the run's own error
                run.watch(cluster, data_dir, run_dir)
                store.copy_node_logs(cluster, run_dir)
        store.write_history(run_dir, recorder.ops)
        shutil.rmtree(data_dir, ignore_errors=True)
    reporter.say(f"cluster stopped; checking {len(recorder.ops)} ops")
    results = check_history(workload, recorder.ops, config)
    store.write_json(run_dir / "results.json", results)
    store.write_report(run_dir, recorder.ops, config)
    store.update_latest(Path(config.store), run_dir)
    return Result(valid=results["valid"], results=results, run_dir=run_dir, history=recorder.ops, config=config)


def run_test(config: TestConfig, *, progress: TextIO | None = sys.stderr) -> Result:
    """Run a test to completion in a fresh event loop; SIGTERM is handled like Ctrl-C."""

    async def main() -> Result:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGTERM, task.cancel)  # type: ignore[union-attr]
        return await run_test_async(config, progress=progress)

    return asyncio.run(main())
