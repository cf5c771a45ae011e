"""Peer framing: small messages uncompressed, big ones zlib'd, and both read, through pysyncobj's own connection."""

from __future__ import annotations

import socket
import struct
import time
import zlib

from hypothesis import given
from hypothesis import strategies as st
from pysyncobj import pickle as pysyncobj_pickle
from pysyncobj.poller import createPoller
from pysyncobj.tcp_connection import TcpConnection

from consensus.engine import framing
from consensus.engine.framing import COMPRESS_AT, PeerFraming


def _append_entries(n: int) -> dict:
    return {"type": "append_entries", "term": 3, "commit_index": 10, "prevLogIdx": 9, "prevLogTerm": 3,
            "entries": [(b"\x01" + b"command %d " % i * 4, 10 + i, 3) for i in range(n)]}


def test_a_small_message_goes_as_its_pickle_and_a_big_one_compressed():
    codec = PeerFraming()
    small = pysyncobj_pickle.dumps(_append_entries(8))
    big = pysyncobj_pickle.dumps(_append_entries(2000))
    assert len(small) < COMPRESS_AT <= len(big)
    assert codec.compress(small, 3) is small and codec.decompress(small) == small
    packed = codec.compress(big, 3)
    assert len(packed) < len(big) and packed[0] != framing.PICKLE_PROTO and codec.decompress(packed) == big


@given(st.binary(max_size=4096), st.sampled_from([-1, 0, 1, 3, 6, 9]))
def test_a_zlib_stream_never_starts_like_a_pickle_so_frames_from_older_peers_are_read(data, level):
    stream = zlib.compress(data, level)
    assert stream[0] != framing.PICKLE_PROTO
    assert PeerFraming().decompress(stream) == data  # what pysyncobj as it comes sends


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.binary(max_size=64) | st.text(max_size=16),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=20))
def test_every_pysyncobj_pickle_starts_with_the_proto_opcode(message):
    assert pysyncobj_pickle.dumps(message)[0] == framing.PICKLE_PROTO


def _read_frame(sock: socket.socket, deadline: float) -> bytes:
    data = b""
    while time.monotonic() < deadline:
        try:
            data += sock.recv(1 << 20)
        except BlockingIOError:
            time.sleep(0.005)
            continue
        if len(data) >= 4 and len(data) - 4 >= struct.unpack("i", data[:4])[0]:
            return data[4:4 + struct.unpack("i", data[:4])[0]]
    raise AssertionError("no whole frame arrived")


def test_pysyncobjs_connection_sends_small_frames_plain_and_reads_plain_and_zlib_frames():
    framing.install()
    framing.install()  # twice is once
    assert framing.installed()
    ours, theirs = socket.socketpair()
    ours.setblocking(False)  # pysyncobj's connections are non-blocking
    theirs.setblocking(False)
    poller = createPoller("auto")
    received: list[object] = []
    conn = TcpConnection(poller, onMessageReceived=received.append, socket=ours)
    try:
        deadline = time.monotonic() + 10
        conn.send(_append_entries(4))
        frame = _read_frame(theirs, deadline)
        assert frame[0] == framing.PICKLE_PROTO and pysyncobj_pickle.loads(frame) == _append_entries(4)
        conn.send(_append_entries(2000))
        poller.poll(0.05)  # let it flush the rest of a big buffer
        frame = _read_frame(theirs, deadline)
        assert frame[0] != framing.PICKLE_PROTO and pysyncobj_pickle.loads(zlib.decompress(frame)) == _append_entries(2000)
        # From the other side: one frame as pysyncobj as it comes writes it, one as raftwork does.
        for body in (zlib.compress(pysyncobj_pickle.dumps({"type": "old"}), 3), pysyncobj_pickle.dumps({"type": "new"})):
            theirs.sendall(struct.pack("i", len(body)) + body)
        while len(received) < 2 and time.monotonic() < deadline:
            poller.poll(0.05)
        assert received == [{"type": "old"}, {"type": "new"}]
    finally:
        conn.disconnect()
        theirs.close()
