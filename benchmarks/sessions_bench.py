"""Memory, snapshot size and engine-thread stall of the replicated session table.

    python benchmarks/sessions_bench.py [--clients 10000] [--keys 100000]

Drives a real ``Dispatcher`` through the log: registers N client sessions, each with one
unacknowledged outcome (a counter result), then fills the plain idempotency-key table. Prints
the heap the tables take (tracemalloc), the snapshot's size, how long the engine thread is held
taking the copy-on-write capture (the stall), and how long the encoding takes on the snapshot
thread. Medians of 5.
"""

from __future__ import annotations

import argparse
import statistics
import time
import tracemalloc

from consensus import codec
from consensus.dispatch import SYSTEM, Dispatcher, encode_entry
from apps.counter.machine import CounterMachine


def op(machine, cmd, key=None, session=None):
    return [machine, codec.pack(cmd), key] + ([list(session)] if session else [])


def build(clients: int, keys: int) -> Dispatcher:
    d = Dispatcher({"counter": CounterMachine()})
    index, t = 1, 1_700_000_000 * 10**9
    ids = []
    for _ in range(clients):
        index += 1
        [outcome] = d.apply(encode_entry(t, [op(SYSTEM, {"op": "register_client"})]), index, 1)
        ids.append(outcome.value)
    for cid in ids:
        index += 1
        d.apply(encode_entry(t, [op("counter", {"op": "incr", "key": "c", "by": 1}, session=(cid, 1, 1))]), index, 1)
    for start in range(0, keys, 500):
        index += 1
        d.apply(encode_entry(t, [op("counter", {"op": "incr", "key": "k", "by": 1}, f"key-{start + j}")
                                 for j in range(500)]), index, 1)
    return d


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=10_000)
    parser.add_argument("--keys", type=int, default=100_000)
    args = parser.parse_args()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    d = build(args.clients, 0)
    sessions_heap = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    for label, dispatcher in (("sessions only", d), ("sessions + full key table", build(args.clients, args.keys))):
        captures, encodes, sizes = [], [], []
        for _ in range(5):
            started = time.perf_counter()
            encode = dispatcher.capture()
            captures.append(time.perf_counter() - started)
            started = time.perf_counter()
            sizes.append(len(encode()))
            encodes.append(time.perf_counter() - started)
        print(f"{label}: snapshot {statistics.median(sizes) / 1e6:.2f} MB, engine-thread capture "
              f"{statistics.median(captures) * 1e3:.1f} ms, encode off-thread {statistics.median(encodes) * 1e3:.0f} ms")
    print(f"heap of {args.clients} sessions with one kept outcome each: {sessions_heap / 1e6:.2f} MB "
          f"({sessions_heap / args.clients:.0f} bytes per session)")


if __name__ == "__main__":
    main()
