"""A message bigger than the server's frame limit is framed a fragment at a time as the socket takes them
(``Upstream._frame_fragments``, at most ``SOCKET_HIGH_WATER`` bytes of frames waiting). The framing must go on
however the queued frames get written, including when the gathering write at the end of a corked batch (one
stdin read, one serve client read) takes all of them at once, so that the writer task never sees them.

A Unix socket normally takes about 208 KiB before its reader has to read, less than the 512 KiB high water, so
that write takes everything only when the peer reads fast on another core (the benchmark's echo server did, once
in about 15 runs of a 64 MiB line). Here the proxy's end of a real socket pair gets a 4 MiB send buffer, which
makes the case certain; the peer is wsproto, reading every byte.
"""

from __future__ import annotations

import socket

import trio
from wsproto.connection import Connection, ConnectionType
from wsproto.events import CloseConnection, TextMessage

from proxy.handshake import MAX_UNFRAGMENTED_HEADER, HandshakeResponse
from proxy.trace import Tap
from proxy.upstream import SOCKET_HIGH_WATER, Upstream
from proxy.upstream_end import UpstreamEnd

#: Guards against hangs; never what the test measures.
GUARD = 20
FRAME_LIMIT = 64 * 1024


class Listener:
    def __init__(self) -> None:
        self.ends: list[UpstreamEnd] = []

    def upstream_messages(self, texts: list[bytes | bytearray | str]) -> bool:
        return True

    def upstream_ended(self, end: UpstreamEnd) -> None:
        self.ends.append(end)


async def read_messages(sock: trio.socket.SocketType, count: int) -> list[str]:
    """Read *sock* as a WebSocket server would (wsproto, no handshake) until *count* text messages are whole."""
    ws = Connection(ConnectionType.SERVER)
    messages: list[str] = []
    parts: list[str] = []
    while len(messages) < count:
        data = await sock.recv(1 << 20)
        assert data, "the proxy's end closed"
        ws.receive_data(data)
        for event in ws.events():
            assert not isinstance(event, CloseConnection), event
            assert isinstance(event, TextMessage), event
            parts.append(event.data)
            if event.message_finished:
                messages.append("".join(parts))
                parts = []
    return messages


async def test_a_big_message_is_framed_to_its_end_when_one_write_takes_every_queued_fragment() -> None:
    ours, theirs = trio.socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * SOCKET_HIGH_WATER)
    big = "x" * (4 * SOCKET_HIGH_WATER)  # framed in four rounds of SOCKET_HIGH_WATER bytes
    small = '{"method":"after"}'
    response = HandshakeResponse(((MAX_UNFRAGMENTED_HEADER, str(FRAME_LIMIT)),), b"")
    listener = Listener()
    with trio.fail_after(GUARD), theirs:
        async with trio.SocketStream(ours) as stream, trio.open_nursery() as nursery:
            upstream = Upstream(
                listener,
                stream,
                response,
                "test",
                max_incoming_size=1 << 30,
                ping_interval=0,
                ping_timeout=20,
                tap=Tap(),
            )
            nursery.start_soon(upstream.run)
            upstream.cork()
            upstream.send_texts([big.encode(), small.encode()])
            upstream.uncork()
            await upstream.wait_writable()  # returns once the big message is framed to its end
            assert await read_messages(theirs, 2) == [big, small]
            nursery.cancel_scope.cancel()
    assert listener.ends == []
