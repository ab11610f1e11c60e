"""Shortcuts for the trio streams that are a non-blocking file descriptor (sockets, pipes, ttys), not TLS.

trio's ``receive_some`` and ``send_all`` yield to the scheduler on every call, even when the descriptor is
ready; at one message per read that is a scheduler pass per message each way. These functions use the
descriptor directly and go through trio only to wait; other streams get trio's own methods.
"""

from __future__ import annotations

import errno
import functools
import os
from collections.abc import Awaitable, Callable

import trio

from .stdio import StdinStream, StdoutStream

WriteNow = Callable[[bytes | bytearray | memoryview], int]
GatherNow = Callable[[list[bytes | bytearray | memoryview]], int]
Receive = Callable[[int], Awaitable[bytes | bytearray]]
SendAll = Callable[[bytes | bytearray | memoryview], Awaitable[None]]

#: A reader that always finds bytes waiting still lets other tasks run after this many reads in a row.
READS_BETWEEN_SCHEDULE_POINTS = 16


def descriptor(stream: trio.abc.AsyncResource) -> int | None:
    """The non-blocking file descriptor under *stream*, or None (TLS, memory streams, stdin read by a thread or as
    a socket)."""
    if isinstance(stream, trio.SocketStream):
        return stream.socket.fileno()
    if isinstance(stream, trio.lowlevel.FdStream):
        return stream.fileno()
    if isinstance(stream, StdinStream):
        return stream.nonblocking_fd
    return None


def direct_writer(stream: trio.abc.SendStream) -> WriteNow | None:
    """One non-blocking write to *stream* (it may write part, or raise BlockingIOError): :func:`os.write` on its
    descriptor, or :meth:`proxy.stdio.StdoutStream.nonblocking_writer`; None for a stream without one."""
    if isinstance(stream, StdoutStream):
        return stream.nonblocking_writer()
    fd = descriptor(stream)
    return None if fd is None else functools.partial(os.write, fd)


def direct_gatherer(stream: trio.abc.SendStream) -> GatherNow | None:
    """One non-blocking gathering write to *stream* (:func:`os.writev` on its descriptor: the count written, or
    BlockingIOError); None for a stream without a descriptor (TLS) and for stdout."""
    if isinstance(stream, StdoutStream):
        return None
    fd = descriptor(stream)
    return None if fd is None else functools.partial(os.writev, fd)


def direct_receiver(stream: trio.abc.ReceiveStream, *, checkpoint_first: bool = True) -> Receive:
    """An async ``receive_some(max_bytes)`` for *stream*: the same results and errors as trio's.

    It reads the descriptor at once and waits (a checkpoint) only when nothing is there, or first when the
    previous read came back short (the descriptor is then most likely empty); it checks for cancellation on
    every call and yields to other tasks every :data:`READS_BETWEEN_SCHEDULE_POINTS` reads.

    :param checkpoint_first: the first call is a full checkpoint, as trio's (False: it reads at once).

    :raises trio.BrokenResourceError: the read failed (e.g. ECONNRESET), with the OSError as its cause.
    :raises trio.ClosedResourceError: the descriptor was closed.
    """
    fd = descriptor(stream)
    if fd is None:
        return stream.receive_some
    # The first call is a full checkpoint, as trio's: the other tasks get their first turn before this one
    # starts moving bytes (a proxy whose stderr blocks depends on the order, see test_hostile_env). stdin is read
    # at once (checkpoint_first=False): its warnings reach stderr before the app-server's output fills stdout.
    reads = READS_BETWEEN_SCHEDULE_POINTS if checkpoint_first else 0
    drained = False  # the last read was short: the descriptor is most likely empty, so wait before reading

    async def receive_some(max_bytes: int) -> bytes:
        nonlocal reads, drained
        await trio.lowlevel.checkpoint_if_cancelled()
        if drained:
            reads = 0
            await trio.lowlevel.wait_readable(fd)  # a read now would mostly fail with EAGAIN (a system call)
        elif reads >= READS_BETWEEN_SCHEDULE_POINTS:
            reads = 0
            await trio.lowlevel.cancel_shielded_checkpoint()
        while True:
            try:
                data = os.read(fd, max_bytes)
            except BlockingIOError:
                reads = 0
                await trio.lowlevel.wait_readable(fd)
            except OSError as exc:
                raise _stream_error(exc) from exc
            else:
                reads += 1
                drained = len(data) < max_bytes
                return data

    return receive_some


def _stream_error(exc: OSError) -> trio.BrokenResourceError | trio.ClosedResourceError:
    if exc.errno == errno.EBADF:
        return trio.ClosedResourceError("file was already closed")
    error = trio.BrokenResourceError()
    error.__cause__ = exc  # as trio does: errors.errno_of() finds the errno here
    return error


def direct_sender(stream: trio.abc.SendStream) -> SendAll:
    """An async ``send_all(data)`` for *stream*: the same effect and errors as trio's (BrokenResourceError from the
    OSError, e.g. EPIPE; ClosedResourceError); it waits only while the descriptor is full, checks for
    cancellation on every call and yields to other tasks every :data:`READS_BETWEEN_SCHEDULE_POINTS` calls."""
    fd = descriptor(stream)
    if fd is None:
        return stream.send_all
    sends = 0

    async def send_all(data: bytes | bytearray | memoryview) -> None:
        nonlocal sends
        await trio.lowlevel.checkpoint_if_cancelled()
        sends += 1
        if sends >= READS_BETWEEN_SCHEDULE_POINTS:
            sends = 0
            await trio.lowlevel.cancel_shielded_checkpoint()
        with memoryview(data) as view:
            at = 0
            while at < len(view):
                try:
                    at += os.write(fd, view[at:])
                except BlockingIOError:
                    sends = 0
                    await trio.lowlevel.wait_writable(fd)
                except OSError as exc:
                    raise _stream_error(exc) from exc

    return send_all
