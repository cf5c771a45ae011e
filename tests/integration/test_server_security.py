"""A closed door: HTTP beyond loopback needs a token (or an explicit --insecure-http), membership
is never anonymous there, and a member must be an address a peer can listen on, loopback unless
the node has a peer secret.

Nothing here sends a packet beyond 127.0.0.1: the start-up refusals happen before anything
listens, the "non-loopback server" runs in-process on 127.0.0.1 with ``public=True``, and the
node that validates members would dial any address it is offered (if a bug let one through) at
a closed loopback port, through ``--dial-route``.
"""

from __future__ import annotations

import pytest
import requests

from consensus.cli import UsageError, build_parser
from consensus.server.members import check_member_address, check_new_member
from consensus.server.serve import settings_from_args
from consensus.testing import free_ports
from tests.integration.served import ServedCluster, request
from tests.integration.server_procs import ServeProcess, free_port_range, run_cli

pytestmark = pytest.mark.timeout(180)
FOREIGN = "192.0.2.1:7001"  # TEST-NET-1 (RFC 5737): never dialed, see the module docstring


def serve_args(*extra: str) -> list[str]:
    base = free_port_range(2)
    return ["serve", "--id", f"127.0.0.1:{base}", "--peers", f"127.0.0.1:{base}", "--data-dir", "/nonexistent/x", *extra]


@pytest.mark.parametrize("flags, says", [
    (("--http", "0.0.0.0:{port}"), "--token-file"),
    (("--http", "[::]:{port}"), "--token-file"),
    (("--http", "127.0.0.1:{port}", "--peers", FOREIGN), "--secret-file"),
])
def test_serve_refuses_to_start_open_to_the_network(flags, says):
    port = free_ports(1)[0]
    args = serve_args(*(f.format(port=port) for f in flags))
    if "--peers" in flags:  # the later --peers wins: keep this node in its own list
        args[args.index("--peers", 5) + 1] = f"{args[2]},{FOREIGN}"
    out = run_cli(*args, timeout=30)
    assert out.returncode == 2, out
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0] and "Traceback" not in out.stderr, out.stderr


def test_insecure_http_and_a_token_are_the_two_ways_to_serve_beyond_loopback(tmp_path):
    (tmp_path / "token").write_text("t0k\n")
    parser = build_parser()
    base = serve_args("--http", "0.0.0.0:8080")
    with pytest.raises(UsageError, match="--token-file"):
        settings_from_args(parser.parse_args(base))
    assert settings_from_args(parser.parse_args([*base, "--insecure-http"])).token is None
    assert settings_from_args(parser.parse_args([*base, "--token-file", str(tmp_path / "token")])).token == "t0k"


async def test_membership_is_never_anonymous_on_a_server_beyond_loopback(tmp_path):
    async with ServedCluster(2, tmp_path, public=True) as served:
        leader = await served.leader_index()
        for node in (leader, 1 - leader):  # a follower refuses before it forwards anything
            status, answer, _ = await request("POST", served.urls[node] + "/v1/members", json={"id": "127.0.0.1:1"})
            assert status == 401 and "--token-file" in answer["error"]["message"], answer
            status, answer, _ = await request("DELETE", served.urls[node] + f"/v1/members/{served.cluster.addresses[0]}")
            assert status == 401, answer
        status, answer, _ = await request("POST", served.urls[leader] + "/v1/counters/a/incr", json={"by": 1})
        assert status == 200, answer  # --insecure-http: other writes stay open
        assert {p.id for p in served.cluster.running()[0].status().peers} == set(served.cluster.addresses) - {
            served.cluster.running()[0].id}


