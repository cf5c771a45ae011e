"""``chaos toxiproxy-cli``: toxiproxy-cli's words against a real (embedded) Toxiproxy server, and a
proxy that really carries (or refuses) TCP traffic after each command."""

from __future__ import annotations

import contextlib
import io
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from chaos.cli import main
from chaos.toxiproxy import BackgroundServer
from chaos.toxiproxy.client import Toxiproxy

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parents[2]


def cli(url: str, *words: str) -> subprocess.CompletedProcess[str]:
    """Run ``chaos toxiproxy-cli --host URL WORDS`` in this process (the CLI's own entry point)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(["toxiproxy-cli", "--host", url, *words])
        except SystemExit as exc:  # argparse's usage errors
            code = int(exc.code or 0)
    return subprocess.CompletedProcess(words, code, out.getvalue(), err.getvalue())


def test_the_command_line_runs_as_a_program():
    with BackgroundServer() as server:
        result = subprocess.run([sys.executable, "-m", "chaos", "toxiproxy-cli", "--host", server.url, "list"],
                                capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0 and result.stdout.startswith("Name  Listen"), result.stderr


@pytest.fixture
def echo():
    """A TCP echo server on a free port; yields its address."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                data = conn.recv(1024)
                conn.sendall(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join(5)
    server.close()


def talk(address: str) -> bytes:
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=3) as conn:
        conn.sendall(b"ping")
        return conn.recv(1024)


def test_every_word_of_toxiproxy_cli(echo):
    with BackgroundServer() as server, Toxiproxy(server.url) as api:
        url = server.url
        assert cli(url, "list").stdout.startswith("Name  Listen  Upstream  Enabled  Toxics")
        created = cli(url, "create", "-l", "127.0.0.1:0", "-u", echo, "echo")
        assert created.returncode == 0 and "Created new proxy echo listening on 127.0.0.1:" in created.stdout
        listen = api.get_proxy("echo").listen
        assert talk(listen) == b"ping"
        assert cli(url, "toxic", "add", "-t", "latency", "-a", "latency=100", "-a", "jitter=20", "echo").returncode == 0
        assert cli(url, "toxic", "add", "-t", "timeout", "--upstream", "-a", "timeout=0", "-n", "cut", "echo").returncode == 0
        toxics = api.get_proxy("echo").toxics()
        assert toxics["latency_downstream"].attributes == {"latency": 100, "jitter": 20}
        assert toxics["cut"].stream == "upstream" and toxics["cut"].type == "timeout"
        inspect = cli(url, "inspect", "echo").stdout
        assert "latency_downstream: type=latency stream=downstream" in inspect and "cut: type=timeout" in inspect
        assert cli(url, "toxic", "update", "-n", "latency_downstream", "-a", "latency=300", "echo").returncode == 0
        assert api.get_proxy("echo").get_toxic("latency_downstream").attributes["latency"] == 300
        assert cli(url, "toxic", "remove", "-n", "cut", "echo").returncode == 0
        assert cli(url, "toxic", "remove", "-n", "latency_downstream", "echo").returncode == 0
        assert api.get_proxy("echo").toxics() == {} and talk(listen) == b"ping"
        assert "now disabled" in cli(url, "toggle", "echo").stdout
        with pytest.raises(ConnectionRefusedError):
            talk(listen)
        assert "disabled" in cli(url, "list").stdout
        assert "now enabled" in cli(url, "toggle", "echo").stdout and talk(listen) == b"ping"
        assert cli(url, "delete", "echo").returncode == 0 and api.proxies() == {}


def test_errors_are_one_line(echo):
    with BackgroundServer() as server:
        for words, text in ((("inspect", "nope"), "proxy 'nope' not found"),
                            (("toxic", "add", "-t", "latency", "-a", "latency", "nope"), "not found"),
                            (("create", "-l", "127.0.0.1:0", "-u", echo, "twice"), None)):
            result = cli(server.url, *words)
            if text is None:
                result = cli(server.url, *words)  # the second create of one name is refused
                text = "ProxyExists"
            assert result.returncode == 1 and text in result.stderr and result.stderr.count("\n") == 1, result.stderr
        bad = cli(server.url, "toxic", "add", "nope")  # no --type: a usage error
        assert bad.returncode == 2 and "--type" in bad.stderr
    gone = cli("http://127.0.0.1:1", "list")
    assert gone.returncode == 1 and "cannot reach toxiproxy at http://127.0.0.1:1" in gone.stderr
