"""``chaos toxiproxy`` runs in the foreground, reports its bound port and stops cleanly on signals."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]  # so ``python -m chaos`` imports this checkout


def start(*args: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "chaos", "toxiproxy", "--host", "127.0.0.1", "--port", "0", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # blocks until the server prints its URL (or exits)
    if "listening on" not in line:
        proc.kill()
        raise AssertionError(f"no URL printed: {line!r} {proc.communicate(timeout=10)}")
    return proc, line.strip().rsplit(" ", 1)[1]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_cli_serves_and_stops_on_signal(signum: int, tmp_path: Path) -> None:
    config = tmp_path / "proxies.json"
    config.write_text(json.dumps([{"name": "cfg", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:1",
                                   "toxics": [{"type": "latency"}]}]))
    proc, url = start("--config", str(config), "--proxy-metrics")
    try:
        assert requests.get(url + "/version", timeout=5).content == b'{"version": "2.12.0"}\n'
        proxies = requests.get(url + "/proxies", timeout=5).json()
        assert list(proxies) == ["cfg"] and proxies["cfg"]["toxics"] == []  # config toxics are ignored
        assert requests.get(url + "/metrics", timeout=5).status_code == 200
        proc.send_signal(signum)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]


def test_cli_reports_a_busy_port() -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "chaos", "toxiproxy", "--host", "127.0.0.1", "--port",
                                 str(port)], capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert result.returncode == 255
    assert "address already in use" in result.stderr
