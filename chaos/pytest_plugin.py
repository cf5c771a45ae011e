"""pytest plugin: a ``cluster`` fixture factory that starts chaos clusters and always stops them.

Registered through the ``pytest11`` entry point ``raftwork_chaos``, so it is active wherever
raftwork is installed::

    async def test_failover(cluster):
        c = await cluster(n=3, apps=["counter"])
        leader = await c.wait_for_leader()
        await c.isolate(leader)
        assert await c.wait_for_leader() != leader

Every cluster a test makes lives under the test's ``tmp_path`` (``cluster-1``, ``cluster-2``...,
node logs included) and is healed and stopped after the test, pass or fail. Nothing heavy is
imported until the fixture is used, and a missing pytest-asyncio only matters to tests that use it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

import pytest

try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - the fixture then explains itself when used
    pytest_asyncio = None  # type: ignore[assignment]

ClusterFactory = Callable[..., Awaitable[Any]]


async def _clusters(tmp_path: Path) -> AsyncIterator[ClusterFactory]:
    from chaos.cluster import ChaosCluster

    made: list[ChaosCluster] = []

    async def make(n: int = 3, apps: Any = ("counter",), **kwargs: Any) -> ChaosCluster:
        kwargs.setdefault("data_dir", tmp_path / f"cluster-{len(made) + 1}")
        c = ChaosCluster(n=n, apps=tuple(apps), **kwargs)
        made.append(c)
        await c.start()
        return c

    try:
        yield make
    finally:
        errors: list[BaseException] = []
        for c in reversed(made):
            try:
                await c.stop()
            except BaseException as exc:  # stop the others anyway
                errors.append(exc)
        if errors:
            raise errors[0]


if pytest_asyncio is not None:

    @pytest_asyncio.fixture
    async def cluster(tmp_path: Path) -> AsyncIterator[ClusterFactory]:
        """Return ``make(n=3, apps=("counter",), **ChaosCluster kwargs)``, which starts a cluster."""
        async for make in _clusters(tmp_path):
            yield make

else:  # pragma: no cover

    @pytest.fixture
    def cluster() -> None:
        """Needs pytest-asyncio."""
        pytest.fail("the cluster fixture needs pytest-asyncio (pip install 'raftwork[test]')")
