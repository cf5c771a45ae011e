"""The load client: N concurrent workers on one keep-alive connection pool, in its own process.

``python -m consensus.bench.load SPEC`` takes one ``LoadSpec`` as JSON and prints one result
as JSON on stdout, so the client never shares an event loop (or a GIL) with a node. The parent
uses ``LoadProcess``: ``start(spec)``, then ``result()``; it can kill a node meanwhile (failover).
``run(spec)`` sends the spec to one long-lived client process instead (``--serve``: one spec a
line of stdin, one result a line of stdout), so back-to-back loads do not each pay a start-up.

Each worker runs its workload's operation in a loop: first for ``warmup`` seconds (not counted),
then for ``duration`` seconds or until ``ops`` operations are done, whichever comes first.
Latencies go into a histogram; failures are counted by kind, definite and unknown apart. With
``rotate`` a worker moves to the next target after a connection error, a timeout or a 503/504,
as a client would during a failover; with ``timeline`` every success's (start, end) on the
system-wide monotonic clock is returned, so the parent can time a failover it caused.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import select
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from consensus.bench.histogram import LatencyHistogram
from consensus.bench.http1 import Http1Client
from consensus.bench.workloads import WORKLOADS, OpContext, OpError

_ERROR_BACKOFF_SECONDS = 0.005  # after a failure, so a refused port is not a busy loop
_ROTATE_KINDS = ("connect", "timeout", "disconnected", "503", "504")
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class LoadSpec:
    workload: str
    targets: list[str]  # base URLs; worker i starts on targets[i % len(targets)]
    concurrency: int = 8
    duration: float = 2.0
    ops: int | None = None  # stop after this many operations (None: run for ``duration``)
    warmup: float = 0.3
    payload: int = 16
    locks: int = 1
    timeout: float = 5.0  # per request
    rotate: bool = False
    spread: bool = True  # workers start on every target in turn (False: all on the first)
    timeline: bool = False
    stop_on_line: bool = False  # a line on stdin gives a monotonic time T: the first success issued at or after T ends the load
    key_prefix: str = "bench"
    watch_pids: list[int] = field(default_factory=list)  # processes whose CPU time the measured phase used

    def check(self) -> None:
        if self.workload not in WORKLOADS:
            raise ValueError(f"unknown workload {self.workload!r}")
        if not self.targets or self.concurrency < 1 or self.duration <= 0 or self.warmup < 0:
            raise ValueError("a load needs targets, concurrency >= 1, a positive duration and warm-up >= 0")


@dataclass
class _Tally:
    histogram: LatencyHistogram = field(default_factory=LatencyHistogram)
    errors: Counter[str] = field(default_factory=Counter)
    failed: int = 0
    unknown: int = 0
    timeline: list[tuple[float, float]] = field(default_factory=list)
    stop_since: float | None = None  # the first success issued at or after this ends the load
    stopped: bool = False


async def _worker(spec: LoadSpec, http: Http1Client, i: int, state: dict[str, Any], until: float,
                  tally: _Tally | None, budget: list[int]) -> None:
    op = WORKLOADS[spec.workload].op
    target = i % len(spec.targets) if spec.spread else 0
    seq = 0
    while time.monotonic() < until and budget[0] != 0 and not (tally is not None and tally.stopped):
        budget[0] -= 1
        seq += 1
        started = time.monotonic()
        try:
            await op(http, spec.targets[target], state, seq)
        except OpError as exc:
            if tally is not None:
                tally.errors[exc.kind] += 1
                if exc.definite:
                    tally.failed += 1
                else:
                    tally.unknown += 1
            if spec.rotate and exc.kind.startswith(_ROTATE_KINDS):
                target = (target + 1) % len(spec.targets)
            await asyncio.sleep(_ERROR_BACKOFF_SECONDS)
            continue
        if tally is not None:
            ended = time.monotonic()
            tally.histogram.record(ended - started)
            if spec.timeline:
                tally.timeline.append((round(started, 6), round(ended, 6)))
            if tally.stop_since is not None and started >= tally.stop_since:
                tally.stopped = True


async def run_load(spec: LoadSpec) -> dict[str, Any]:
    """Run one load as ``spec`` says; return the counts, rate, latency quantiles and errors."""
    spec.check()
    ctx = OpContext(payload=spec.payload, locks=max(1, spec.locks), key_prefix=spec.key_prefix)
    async with Http1Client(timeout=spec.timeout) as http:
        setup = WORKLOADS[spec.workload].setup
        states = await asyncio.gather(*(setup(http, spec.targets[i % len(spec.targets)], i, ctx) for i in range(spec.concurrency)))
        if spec.warmup:
            until = time.monotonic() + spec.warmup
            await asyncio.gather(*(_worker(spec, http, i, s, until, None, [-1]) for i, s in enumerate(states)))
        tally = _Tally()
        if spec.stop_on_line:
            _read_stop_line(asyncio.get_running_loop(), tally)
        budget = [spec.ops if spec.ops is not None else -1]
        cpu_before = {pid: cpu_seconds(pid) for pid in spec.watch_pids}
        began = time.monotonic()
        until = began + spec.duration
        await asyncio.gather(*(_worker(spec, http, i, s, until, tally, budget) for i, s in enumerate(states)))
        elapsed = time.monotonic() - began
        cpu = {str(pid): round(cpu_seconds(pid) - before, 4) for pid, before in cpu_before.items()}
    return {
        "workload": spec.workload,
        "concurrency": spec.concurrency,
        "ops": tally.histogram.count,
        "seconds": round(elapsed, 4),
        "rate": round(tally.histogram.count / elapsed, 1) if elapsed > 0 else 0.0,
        "latency_ms": tally.histogram.summary_ms(),
        "errors": dict(tally.errors),
        "failed": tally.failed,
        "unknown": tally.unknown,
        "began": began,
        "cpu_s": cpu,
        "timeline": tally.timeline if spec.timeline else None,
    }


def _read_stop_line(loop: asyncio.AbstractEventLoop, tally: _Tally) -> None:
    """Read one line from stdin on a thread of its own; it sets ``tally.stop_since`` on the loop."""

    def read() -> None:
        line = sys.stdin.readline()
        if line.strip():
            loop.call_soon_threadsafe(setattr, tally, "stop_since", float(line))

    threading.Thread(target=read, name="stop-line", daemon=True).start()


def cpu_seconds(pid: int) -> float:
    """Return the CPU time (user + system, all threads) process ``pid`` has used; 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime and stime, fields 14 and 15 of stat


