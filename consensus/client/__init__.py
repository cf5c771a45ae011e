"""Client of a raftwork cluster over HTTP.

::

    async with Client(["http://127.0.0.1:8001", "http://127.0.0.1:8002"]) as client:
        await client.status()
        await client.request("POST", "/v1/counters/a/incr", body={"by": 1}, write=True)

    with SyncClient("http://127.0.0.1:8001,http://127.0.0.1:8002") as client:
        client.status()

Errors are those of ``consensus.errors``: definite ones mean nothing changed; ``Indeterminate``
means a write may have applied (retrying with the same idempotency key is safe).
"""

from consensus.client._client import Client, Response
from consensus.client._select import STRATEGIES, Endpoint, EndpointPool, normalize_url
from consensus.client._sync import SyncClient

__all__ = ["STRATEGIES", "Client", "Endpoint", "EndpointPool", "Response", "SyncClient", "normalize_url"]
