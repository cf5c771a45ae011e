"""Run one test: cluster up, clients and nemesis for the time limit, heal, recover, final reads,
replica agreement, cluster down (always), check, store, report.

Every fault is undone and every process stopped in ``finally`` blocks, so an exception or a
Ctrl-C (the main task cancelled) still leaves nothing behind. One :class:`~chaos.history.Op`
type flows from the recorder through the checkers, the store and the report.
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

from chaos import report, store
from chaos.history import Op
from chaos.nemesis import Nemesis, NemesisOp, NoNemesis, UnknownNemesis, make_nemesis, node_env
from chaos.report.intervals import fault_label
from chaos.runner.availability import availability
from chaos.runner.checks import agreement_check, faults_check, logs_check
from chaos.runner.config import Pacer, TestConfig, derive_rng, nemesis_schedule
from chaos.runner.progress import Progress
from chaos.runner.recorder import NEMESIS, Recorder
from chaos.runner.results import RunResults, check_history
from chaos.verdict import CheckResult, Verdict
from chaos.workloads import OpSpec, UnknownWorkload, Workload, make_workload
from consensus.client import Client, normalize_url

FINAL_READ_ATTEMPTS = 3
PROGRESS_EVERY = 5.0  # seconds between progress lines


class ConfigError(ValueError):
    """The test cannot run as configured (a nemesis too big for the cluster...): a usage error."""


@dataclass
class Result:
    """What a run produced: the verdict, the results, and where the store is."""

    valid: Verdict
    results: RunResults
    run_dir: Path | None
    history: list[Op] = field(repr=False)
    config: TestConfig = field(repr=False, default_factory=TestConfig)


class _TracingClient(Client):
    """A client that remembers which endpoint answered its last request (for the ops' ``node``)."""

    last_endpoint: str | None = None

    async def request(self, *args: Any, **kwargs: Any) -> Any:
        self.last_endpoint = None
        response = await super().request(*args, **kwargs)
        self.last_endpoint = response.endpoint
        return response


def _default_cluster(config: TestConfig, data_dir: Path) -> Any:
    from chaos.cluster import ChaosCluster  # imported late: the runner's pure parts do not need it

    # The workload's apps, and the counter app, through which the restart-follower nemesis fills the log.
    apps = tuple(dict.fromkeys([*make_workload(config.workload, **config.workload_options).apps, "counter"]))
    return ChaosCluster(n=config.nodes, apps=apps, data_dir=data_dir, toxiproxy_url=config.toxiproxy,
                        groups=config.groups, env=node_env(_make_nemesis(config.nemesis)))


async def _wait_for_leaders(cluster: Any, timeout: float) -> str:
    """Wait until the cluster (every group of it, when it runs several) has an agreed leader."""
    if len(getattr(cluster, "groups", ())) > 1:
        await cluster.wait_for_group_leaders(timeout)
    return str(await cluster.wait_for_leader(timeout))


def _make_nemesis(name: str) -> Nemesis:
    return make_nemesis(name)


def prepare(config: TestConfig) -> tuple[Workload, Nemesis]:
    """Build the workload and nemesis, or raise :class:`ConfigError` before anything starts."""
    try:
        workload = make_workload(config.workload, read_consistency=config.read_consistency, **config.workload_options)
        nemesis = _make_nemesis(config.nemesis)
    except (UnknownWorkload, UnknownNemesis, ValueError) as exc:
        raise ConfigError(str(exc)) from None
    problems = nemesis.problems(config.nodes)
    if config.groups < 2 and "kill-coordinator" in config.nemesis.split(","):
        problems.append("kill-coordinator needs transactions across groups: --groups 2 or more")
    if problems:
        raise ConfigError(f"nemesis {config.nemesis} cannot run on {config.nodes} nodes: {'; '.join(problems)}")
    return workload, nemesis


class _Run:
    """One run's moving parts; :func:`run_test_async` drives it."""

    def __init__(self, config: TestConfig, workload: Workload, nemesis: Nemesis, seed: int, progress: Progress,
                 recorder: Recorder) -> None:
        self.config = config
        self.workload = workload
        self.nemesis = nemesis
        self.seed = seed
        self.progress = progress
        self.recorder = recorder
        self.concurrency = config.processes()
        self.next_process = self.concurrency  # fresh ids for processes that replace crashed ones
        self.names: dict[str, str] = {}
        self.cluster: Any = None
        self.run_checks: dict[str, CheckResult] = {}
        self.faulty = not isinstance(nemesis, NoNemesis)  # "none" schedules nothing and records nothing
        self.recovery_seconds: float | None = None  # from the final heal until the cluster serves again

    def watch(self, run_dir: Path, data_dir: Path) -> None:
        """Note every node process seen so far in ``run_dir/cluster.json`` (for leak checks)."""
        nodes = [{"name": n.name, "raft": n.raft, "http": n.http, "pid": n.pid} for n in self.cluster.nodes]
        seen = set(getattr(getattr(self.cluster, "local", self.cluster), "pids_seen", ()) or ())
        seen |= {n["pid"] for n in nodes if n["pid"]}
        store.write_json(run_dir / "cluster.json", {"data_dir": str(data_dir), "nodes": nodes, "pids_seen": sorted(seen)})

    # -- clients ---------------------------------------------------------------------------

    async def one_op(self, client: _TracingClient, process: int, spec: OpSpec, timeout: float,
                     state: Any = None) -> str:
        """Invoke one op, record invoke and completion, return the completion type."""
        self.recorder.record("invoke", process, spec.f, spec.value)
        client.last_endpoint = None  # an op that sends no request (the lock's fenced write) names no node
        try:
            # A stateless workload's invoke may take three arguments (written before process state).
            invoke = (self.workload.invoke(client, spec.f, spec.value) if state is None
                      else self.workload.invoke(client, spec.f, spec.value, state))
            outcome = await asyncio.wait_for(invoke, timeout + 2.0)
            kind, value, extra = outcome.type, outcome.value, outcome.extra
        except asyncio.TimeoutError:
            kind, value, extra = "info", None, {"error": "timeout"}
        except asyncio.CancelledError:
            self.recorder.record("info", process, spec.f, spec.value, error="cancelled")
            raise
        node = self.names.get(normalize_url(client.last_endpoint)) if kind == "ok" and client.last_endpoint else None
        self.recorder.record(kind, process, spec.f, value if kind == "ok" else spec.value, node=node, **extra)
        return kind

    async def worker(self, slot: int, endpoints: list[str], gen: Any, pacer: Pacer, stop: asyncio.Event) -> None:
        process = slot
        client = _TracingClient(endpoints, timeout=self.config.op_timeout, rng=derive_rng(self.seed, f"client-{slot}"),
                                sessions=self.workload.sessions)
        async with client:
            state = self.workload.new_process()
            try:
                while not stop.is_set():
                    delay = pacer.next_slot(time.monotonic()) - time.monotonic()
                    if delay > 0:
                        with contextlib.suppress(asyncio.TimeoutError):
                            await asyncio.wait_for(stop.wait(), delay)
                    if stop.is_set():
                        break
                    spec = self.workload.next_op(gen, state)
                    if await self.one_op(client, process, spec, self.config.op_timeout, state) == "info":
                        process = self.next_process  # its op may still be in flight: it never issues again
                        self.next_process += 1
                        await self.end_process(client, state)
                        state = self.workload.new_process()
                for spec in self.workload.closing_ops(state):
                    if await self.one_op(client, process, spec, self.config.op_timeout, state) == "info":
                        break
            finally:
                await self.end_process(client, state)

    async def end_process(self, client: _TracingClient, state: Any) -> None:
        """Let the workload release what an ended process held (a lock session), within the op timeout."""
        if state is None:
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.workload.end_process(client, state), self.config.op_timeout + 2.0)

    async def final_reads(self, endpoints: list[str]) -> None:
        """Read every key once more after recovery, each by a fresh process, retrying on failure."""
        client = _TracingClient(endpoints, timeout=self.config.final_timeout, sessions=self.workload.sessions)
        async with client:
            for spec in self.workload.final_ops(self.recorder.ops):
                for _ in range(FINAL_READ_ATTEMPTS):
                    process = self.next_process
                    self.next_process += 1
                    if await self.one_op(client, process, spec, self.config.final_timeout) == "ok":
                        break

    # -- nemesis ---------------------------------------------------------------------------

    async def nemesis_op(self, phase: str, call: Any) -> Op:
        """Record the nemesis's invoke, run ``call`` and record what it did (or its error).

        A start also records the leader agreed just before it and the members, so the stall
        after a leader loss can be told from the history (:mod:`chaos.runner.availability`)."""
        about: dict[str, Any] = {}
        if phase == "start":
            about["members"] = list(getattr(self.cluster, "names", ()))
            with contextlib.suppress(Exception):
                about["leader"] = await asyncio.wait_for(self.cluster.leader(), 3.0)
        self.recorder.record("invoke", NEMESIS, phase, phase=phase)
        try:
            done = await call
        except Exception as exc:  # noqa: BLE001 - a nemesis error is recorded (the verdict becomes unknown)
            error = f"{type(exc).__name__}: {exc}"[:300]
            self.progress.say(f"nemesis {phase} failed: {error}")
            return self.recorder.record("info", NEMESIS, phase, None, phase=phase, error=error)
        f, value = (done.f, done.value) if isinstance(done, NemesisOp) else (phase, done)
        return self.recorder.record("info", NEMESIS, f, _plain(value), phase=phase, **about)

    async def nemesis_loop(self, cluster: Any, t0: float, done: asyncio.Event) -> None:
        """Start and stop faults on the seeded schedule; at the time limit (``done``) stop the
        fault in place, if any, and return. A nemesis op is never cancelled halfway."""
        rng = derive_rng(self.seed, "nemesis")
        for start, stop in nemesis_schedule(derive_rng(self.seed, "schedule"), self.config.time_limit,
                                            self.config.nemesis_interval):
            if await _wait(done, t0 + start):
                return
            started = await self.nemesis_op("start", self.nemesis.start(cluster, rng))
            if not started.get("error"):  # progress names the fault in place (not the package: "all")
                self.progress.fault = fault_label(started.f, started.value) or started.f
            self.progress.say(f"nemesis {started.f}: {started.value if started.value is not None else started.get('error', '')}")
            await _wait(done, t0 + stop)
            stopped = await self.nemesis_op("stop", self.nemesis.stop(cluster))
            self.progress.fault = ""
            self.progress.say(f"nemesis {stopped.f}")


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