async def test_with_a_token_a_server_beyond_loopback_lets_membership_through_to_validation(tmp_path):
    async with ServedCluster(1, tmp_path, public=True, token="t0k") as served:
        await served.leader_index()
        auth = {"Authorization": "Bearer t0k"}
        status, answer, _ = await request("POST", served.urls[0] + "/v1/members", json={"id": "0:1"}, headers=auth)
        assert status == 400 and "IPv4" in answer["error"]["message"], answer  # past the door, stopped by validation
        status, _, _ = await request("POST", served.urls[0] + "/v1/members", json={"id": "127.0.0.1:1"})
        assert status == 401


BAD_MEMBERS = [  # (address, a word of the refusal); each is a 400: nothing submitted
    ("0:1", "IPv4"),  # "0" is 0.0.0.0 to the resolver: the fuzzer's member that applied
    ("127.1:7001", "IPv4"),
    ("0x7f.1:7001", "IPv4"),
    ("01.2.3.4:7001", "IPv4"),
    ("0.0.0.0:7001", "wildcard"),
    ("0.1.2.3:7001", "this network"),
    ("224.0.0.1:7001", "multicast"),
    ("255.255.255.255:7001", "broadcast"),
    ("[::1]:7001", "IPv6"),
    ("[::]:7001", "IPv6"),
    ("a..b:7001", "host"),
    ("-a:7001", "host"),
]
UNSECURED = [FOREIGN, "raft.example.com:7001", "10.0.0.1:7001"]  # well-formed, refused without a secret (409)


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("members")
    closed = free_ports(1)[0]
    # Should a bug let one through, the node dials a closed loopback port instead, and resolves no name.
    routes = [f"--dial-route={address}=127.0.0.1:{closed}" for address in [a for a, _ in BAD_MEMBERS] + UNSECURED]
    server = ServeProcess(tmp, *routes)
    try:
        yield server.start()
    finally:
        assert server.stop() == 0, server.log.read_text()[-2000:]


def assert_nothing_added(node):
    status = requests.get(node.url + "/v1/status", timeout=5).json()
    assert status["peers"] == [] and status["role"] == "leader"  # nothing was added; the node still leads alone
    assert requests.post(node.url + "/v1/counters/m/incr", json={"by": 1}, timeout=10).status_code == 200


@pytest.mark.parametrize("address, says", BAD_MEMBERS, ids=[a for a, _ in BAD_MEMBERS])
def test_a_member_must_be_an_address_a_peer_can_listen_on(node, address, says):
    for timeout in ("5", "0.001"):  # a tiny deadline used to let "0:1" apply behind a 504
        answer = requests.post(node.url + "/v1/members", json={"id": address}, headers={"X-Request-Timeout": timeout},
                               timeout=10)
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["definite"] is True and says in answer.json()["error"]["message"], answer.text
    assert_nothing_added(node)


@pytest.mark.parametrize("address", UNSECURED)
def test_a_member_beyond_loopback_needs_a_peer_secret(node, address):
    answer = requests.post(node.url + "/v1/members", json={"id": address}, timeout=10)
    assert answer.status_code == 409, answer.text
    error = answer.json()["error"]
    assert error["code"] == "rejected" and error["definite"] is True and "--secret-file" in error["message"]
    assert_nothing_added(node)


def test_a_member_cannot_be_added_twice(node):
    answer = requests.post(node.url + "/v1/members", json={"id": node.raft}, timeout=10)
    assert answer.status_code == 409 and "already a member" in answer.json()["error"]["message"], answer.text


@pytest.mark.parametrize("address", ["127.0.0.1:7001", "localhost:7001", "127.255.0.9:1", "10.0.0.1:7001", "223.1.2.3:65535",
                                     "raft-1.example.com:7001", "n1:7001", "xn--bcher-kva.example:80"])
def test_reachable_addresses_pass_and_need_a_secret_beyond_loopback(address):
    check_member_address(address)
    check_new_member(address, secret="s" * 43, members=set())
    loopback = address.startswith(("127.", "localhost"))
    if loopback:
        check_new_member(address, secret=None, members=set())
    else:
        with pytest.raises(Exception, match="secret"):
            check_new_member(address, secret=None, members=set())