class LoadProcess:
    """One load client process: ``start(spec)`` returns at once, ``result()`` waits for its answer."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.env = env
        self.proc: subprocess.Popen[str] | None = None

    def start(self, spec: LoadSpec) -> None:
        from consensus.bench.procs import child_env, die_with_parent

        spec.check()
        self.proc = subprocess.Popen([sys.executable, "-m", "consensus.bench.load", json.dumps(asdict(spec))],
                                     stdin=subprocess.PIPE if spec.stop_on_line else subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=self.env or child_env(), preexec_fn=die_with_parent)
        self._spec = spec

    def result(self) -> dict[str, Any]:
        proc = self.proc
        assert proc is not None and proc.stdout is not None and proc.stderr is not None
        budget = self._spec.warmup + self._spec.duration + self._spec.timeout * 3 + 30
        try:
            out, err = proc.communicate(timeout=budget)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError(f"the load client ({self._spec.workload}) gave no result within {budget:.0f}s") from None
        if proc.returncode != 0 or not out.strip():
            last = (err.strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"the load client ({self._spec.workload}) failed: {last}")
        return json.loads(out)  # type: ignore[no-any-return]

    def stop_at_first_success_since(self, since: float) -> None:
        """End the load (``stop_on_line``) at its first success issued at or after monotonic time ``since``."""
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(f"{since!r}\n")
        self.proc.stdin.flush()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # by PID (Popen.kill signals self.proc.pid)
            self.proc.wait()


class LoadWorker:
    """A load client process kept for many loads: ``run(spec)`` sends it one spec, waits for its result.

    Starting a Python process and importing the bench costs about a second on a loaded 2-core
    machine; a bench runs hundreds of short loads, so they share one process (each load still
    gets a fresh event loop and connection pool). It never shares a GIL with a node.
    """

    def __init__(self) -> None:
        self.proc: subprocess.Popen[str] | None = None

    def run(self, spec: LoadSpec) -> dict[str, Any]:
        from consensus.bench.procs import child_env, die_with_parent

        spec.check()
        if self.proc is None or self.proc.poll() is not None:
            self.proc = subprocess.Popen([sys.executable, "-m", "consensus.bench.load", "--serve"], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=child_env(),
                                         preexec_fn=die_with_parent)  # errors come back as answers
        proc = self.proc
        assert proc.stdin is not None and proc.stdout is not None
        budget = spec.warmup + spec.duration + spec.timeout * 3 + 30
        proc.stdin.write(json.dumps(asdict(spec)) + "\n")
        proc.stdin.flush()
        ready, _, _ = select.select([proc.stdout], [], [], budget)  # one line per spec: nothing stays buffered
        line = proc.stdout.readline() if ready else ""
        if not line:
            why = f"exited with code {proc.poll()}" if proc.poll() is not None else f"gave no result within {budget:.0f}s"
            self.close()
            raise RuntimeError(f"the load client ({spec.workload}) {why}")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"the load client ({spec.workload}) failed: {answer['error']}")
        return answer  # type: ignore[no-any-return]

    def close(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()  # by PID (Popen.kill signals self.proc.pid)
            self.proc.wait()
            for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
                if stream is not None:
                    stream.close()
            self.proc = None


_shared = LoadWorker()
atexit.register(_shared.close)


def run(spec: LoadSpec) -> dict[str, Any]:
    """Run ``spec`` in the shared load client process (started on first use) and return its result."""
    return _shared.run(spec)


def close() -> None:
    """Stop the shared load client process (the next ``run`` starts a new one)."""
    _shared.close()


def _run(coroutine: Any) -> Any:
    """Run on uvloop's event loop when it is installed: the client's CPU per request is the bench's floor."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def _serve() -> int:
    """Run one spec per line of stdin; answer each with one line of JSON (the result or an error)."""
    for line in sys.stdin:
        try:
            answer = _run(run_load(LoadSpec(**json.loads(line))))
        except Exception as exc:  # noqa: BLE001 (any failure is this load's answer; the next spec runs)
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(answer), flush=True)
    return 0


def main() -> int:
    if sys.argv[1:] == ["--serve"]:
        return _serve()
    spec = LoadSpec(**json.loads(sys.argv[1]))
    try:
        result = _run(run_load(spec))
    except (ValueError, OpError) as exc:
        print(f"load: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
