"""The embedded API against raw pysyncobj: three worker processes per system, load in the leader.

Each worker runs one node (a raftwork ``Node`` with the test KV machine, or a raw ``SyncObj``
with ``@replicated`` methods) and answers JSON lines on stdin: ``{"cmd": "role"}`` ->
``{"leader": bool}``; ``{"cmd": "run", "op": "propose"|"read"|"stale", "concurrency", "duration",
"warmup", "payload"}`` -> a load result measured inside the leader's process (no client hop).
EOF on stdin stops the worker. Raw pysyncobj's linearizable read is a ``@replicated`` getter
(through the log, the way pysyncobj offers one); its stale read is a plain local lookup.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

from consensus.bench.histogram import LatencyHistogram
from consensus.bench.procs import child_env, die_with_parent, free_ports

SYSTEMS = ("raftwork", "pysyncobj")
OPS = ("propose", "read", "stale")
_ELECTION = (0.4, 1.4)  # the same timers for both systems (raftwork's defaults)


def _result(op: str, concurrency: int, histogram: LatencyHistogram, elapsed: float, errors: int) -> dict[str, Any]:
    return {"workload": op, "concurrency": concurrency, "ops": histogram.count, "seconds": round(elapsed, 4),
            "rate": round(histogram.count / elapsed, 1) if elapsed else 0.0, "latency_ms": histogram.summary_ms(),
            "errors": {"error": errors} if errors else {}, "failed": 0, "unknown": errors}


# -- raftwork worker ----------------------------------------------------------------------------


async def _raftwork_load(node: Any, request: dict[str, Any]) -> dict[str, Any]:
    from consensus import Consistency

    op, concurrency, value = request["op"], request["concurrency"], "x" * request["payload"]
    histogram, errors = LatencyHistogram(), [0]

    async def one(key: str) -> None:
        if op == "propose":
            await node.propose("kv", {"method": "put", "args": [key, value]})
        else:
            consistency = Consistency.LINEARIZABLE if op == "read" else Consistency.STALE
            await node.read("kv", {"method": "get", "args": [key]}, consistency=consistency)

    async def worker(i: int, until: float, record: bool) -> None:
        while time.monotonic() < until:
            started = time.monotonic()
            try:
                await one(f"k{i}")
            except Exception:
                errors[0] += record
                continue
            if record:
                histogram.record(time.monotonic() - started)

    warm_until = time.monotonic() + request["warmup"]
    await asyncio.gather(*(worker(i, warm_until, False) for i in range(concurrency)))
    began = time.monotonic()
    await asyncio.gather(*(worker(i, began + request["duration"], True) for i in range(concurrency)))
    return _result(op, concurrency, histogram, time.monotonic() - began, errors[0])


async def _raftwork_main(args: argparse.Namespace) -> None:
    from consensus import Node, NodeConfig
    from consensus.testing.machines import KV

    config = NodeConfig(args.self_address, args.peers.split(","), args.data_dir, election_timeout=_ELECTION)
    if args.fsync and "fsync" in NodeConfig.__dataclass_fields__:
        config.fsync = args.fsync  # type: ignore[attr-defined]  # the engine-safety work adds it
    node = Node(config, {"kv": KV()})
    await node.start()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    _say({"ready": True})
    try:
        while line := await reader.readline():
            request = json.loads(line)
            if request["cmd"] == "role":
                _say({"leader": node.is_leader()})
            else:
                _say(await _raftwork_load(node, request))
    finally:
        await node.stop()


# -- raw pysyncobj worker -----------------------------------------------------------------------


def _make_syncobj(args: argparse.Namespace) -> Any:
    from pysyncobj import SyncObj, SyncObjConf, replicated

    class Store(SyncObj):  # type: ignore[misc]
        def __init__(self, conf: SyncObjConf) -> None:
            others = [p for p in args.peers.split(",") if p != args.self_address]
            super().__init__(args.self_address, others, conf)
            self.values: dict[str, str] = {}

        @replicated  # type: ignore[misc]
        def put(self, key: str, value: str) -> None:
            self.values[key] = value

        @replicated  # type: ignore[misc]
        def get(self, key: str) -> str | None:
            return self.values.get(key)

        def get_local(self, key: str) -> str | None:
            return self.values.get(key)

    os.makedirs(args.data_dir, exist_ok=True)
    conf = SyncObjConf(journalFile=os.path.join(args.data_dir, "journal"), fullDumpFile=os.path.join(args.data_dir, "dump"),
                       raftMinTimeout=_ELECTION[0], raftMaxTimeout=_ELECTION[1], appendEntriesUseBatch=False,
                       commandsWaitLeader=False, leaderFallbackTimeout=1.5, connectionRetryTime=0.5)
    return Store(conf)


def _pysyncobj_load(obj: Any, request: dict[str, Any]) -> dict[str, Any]:
    op, concurrency, value = request["op"], request["concurrency"], "x" * request["payload"]
    histogram, errors, lock = LatencyHistogram(), [0], threading.Lock()
    phase = {"record": False, "until": time.monotonic() + request["warmup"]}
    idle = threading.Condition(lock)
    running = [0]

    def issue(key: str) -> None:
        started = time.monotonic()

        def done(result: Any, err: Any) -> None:
            with lock:
                if phase["record"]:
                    if err == 0:
                        histogram.record(time.monotonic() - started)
                    else:
                        errors[0] += 1
                if time.monotonic() >= phase["until"]:
                    running[0] -= 1
                    idle.notify_all()
                    return
            issue(key)

        if op == "read":
            obj.get(key, callback=done)
        else:
            obj.put(key, value, callback=done)

    def stale_loop(key: str) -> None:  # local and synchronous: loop on this thread
        while True:
            started = time.monotonic()
            obj.get_local(key)
            with lock:
                if phase["record"]:
                    histogram.record(time.monotonic() - started)
                if time.monotonic() >= phase["until"]:
                    running[0] -= 1
                    idle.notify_all()
                    return

    def run_phase(seconds: float, record: bool) -> float:
        with lock:
            phase.update(record=record, until=time.monotonic() + seconds)
            running[0] = concurrency
        began = time.monotonic()
        target = stale_loop if op == "stale" else issue
        threads = [threading.Thread(target=target, args=(f"k{i}",), daemon=True) for i in range(concurrency)]
        for t in threads:
            t.start()
        with lock:
            idle.wait_for(lambda: running[0] == 0, timeout=seconds + 30)
        return time.monotonic() - began

    if request["warmup"]:
        run_phase(request["warmup"], False)
    elapsed = run_phase(request["duration"], True)
    return _result(op, concurrency, histogram, elapsed, errors[0])


def _pysyncobj_main(args: argparse.Namespace) -> None:
    obj = _make_syncobj(args)
    _say({"ready": True})
    for line in sys.stdin:
        request = json.loads(line)
        if request["cmd"] == "role":
            _say({"leader": bool(obj._isLeader())})
        else:
            _say(_pysyncobj_load(obj, request))
    os._exit(0)  # raw pysyncobj's tick thread is not a daemon: leave at once


def _say(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


# -- the parent's side ----------------------------------------------------------------------------


class EmbeddedCluster:
    """Three worker processes of one system; ``run(op, ...)`` measures in the leader's process."""

    def __init__(self, system: str, n: int = 3, data_dir: str | Path | None = None, fsync: str | None = None) -> None:
        if system not in SYSTEMS:
            raise ValueError(f"unknown embedded system {system!r}")
        self.system = system
        self.addresses = [f"127.0.0.1:{p}" for p in free_ports(n)]
        self.root = Path(data_dir or tempfile.mkdtemp(prefix=f"bench-{system}-"))
        self.fsync = fsync
        self.procs: list[subprocess.Popen[str]] = []

    def __enter__(self) -> "EmbeddedCluster":
        try:
            for i, address in enumerate(self.addresses):
                argv = [sys.executable, "-m", "consensus.bench.embedded", "--system", self.system, "--self-address", address,
                        "--peers", ",".join(self.addresses), "--data-dir", str(self.root / f"n{i + 1}")]
                if self.fsync:
                    argv += ["--fsync", self.fsync]
                self.root.mkdir(parents=True, exist_ok=True)
                log = open(self.root / f"n{i + 1}.log", "ab")
                self.procs.append(subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
                                                   env=child_env(), preexec_fn=die_with_parent))
                log.close()
            for proc in self.procs:
                self._expect(proc, lambda m: m.get("ready"), 60)
        except BaseException:
            self.__exit__()
            raise
        return self

    def _expect(self, proc: subprocess.Popen[str], ok: Callable[[dict[str, Any]], Any], timeout: float) -> dict[str, Any]:
        assert proc.stdout is not None
        result: list[dict[str, Any]] = []
        reader = threading.Thread(target=lambda: result.append(json.loads(proc.stdout.readline() or "{}")), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(timeout)
        if not result or not ok(result[0]):
            raise RuntimeError(f"{self.system} worker {proc.pid} did not answer in {timeout:.0f}s; logs in {self.root}")
        return result[0]

    def _ask(self, proc: subprocess.Popen[str], message: dict[str, Any], timeout: float) -> dict[str, Any]:
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(message) + "\n")
        proc.stdin.flush()
        return self._expect(proc, lambda m: True, timeout)

    def leader(self, timeout: float = 30.0) -> subprocess.Popen[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for proc in self.procs:
                if self._ask(proc, {"cmd": "role"}, 10).get("leader"):
                    return proc
            time.sleep(0.05)
        raise RuntimeError(f"{self.system}: no leader within {timeout:.0f}s")

    def run(self, op: str, concurrency: int, duration: float, warmup: float, payload: int) -> dict[str, Any]:
        if op not in OPS:
            raise ValueError(f"unknown embedded op {op!r}")
        request = {"cmd": "run", "op": op, "concurrency": concurrency, "duration": duration, "warmup": warmup, "payload": payload}
        return self._ask(self.leader(), request, warmup + duration + 60)

    def __exit__(self, *exc: Any) -> None:
        from consensus.bench.procs import stop

        for proc in self.procs:
            if proc.stdin is not None and not proc.stdin.closed:
                try:
                    proc.stdin.close()  # EOF: the worker stops its node
                except OSError:
                    pass
        for proc in self.procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
            stop(proc, grace=5)
        self.procs = []


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m consensus.bench.embedded")
    parser.add_argument("--system", choices=SYSTEMS, required=True)
    parser.add_argument("--self-address", required=True)
    parser.add_argument("--peers", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--fsync", default=None)
    args = parser.parse_args()
    if args.system == "raftwork":
        asyncio.run(_raftwork_main(args))
    else:
        _pysyncobj_main(args)


if __name__ == "__main__":
    main()
