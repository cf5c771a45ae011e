"""``FencedStore``: the storage side of fencing tokens, as small as it can be.

A lock holder can be paused (GC, swap, a stopped VM) past its lease; another client then gets
the lock, and the first one wakes up still believing it holds it. The lock service cannot stop
that client, but the resource it writes to can: every write carries the grant's fencing token,
and the store refuses a token lower than the highest it has seen. Tokens strictly increase from
grant to grant (they are the grant command's sequence number in the Raft log), so the late
writer's older token is refused. (Martin Kleppmann, "How to do distributed locking", 2016.)
"""

from __future__ import annotations

import threading
from typing import Any


class StaleToken(Exception):
    """A write carried a fencing token lower than one the store has already seen."""

    def __init__(self, token: int, highest: int) -> None:
        super().__init__(f"fencing token {token} is older than {highest}, which the store has seen")
        self.token = token
        self.highest = highest


class FencedStore:
    """A register that accepts a write only with a token at least as high as any seen before."""

    def __init__(self, value: Any = None) -> None:
        self.value = value
        self.highest_token = -1
        self._lock = threading.Lock()

    def write(self, token: int, value: Any) -> None:
        """Store ``value`` if ``token`` is not older than the highest seen; else raise ``StaleToken``."""
        with self._lock:
            if token < self.highest_token:
                raise StaleToken(token, self.highest_token)
            self.highest_token = token
            self.value = value

    def read(self) -> Any:
        with self._lock:
            return self.value