async def _heal(run: _Run, cluster: Any) -> None:
    """Undo every fault: the nemesis's own final heal, then the cluster's; errors reported, not raised."""
    if run.faulty:
        await run.nemesis_op("heal", run.nemesis.heal(cluster))
    try:
        await asyncio.wait_for(cluster.heal(), 30)
    except Exception as exc:  # noqa: BLE001 - keep healing and stopping whatever else is left
        run.progress.say(f"cluster heal failed: {type(exc).__name__}: {exc}")
    for name in list((getattr(cluster, "faults", None) or {}).get("killed", [])):
        try:  # the nemesis should have restarted it; a node left down is a fault left in place
            await asyncio.wait_for(cluster.restart(name), 60)
            run.progress.say(f"restarted {name}, which the nemesis left killed")
        except Exception as exc:  # noqa: BLE001
            run.progress.say(f"restart of {name} failed: {type(exc).__name__}: {exc}")


async def _drive(run: _Run, cluster: Any) -> None:
    config = run.config
    endpoints = list(cluster.endpoints)
    for node in cluster.nodes:
        run.names[normalize_url(node.http)] = node.name
    await _wait_for_leaders(cluster, 30)
    gen = run.workload.generator(derive_rng(run.seed, "generator"))
    pacer = Pacer(derive_rng(run.seed, "pacer"), config.rate)
    stop = asyncio.Event()
    t0 = time.monotonic()
    run.recorder.restart()  # history time 0 is when the clients begin, as in Jepsen
    run.progress.phase = "running"
    run.progress.say(f"running {config.test_name}: {run.concurrency} clients, {config.rate:g} ops/s, "
                     f"{config.time_limit:g}s, seed {run.seed}")
    workers = [asyncio.create_task(run.worker(i, endpoints, gen, pacer, stop)) for i in range(run.concurrency)]
    nemesis_task = asyncio.create_task(run.nemesis_loop(cluster, t0, stop) if run.faulty else stop.wait())
    try:
        await asyncio.sleep(config.time_limit)
        stop.set()
        run.progress.phase = "draining"
        run.progress.say("time limit reached; waiting for ops in flight")
        done, _ = await asyncio.wait([*workers, nemesis_task], timeout=config.op_timeout + 60.0)
        for task in done:
            if task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    finally:
        stop.set()
        tasks = [t for t in [*workers, nemesis_task] if not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        run.progress.phase = "healing"
        await _heal(run, cluster)
    run.progress.phase = "recovering"
    started = time.monotonic()
    with contextlib.suppress(Exception):
        run.recovery_seconds = await _recovered(cluster, 60.0)
        run.progress.say(f"healed; serving again after {run.recovery_seconds:.2f}s")
    run.progress.say(f"recovering for {config.recovery:g}s")
    await asyncio.sleep(max(0.0, config.recovery - (time.monotonic() - started)))
    with contextlib.suppress(Exception):
        await _wait_for_leaders(cluster, 30)
    run.progress.phase = "final reads"
    await run.final_reads(endpoints)
    run.progress.phase = "replica agreement"
    agreement = await agreement_check(cluster, config.agreement_timeout)
    run.run_checks["replicas"] = agreement
    run.progress.say(f"replicas: {agreement.summary()}")


async def _recovered(cluster: Any, timeout: float) -> float:
    """Wait until the healed cluster serves again; return how long that took (seconds).

    Serving again: one leader agreed by the nodes, and every node applied what that leader had
    committed when it was found (caught up). Polls with a deadline; raises ``TimeoutError``."""
    started = time.monotonic()
    leader = await _wait_for_leaders(cluster, timeout)
    status = (await cluster.status(leader)) or {}
    # Several groups: every group's members catch up with what its own leader had committed.
    targets = {g.get("group"): g.get("commit_index", 0) for g in status.get("groups", [])} or \
        {status.get("group"): status.get("commit_index", 0)}
    if len(targets) > 1:
        leaders = await cluster.wait_for_group_leaders(timeout)
        for group, name in leaders.items():
            found = next((g for g in ((await cluster.status(name)) or {}).get("groups", []) if g.get("group") == group), {})
            targets[group] = found.get("commit_index", 0)
    while True:
        statuses = await cluster.statuses()
        if all(s is not None and all(g.get("last_applied", -1) >= targets.get(g.get("group"), 0)
                                     for g in s.get("groups", [s])) for s in statuses.values()):
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"nodes did not catch up to {targets} within {timeout:g}s")
        await asyncio.sleep(0.05)


