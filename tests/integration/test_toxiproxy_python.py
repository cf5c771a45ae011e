"""toxiproxy-python 0.1.1, unchanged, against the embedded server; then our client on top of it."""

from __future__ import annotations

import socket
import threading
import time
from typing import Iterator

import pytest
import requests
import toxiproxy
from toxiproxy.api import APIConsumer
from toxiproxy.exceptions import InvalidToxic, NotFound, ProxyExists

from chaos.toxiproxy import BackgroundServer
from chaos.toxiproxy.client import ServerError
from chaos.toxiproxy.client import Toxiproxy as Client

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def server() -> Iterator[BackgroundServer]:
    with BackgroundServer("127.0.0.1", 0) as srv:
        yield srv


@pytest.fixture
def tp(server: BackgroundServer) -> Iterator[toxiproxy.Toxiproxy]:
    """toxiproxy-python pointed at the server; its class-level host and port are restored afterwards."""
    saved = APIConsumer.host, APIConsumer.port
    client = toxiproxy.Toxiproxy()
    client.update_api_consumer(server.host, server.port)
    try:
        yield client
    finally:
        APIConsumer.host, APIConsumer.port = saved


class EchoThread:
    """A blocking echo server on 127.0.0.1 for synchronous tests."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        try:
            while data := conn.recv(65536):
                conn.sendall(data)
        except OSError:
            pass

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        for conn in self.conns:
            conn.close()
        self.thread.join(5)


@pytest.fixture
def echo() -> Iterator[EchoThread]:
    server = EchoThread()
    try:
        yield server
    finally:
        server.close()


def roundtrip(listen: str, data: bytes = b"ping", timeout: float = 3.0) -> tuple[bytes, float]:
    host, port = listen.rsplit(":", 1)
    start = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(data)
        received = b""
        while len(received) < len(data):
            chunk = s.recv(65536)
            if not chunk:
                break
            received += chunk
    return received, time.monotonic() - start


def test_toxiproxy_python_full_workflow(tp: toxiproxy.Toxiproxy, echo: EchoThread) -> None:
    assert tp.running()
    assert tp.version() == b'{"version": "2.12.0"}\n'
    proxy = tp.create(upstream=f"127.0.0.1:{echo.port}", name="echo")
    assert proxy.listen.startswith("127.0.0.1:") and not proxy.listen.endswith(":0")
    assert roundtrip(proxy.listen)[0] == b"ping"
    assert set(tp.proxies()) == {"echo"}
    assert tp.get_proxy("echo").upstream == f"127.0.0.1:{echo.port}"
    assert tp.get_proxy("missing") is None

    proxy.add_toxic(type="latency", attributes={"latency": 100})
    toxic = proxy.get_toxic("latency_downstream")
    assert toxic.type == "latency" and toxic.stream == "downstream" and toxic.attributes["latency"] == 100
    assert set(proxy.toxics()) == {"latency_downstream"}
    data, elapsed = roundtrip(proxy.listen)
    assert data == b"ping" and 0.1 <= elapsed < 1.0
    assert proxy.destroy_toxic("latency_downstream")
    assert proxy.toxics() == {}

    proxy.disable()
    assert proxy.enabled is False and tp.get_proxy("echo").enabled is False
    with pytest.raises(ConnectionRefusedError):
        roundtrip(proxy.listen)
    proxy.enable()
    assert roundtrip(proxy.listen)[0] == b"ping"
    with proxy.down():
        assert tp.get_proxy("echo").enabled is False
    assert tp.get_proxy("echo").enabled is True

    proxy.add_toxic(type="timeout", stream="upstream", attributes={"timeout": 0})
    proxy.disable()
    assert tp.reset()
    assert tp.get_proxy("echo").enabled is True and proxy.toxics() == {}

    assert tp.destroy(proxy)
    assert tp.proxies() == {}
    tp.create(upstream="127.0.0.1:1", name="a")
    tp.create(upstream="127.0.0.1:1", name="b")
    tp.destroy_all()
    assert tp.proxies() == {}


def test_toxiproxy_python_error_mapping(tp: toxiproxy.Toxiproxy, server: BackgroundServer) -> None:
    proxy = tp.create(upstream="127.0.0.1:1", name="p")
    with pytest.raises(ProxyExists):
        tp.create(upstream="127.0.0.1:1", name="p")  # its own client-side check
    with pytest.raises(ProxyExists):  # the server's 409
        APIConsumer.post("/proxies", json={"name": "p", "upstream": "x:1", "listen": "127.0.0.1:0"})
    proxy.add_toxic(type="noop", name="n")
    with pytest.raises(ProxyExists):
        proxy.add_toxic(type="noop", name="n")
    with pytest.raises(InvalidToxic):
        proxy.add_toxic(type="nonsense")
    with pytest.raises(InvalidToxic):
        proxy.add_toxic(type="latency", stream="sideways")
    with pytest.raises(NotFound):
        proxy.destroy_toxic("missing")
    proxy.destroy()
    with pytest.raises(NotFound):
        proxy.toxics()
    with pytest.raises(NotFound):
        proxy.disable()


def test_toxiproxy_python_populate(tp: toxiproxy.Toxiproxy) -> None:
    made = tp.populate([{"name": "one", "upstream": "127.0.0.1:1", "listen": "127.0.0.1:0"},
                        {"name": "two", "upstream": "127.0.0.1:2", "listen": "127.0.0.1:0"}])
    assert [p.name for p in made] == ["one", "two"]
    assert set(tp.proxies()) == {"one", "two"}


# Our client

def test_client_adds_update_and_returns_toxics(server: BackgroundServer, echo: EchoThread) -> None:
    with Client(server.url, timeout=3) as client:
        proxy = client.create(upstream=f"127.0.0.1:{echo.port}", name="e")
        toxic = proxy.add_toxic(type="latency", attributes={"latency": 50})
        assert toxic.name == "latency_downstream" and toxic.attributes == {"latency": 50, "jitter": 0}
        updated = proxy.update_toxic("latency_downstream", attributes={"latency": 200}, toxicity=1)
        assert updated.attributes == {"latency": 200, "jitter": 0}
        data, elapsed = roundtrip(proxy.listen)
        assert data == b"ping" and 0.2 <= elapsed < 1.5
        assert proxy.get_toxic("missing") is None
        moved = proxy.update(upstream="127.0.0.1:1")
        fetched = client.get_proxy("e")
        assert moved.upstream == "127.0.0.1:1" and fetched is not None and fetched.upstream == "127.0.0.1:1"
        with pytest.raises(NotFound):
            proxy.update_toxic("missing", toxicity=0.5)


def test_client_raises_for_5xx_and_maps_409_from_server(server: BackgroundServer) -> None:
    with Client(server.url) as client, socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(ServerError) as err:
            client.create(upstream="127.0.0.1:1", name="p", listen="127.0.0.1:%d" % busy.getsockname()[1])
        assert err.value.status == 500 and b"address already in use" in err.value.body
        client.create(upstream="127.0.0.1:1", name="p")
        with pytest.raises(ProxyExists):
            client.create(upstream="127.0.0.1:1", name="p")
        with pytest.raises(InvalidToxic):
            client.populate([{"name": "q"}])
        assert client.destroy("p") is True  # by name, which toxiproxy-python ignores


def test_client_times_out_on_a_silent_server() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # accepts (kernel backlog) but never answers
        with Client("http://127.0.0.1:%d" % silent.getsockname()[1], timeout=0.3) as client:
            start = time.monotonic()
            with pytest.raises(requests.Timeout):
                client.proxies()
            assert time.monotonic() - start < 3


def test_clients_drive_two_servers_at_once() -> None:
    with BackgroundServer() as first, BackgroundServer() as second, first.client() as a, second.client() as b:
        a.create(upstream="127.0.0.1:1", name="only-on-first")
        b.populate([{"name": "only-on-second", "upstream": "127.0.0.1:2", "listen": "127.0.0.1:0"}])
        assert set(a.proxies()) == {"only-on-first"}
        assert set(b.proxies()) == {"only-on-second"}
        a.get_proxy("only-on-first").add_toxic(type="noop")
        b.get_proxy("only-on-second").add_toxic(type="noop")
        a.reset()  # resets only the first server
        assert a.get_proxy("only-on-first").toxics() == {}
        assert set(b.get_proxy("only-on-second").toxics()) == {"noop_downstream"}
