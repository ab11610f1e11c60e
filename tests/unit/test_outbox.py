"""proxy.outbox on a real socket pair: direct writes, corking, the writer task, and whole lines after abandon()."""

from __future__ import annotations

import socket

import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.fdio import direct_gatherer, direct_writer
from proxy.outbox import GATHER_PIECES, Outbox
from proxy.spool import Spool


async def drain(stream: trio.SocketStream, size: int) -> bytes:
    got = bytearray()
    with trio.fail_after(30):
        while len(got) < size:
            got += await stream.receive_some(1 << 20)
    return bytes(got)


async def writer(outbox: Outbox, stream: trio.SocketStream) -> None:
    while True:
        data = await outbox.take()
        await stream.send_all(data)
        outbox.done()


def small_pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    a, b = socket.socketpair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # the kernel accepts little: writes stop part-way
    return trio.SocketStream(trio.socket.from_stdlib_socket(a)), trio.SocketStream(trio.socket.from_stdlib_socket(b))


async def test_direct_writes_need_no_writer_task() -> None:
    ours, peer = small_pair()
    outbox = Outbox(write_now=direct_writer(ours))
    outbox.put(b"one\n")
    assert len(outbox) == 0  # written in put(), nothing queued
    assert await drain(peer, 4) == b"one\n"


async def test_corked_puts_go_out_together_and_in_order_with_the_writer() -> None:
    ours, peer = small_pair()
    outbox = Outbox(write_now=direct_writer(ours))
    lines = [b"%d %s\n" % (i, b"x" * (i % 300)) for i in range(5000)]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer, outbox, ours)
        outbox.cork()
        for line in lines[:2500]:
            outbox.put(line)
        assert len(outbox) == sum(map(len, lines[:2500]))  # nothing written while corked
        outbox.uncork()
        for line in lines[2500:]:
            outbox.put(line)  # while the writer has a part in flight, these queue behind it
        assert await drain(peer, sum(map(len, lines))) == b"".join(lines)
        with trio.fail_after(30):
            await outbox.wait_flushed()
        nursery.cancel_scope.cancel()


async def test_abandon_keeps_the_rest_of_a_line_a_direct_write_began() -> None:
    ours, peer = small_pair()
    outbox = Outbox(1 << 20, Spool(1 << 30), direct_writer(ours))
    line = b"y" * 300_000 + b"\n"  # far more than the socket takes at once
    outbox.put(line)
    outbox.put(b"next\n")
    assert 0 < len(outbox) < len(line) + 5
    outbox.abandon()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer, outbox, ours)
        assert await drain(peer, len(line)) == line  # that line ends; b"next\n" is dropped
        with trio.fail_after(30):
            await outbox.wait_flushed()
        nursery.cancel_scope.cancel()


async def test_large_data_with_a_spool_is_left_to_the_writer() -> None:
    ours, peer = small_pair()
    outbox = Outbox(1024, Spool(1 << 30), direct_writer(ours))
    outbox.put(b"z" * 5000 + b"\n")  # over the memory limit: spooled, not written here
    assert len(outbox) == 5001
    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer, outbox, ours)
        assert await drain(peer, 5001) == b"z" * 5000 + b"\n"
        nursery.cancel_scope.cancel()
    outbox.close()


def test_no_direct_writer_for_streams_without_a_descriptor() -> None:
    send, _ = trio.testing.memory_stream_pair()
    assert direct_writer(send) is None


async def test_the_rest_of_a_directly_written_line_can_be_taken_out() -> None:
    ours, peer = small_pair()
    outbox = Outbox(1 << 20, Spool(1 << 30), direct_writer(ours))
    line = b"w" * 300_000 + b"\n"
    outbox.put(line + b"after\n")
    rest = outbox.take_line_rest()  # what a cancelled writer finishes, so stdout ends at a line end
    assert 0 < len(rest) < len(line) and rest.endswith(b"\n")
    assert outbox.take_line_rest() == b""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ours.send_all, rest)
        assert await drain(peer, len(line)) == line
    outbox.done()
    assert len(outbox) == len(b"after\n")


async def test_the_writer_takes_the_rest_of_a_directly_written_line_alone() -> None:
    ours, _peer = small_pair()
    outbox = Outbox(1 << 20, Spool(1 << 30), direct_writer(ours))
    line = b"v" * 300_000 + b"\n"
    outbox.put(line + b"next\n")
    rest = await outbox.take()
    assert outbox.line_rest and rest.endswith(b"\n") and b"next" not in rest  # for the writer to end whole
    outbox.done()
    assert await outbox.take() == b"next\n"
    assert not outbox.line_rest


def gathering_outbox(stream: trio.SocketStream) -> Outbox:
    return Outbox(write_now=direct_writer(stream), gather_now=direct_gatherer(stream))


async def test_corked_pieces_go_out_in_one_gathering_write_without_a_writer() -> None:
    ours, peer = small_pair()
    ours.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    outbox = gathering_outbox(ours)
    header, payload = b"H" * 4, b"p" * 50_000
    outbox.cork()
    assert outbox.gathering
    outbox.put(header)
    outbox.put(payload)
    outbox.put(b"tail\n")
    assert len(outbox) == len(header) + len(payload) + 5  # kept as pieces: counted, not written
    outbox.uncork()
    assert len(outbox) == 0  # the socket took all of it at uncork
    assert await drain(peer, 50_009) == header + payload + b"tail\n"


async def test_no_gathering_while_the_writer_has_bytes() -> None:
    ours, _peer = small_pair()
    outbox = gathering_outbox(ours)
    outbox.put(b"x" * 100_000)  # more than the small socket takes: the rest waits for the writer
    assert len(outbox) > 0
    outbox.cork()
    assert not outbox.gathering  # later puts queue behind the waiting bytes, in order
    outbox.uncork()


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=0, max_value=70_000), min_size=1, max_size=40),
    many=st.booleans(),
    before=st.integers(min_value=0, max_value=3),
)
def test_gathered_pieces_arrive_whole_and_in_order(sizes: list[int], many: bool, before: int) -> None:
    """Pieces of any size (lines ending in LF), a partial gathering write, the writer taking the rest (a cut
    line first and alone), more puts behind them: the peer gets every byte once, in order."""
    if many:
        sizes = sizes + [3] * (GATHER_PIECES + 5)  # past one gathering write's limit: joined first
    pieces = [b"%d:" % i + b"z" * size + b"\n" for i, size in enumerate(sizes)]
    later = [b"later %d\n" % i for i in range(before)]
    expected = b"".join(pieces + later)

    async def main() -> None:
        ours, peer = small_pair()
        outbox = gathering_outbox(ours)
        taken: list[tuple[bool, bytes]] = []

        async def write_rest() -> None:
            while True:
                data = await outbox.take()
                taken.append((outbox.line_rest, bytes(data)))
                await ours.send_all(data)
                outbox.done()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(write_rest)
            await trio.testing.wait_all_tasks_blocked()
            outbox.cork()
            for piece in pieces:
                outbox.put(piece)
            outbox.uncork()
            for line in later:
                outbox.put(line)
            assert await drain(peer, len(expected)) == expected
            with trio.fail_after(30):
                await outbox.wait_flushed()
            nursery.cancel_scope.cancel()
        for rest, data in taken:
            if rest:  # the rest of a line the gathering write cut: alone, and it ends that line
                assert data.endswith(b"\n") and data.count(b"\n") == 1

    trio.run(main)