async def _leave_running(run: _Run, cluster: Any) -> None:
    """``--leave-db-running``: keep the healed cluster up in the foreground until Ctrl-C."""
    run.progress.say("cluster left running (--leave-db-running); Ctrl-C stops it")
    for node in cluster.nodes:
        run.progress.say(f"  {node.name} pid {node.pid} raft {node.raft} http {node.http} log {node.log}")
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:  # Ctrl-C or SIGTERM: stop the cluster, then check as usual
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()


async def run_test_async(config: TestConfig, *, progress: TextIO | None = sys.stderr) -> Result:
    """Run the test described by ``config``; return its result (the store is written too).

    Raises :class:`ConfigError` before starting anything when the test cannot run as configured.
    """
    workload, nemesis = prepare(config)
    seed = config.seed if config.seed is not None else random.SystemRandom().randrange(2**31)
    config.seed = seed
    run_dir = store.new_run_dir(Path(config.store), config.test_name)
    recorder = Recorder()
    reporter = Progress(recorder, progress if config.progress else None, run_dir / store.RUN_LOG)
    run = _Run(config, workload, nemesis, seed, reporter, recorder)
    store.write_json(run_dir / store.TEST, {**config.to_dict(), "workload_spec": workload.describe()})
    data_dir = Path(tempfile.mkdtemp(prefix="chaos-run-"))
    ticker = asyncio.create_task(reporter.loop(PROGRESS_EVERY))
    crashed: str | None = None
    try:
        run.cluster = (config.cluster_factory or _default_cluster)(config, data_dir)
        async with run.cluster:
            run.watch(run_dir, data_dir)
            await _drive(run, run.cluster)
            if config.leave_db_running:
                ticker.cancel()
                await _leave_running(run, run.cluster)
            reporter.phase = "stopping"
    except BaseException as exc:
        crashed = "interrupted" if isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt)) else f"{type(exc).__name__}: {exc}"
        reporter.say(f"run {'interrupted' if crashed == 'interrupted' else 'crashed: ' + crashed}")
        _finish(run, run_dir, data_dir, crashed)
        raise
    finally:
        ticker.cancel()
    reporter.say(f"cluster stopped; checking {len(recorder.ops)} ops")
    results = _finish(run, run_dir, data_dir, None)
    return Result(valid=results.valid, results=results, run_dir=run_dir, history=recorder.ops, config=config)


