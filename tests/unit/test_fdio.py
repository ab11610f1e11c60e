"""proxy.fdio on real socket pairs and pipes: the same bytes, EOF and errors as trio's own stream methods."""

from __future__ import annotations

import errno
import os
import socket

import pytest
import trio
import trio.testing

from proxy.errors import errno_of
from proxy.fdio import direct_receiver, direct_sender


def pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    a, b = socket.socketpair()
    return trio.SocketStream(trio.socket.from_stdlib_socket(a)), trio.SocketStream(trio.socket.from_stdlib_socket(b))


async def test_bytes_cross_both_ways_and_eof_reads_empty() -> None:
    ours, peer = pair()
    send, receive = direct_sender(ours), direct_receiver(peer)
    data = os.urandom(3 << 20)  # more than the socket buffer: send_all waits for the reader
    got = bytearray()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(send, data)
            while len(got) < len(data):
                got += await receive(1 << 16)
    assert got == data
    await ours.aclose()
    with trio.fail_after(30):
        assert await receive(100) == b""


async def test_writing_to_a_closed_peer_is_broken_with_epipe() -> None:
    ours, peer = pair()
    await peer.aclose()
    with pytest.raises(trio.BrokenResourceError) as raised:
        await direct_sender(ours)(b"x" * 100)
    assert errno_of(raised.value) == errno.EPIPE


async def test_pipes_and_a_closed_descriptor() -> None:
    read_fd, write_fd = os.pipe()
    reader, writer = trio.lowlevel.FdStream(read_fd), trio.lowlevel.FdStream(write_fd)
    await direct_sender(writer)(b"line\n")
    assert await direct_receiver(reader)(100) == b"line\n"
    receive = direct_receiver(reader)
    await reader.aclose()  # its descriptor is closed now: EBADF
    with pytest.raises(trio.ClosedResourceError):
        await receive(100)
    await writer.aclose()


async def test_cancellation_is_seen_even_when_bytes_are_always_waiting() -> None:
    ours, peer = pair()
    await ours.send_all(b"x" * 100_000)
    receive = direct_receiver(peer)
    with trio.CancelScope() as scope:
        scope.cancel()
        await receive(1)
    assert scope.cancelled_caught


def test_other_streams_keep_their_own_methods() -> None:
    send, receive = trio.testing.memory_stream_pair()
    assert direct_sender(send) == send.send_all
    assert direct_receiver(receive) == receive.receive_some
