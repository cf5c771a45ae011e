"""Client sessions through the node API, on a real 3-node cluster."""

from __future__ import annotations

import pytest

from consensus.errors import SessionExpired
from consensus.testing import InProcessCluster


@pytest.fixture
async def cluster(tmp_path):
    async with InProcessCluster(3, tmp_path) as c:
        await c.wait_for_leader()
        yield c


def _follower(cluster):
    leader = cluster.leader()
    return next(n for n in cluster.running() if n is not leader)


async def test_a_session_on_any_node_applies_each_request_once(cluster):
    node = _follower(cluster)
    session = await node.open_session()
    assert await session.propose("kv", {"method": "incr", "args": ["n"]}) == 1
    assert await session.propose("kv", {"method": "incr", "args": ["n"]}) == 2
    # The same number again (what a retry after an unknown outcome sends) gets the first answer.
    again = await node.propose("kv", {"method": "incr", "args": ["n"]}, session=(session.client_id, 2, 2))
    assert again == 2
    assert await cluster.leader().read("kv", {"method": "get", "args": ["n"]}) == 2


async def test_a_proxy_with_a_session_is_exactly_once_and_a_closed_session_is_refused(cluster):
    from consensus.testing.machines import KV  # noqa: F401  (the kv machine is a ReplicatedObject)

    leader = cluster.leader()
    session = await leader.open_session()
    kv = leader.machine("kv", session=session)
    assert await kv.incr("p") == 1
    await session.close()
    with pytest.raises(SessionExpired) as info:
        await kv.incr("p")
    assert info.value.definite
    assert await leader.read("kv", {"method": "get", "args": ["p"]}) == 1


async def test_limits_change_through_the_log_on_every_node(cluster):
    leader = cluster.leader()
    await leader.set_limits(session_ttl=120 * 10**9, max_sessions=500)
    marker = await leader.propose("kv", {"method": "put", "args": ["after-limits", 1]})
    assert marker
    for node in cluster.running():
        await node.read("kv", {"method": "get", "args": ["after-limits"]})  # linearizable: caught up
        assert node.limits()["session_ttl"] == 120 * 10**9 and node.limits()["max_sessions"] == 500