def _finish(run: _Run, run_dir: Path, data_dir: Path, crashed: str | None) -> RunResults:
    """Store the history and logs, check, write results and the report, move the latest links."""
    with contextlib.suppress(Exception):  # housekeeping must not hide the run's own error
        if run.cluster is not None:
            run.watch(run_dir, data_dir)
            store.copy_node_logs(run.cluster, run_dir)
    header = {"test": run.config.test_name, **run.workload.header(), "nemesis": run.config.nemesis, "seed": run.seed}
    store.write_history(run_dir, run.recorder.ops, header)
    shutil.rmtree(data_dir, ignore_errors=True)
    checks = {**run.run_checks, "faults": faults_check(run.recorder.ops), "logs": logs_check(store.node_logs(run_dir))}
    # A run that did not finish is checked briefly: its history is partial and someone is waiting.
    timeout = run.config.checker_timeout if crashed is None else min(run.config.checker_timeout, 10.0)
    results = check_history(run.workload, run.recorder.ops, test=run.config.test_name, nemesis=run.config.nemesis,
                            seed=run.seed, timeout=timeout, run_checks=checks, crashed=crashed)
    results.extra["availability"] = availability(run.recorder.ops, run.recovery_seconds).to_dict()
    store.write_json(run_dir / store.RESULTS, results.to_dict())
    if crashed is None:
        report.write_report(run_dir, run.recorder.ops, title=f"{run.config.test_name} {run_dir.name}")
        store.update_latest(Path(run.config.store), run_dir)
    run.progress.say(f"verdict: {results.valid}")
    run.progress.close()
    return results


def run_test(config: TestConfig, *, progress: TextIO | None = sys.stderr) -> Result:
    """Run a test to completion in a fresh event loop; SIGTERM is handled like Ctrl-C."""

    async def main() -> Result:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGTERM, task.cancel)  # type: ignore[union-attr]
        return await run_test_async(config, progress=progress)

    return asyncio.run(main())
