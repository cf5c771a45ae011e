"""pysyncobj's TCP transport with its back doors shut.

pysyncobj's transport answers anyone who connects to the peer port: a connection that says
``"readonly"`` is fed the whole log, and one that sends a list runs *utility commands* (add or
remove a member, transfer leadership, status; ``syncobj_admin``) without any check. raftwork
changes membership only through the node's API, so ``PeerTransport`` closes any incoming
connection whose first message is not the address of a known member (the password handshake,
when a secret is set, still comes first, as in pysyncobj). The peer port binds exactly the
configured address (pysyncobj binds all interfaces unless told otherwise). Messages under 16 KiB
travel uncompressed (``framing``).
"""

from __future__ import annotations

import logging
from typing import Any

from pysyncobj.transport import TCPTransport

from consensus.engine import framing

log = logging.getLogger("consensus.engine")


class PeerTransport(TCPTransport):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        framing.install()  # small peer messages uncompressed (consensus/engine/framing.py)
        super().__init__(*args, **kwargs)

    def _onIncomingMessageReceived(self, conn: Any, message: Any) -> None:
        handshaking = self._syncObj.encryptor and not conn.sendRandKey
        if not handshaking and (isinstance(message, list) or message == "readonly"):
            log.warning("%s refused a peer connection that sent %s (utility commands and read-only "
                        "members are disabled)", getattr(self._selfNode, "id", "?"),
                        "a utility command" if isinstance(message, list) else "'readonly'")
            conn.disconnect()
            self._unknownConnections.discard(conn)
            return
        super()._onIncomingMessageReceived(conn, message)
