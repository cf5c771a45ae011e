"""Child processes of the bench: spawn with the right environment, wait for a port, stop by PID.

Every child gets ``PR_SET_PDEATHSIG`` (it dies if the bench dies) and is stopped by its own
PID here, never by name.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from typing import IO, Any

from consensus.testing.procs import child_env, die_with_parent, port_in_use
from consensus.testing import free_ports

__all__ = ["child_env", "die_with_parent", "free_ports", "port_in_use", "spawn", "stop", "wait_http", "NullServer"]


def spawn(argv: list[str], log: IO[bytes] | int = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
    """Start ``argv`` as a child that dies with us, output to ``log``."""
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            env=child_env(), preexec_fn=die_with_parent)


def stop(proc: subprocess.Popen[Any], grace: float = 10.0) -> None:
    """SIGTERM ``proc`` (SIGCONT first, in case it is paused), then SIGKILL after ``grace``."""
    if proc.poll() is None:
        for signum in (signal.SIGCONT, signal.SIGTERM):
            try:
                os.kill(proc.pid, signum)
            except ProcessLookupError:
                break
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def wait_http(url: str, proc: subprocess.Popen[Any] | None, timeout: float = 30.0, method: str = "GET") -> None:
    """Poll ``url`` until it answers (any status); raise if ``proc`` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{url}: the process exited with code {proc.returncode}")
        try:
            request = urllib.request.Request(url, method=method, data=b"{}" if method == "POST" else None)
            with urllib.request.urlopen(request, timeout=1):  # noqa: S310 (loopback only)
                return
        except urllib.error.HTTPError:
            return  # it answered
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer within {timeout:.0f}s")
        time.sleep(0.05)


class NullServer:
    """A do-nothing HTTP server in its own process: what the load client reaches at best."""

    def __init__(self) -> None:
        self.port = free_ports(1)[0]
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> "NullServer":
        self.proc = spawn([sys.executable, "-m", "consensus.bench.nullserver", "--port", str(self.port)])
        try:
            wait_http(self.url + "/null", self.proc, method="POST")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None
