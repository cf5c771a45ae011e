"""Measure the embedded Toxiproxy against a direct connection in the same run.

    python benchmarks/toxiproxy_bench.py [--mib 512] [--repeat 5] [--pings 20000] [--seconds 3] [--json out.json]

Three processes, all on 127.0.0.1: this one (the client), a blocking echo/sink server, and
``python -m chaos toxiproxy`` (the proxy, no toxics). Each figure is measured direct and through
the proxy, and reported with its ratio:

- bulk throughput: one connection sends ``--mib`` MiB in 256 KiB writes; the sink acks the last byte;
- round trip of a 64-byte ping-pong: p50 and p99 over ``--pings`` round trips, and the added time;
- new connections per second: connect, 1-byte echo, close, for ``--seconds`` seconds.

Direct and proxied runs alternate over ``--repeat`` rounds (medians of the rounds; percentiles
over all round trips), so that load from other processes weighs on both alike.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


# The server process: an echo port and a sink port, one thread per connection.

def _echo(conn: socket.socket) -> None:
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with conn:
        while data := conn.recv(65536):
            conn.sendall(data)


def _sink(conn: socket.socket) -> None:
    """Read an 8-byte length, then that many bytes, then answer one byte."""
    with conn:
        header = b""
        while len(header) < 8:
            header += conn.recv(8 - len(header))
        remaining = struct.unpack("!Q", header)[0]
        buffer = bytearray(1 << 20)
        while remaining > 0:
            n = conn.recv_into(buffer)
            if n == 0:
                return
            remaining -= n
        conn.sendall(b"k")


def serve() -> None:
    listeners = []
    for handler in (_echo, _sink):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(1024)
        listeners.append((sock, handler))

    def accept_loop(sock: socket.socket, handler: Callable[[socket.socket], None]) -> None:
        while True:
            conn, _ = sock.accept()
            threading.Thread(target=handler, args=(conn,), daemon=True).start()

    for sock, handler in listeners:
        threading.Thread(target=accept_loop, args=(sock, handler), daemon=True).start()
    print(" ".join(str(s.getsockname()[1]) for s, _ in listeners), flush=True)
    sys.stdin.read()  # exit when the parent closes our stdin


# Measurements

def throughput(port: int, mib: int) -> float:
    """Return MB/s (10^6 bytes) for sending ``mib`` MiB over one connection."""
    total = mib * 1024 * 1024
    block = b"\0" * (256 * 1024)
    with socket.create_connection(("127.0.0.1", port)) as s:
        start = time.perf_counter()
        s.sendall(struct.pack("!Q", total))
        sent = 0
        while sent < total:
            s.sendall(block)
            sent += len(block)
        assert s.recv(1) == b"k"
        return total / (time.perf_counter() - start) / 1e6


def ping_pong(port: int, count: int) -> list[float]:
    """Return round-trip times in microseconds for 64-byte messages."""
    message = b"x" * 64
    times = []
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(count + 200):
            start = time.perf_counter()
            s.sendall(message)
            got = 0
            while got < 64:
                got += len(s.recv(64 - got))
            if i >= 200:  # warm-up
                times.append((time.perf_counter() - start) * 1e6)
    return times


def connection_rate(port: int, seconds: float) -> float:
    """Return connections per second (connect, 1-byte echo, close)."""
    done = 0
    deadline = time.perf_counter() + seconds
    start = time.perf_counter()
    while time.perf_counter() < deadline:
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(b"!")
            assert s.recv(1) == b"!"
        done += 1
    return done / (time.perf_counter() - start)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=5, help="alternating rounds per path (medians reported)")
    parser.add_argument("--pings", type=int, default=20000)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    from chaos.toxiproxy.client import Toxiproxy

    backend = subprocess.Popen([sys.executable, __file__, "serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               text=True)
    proxy_proc = subprocess.Popen([sys.executable, "-m", "chaos", "toxiproxy", "--host", "127.0.0.1", "--port", "0"],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
    try:
        echo_port, sink_port = map(int, backend.stdout.readline().split())  # type: ignore[union-attr]
        url = proxy_proc.stdout.readline().strip().rsplit(" ", 1)[1]  # type: ignore[union-attr]
        with Toxiproxy(url) as client:
            ports = {}
            for name, port in (("echo", echo_port), ("sink", sink_port)):
                listen = client.create(upstream=f"127.0.0.1:{port}", name=name).listen
                ports[name] = int(listen.rsplit(":", 1)[1])
        # Alternate direct and proxied runs so that load from elsewhere affects both alike.
        paths = {"direct": (echo_port, sink_port), "proxy": (ports["echo"], ports["sink"])}
        samples: dict[str, dict[str, list[float]]] = {p: {"rate": [], "rtt": [], "conn": []} for p in paths}
        for _ in range(args.repeat):
            for path, (echo, sink) in paths.items():
                samples[path]["rate"].append(throughput(sink, args.mib))
                samples[path]["rtt"].extend(ping_pong(echo, args.pings // args.repeat))
                samples[path]["conn"].append(connection_rate(echo, args.seconds / args.repeat))
        results: dict[str, Any] = {}
        for path, sample in samples.items():
            results[path] = {
                "throughput_MBps": statistics.median(sample["rate"]),
                "rtt_p50_us": percentile(sample["rtt"], 0.50),
                "rtt_p99_us": percentile(sample["rtt"], 0.99),
                "connections_per_s": statistics.median(sample["conn"]),
            }
        direct, proxied = results["direct"], results["proxy"]
        results["ratio"] = {key: proxied[key] / direct[key] for key in direct}
        results["added_us"] = {"p50": proxied["rtt_p50_us"] - direct["rtt_p50_us"],
                               "p99": proxied["rtt_p99_us"] - direct["rtt_p99_us"]}
    finally:
        proxy_proc.terminate()
        proxy_proc.wait(10)
        backend.stdin.close()  # type: ignore[union-attr]
        backend.wait(10)

    print(f"{'measure':<24}{'direct':>12}{'proxy':>12}{'ratio':>9}")
    for key, unit in (("throughput_MBps", "MB/s"), ("rtt_p50_us", "us"), ("rtt_p99_us", "us"),
                      ("connections_per_s", "/s")):
        print(f"{key + ' (' + unit + ')':<24}{direct[key]:>12.1f}{proxied[key]:>12.1f}{results['ratio'][key]:>9.2f}")
    print(f"added round trip: p50 +{results['added_us']['p50']:.1f} us, p99 +{results['added_us']['p99']:.1f} us")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        serve()
    else:
        sys.exit(main())
