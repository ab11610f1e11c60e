"""stdin and stdout as trio streams, without touching the open file descriptions we inherited (issue 9 #15).

Descriptors 0 and 1 usually share their open file description with other processes: the shell, a sibling
writing to the same pipe, stderr after ``2>&1``. Setting ``O_NONBLOCK`` on it (what
:class:`trio.lowlevel.FdStream` does) makes their writes fail with EAGAIN. So the proxy never changes those
flags; it gets its own description instead, the best way the descriptor allows:

- a pipe, FIFO or terminal: reopened through ``/proc/self/fd/N`` (a new description, ours to make
  non-blocking), then read and written by trio like any descriptor;
- a socket (libuv's stdio pipes are socketpairs): ``recv``/``send`` with ``MSG_DONTWAIT``, per call;
- anything else (a regular file, or when reopening fails): blocking ``read``/``write`` in a worker thread.

stdout writes are whole (issue 9 #11): once a piece has started going out, a cancellation (a second signal)
waits for its end, up to :data:`FINISH_PIECE_SECONDS`, so stdout never ends inside a line the relay handed
over whole.
"""

from __future__ import annotations

import functools
import os
import socket
import stat
from collections.abc import Callable

import trio

from .errors import descriptor_limit_error

#: How long a stdout write already under way may still take after a cancellation, in seconds.
FINISH_PIECE_SECONDS = 10.0


def _reopen(fd: int, flags: int) -> int | None:
    """A new open file description of what *fd* refers to, non-blocking; None where that is not possible."""
    try:
        return os.open(f"/proc/self/fd/{fd}", flags | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as exc:
        limit = descriptor_limit_error(exc)
        if limit is not None:
            raise limit from None
        return None  # ENXIO (a FIFO without reader), ENOENT (no /proc), EACCES...


def _dup(fd: int) -> int:
    try:
        return os.dup(fd)
    except OSError as exc:
        raise descriptor_limit_error(exc) or exc from None


class _Base:
    def __init__(self, fd: int, how: str) -> None:
        self._fd = fd
        self._how = how  # "fd" (private non-blocking description), "socket" or "thread"
        self._sock = socket.socket(fileno=fd) if how == "socket" else None

    async def _wait(self, writable: bool) -> None:
        if writable:
            await trio.lowlevel.wait_writable(self._fd)
        else:
            await trio.lowlevel.wait_readable(self._fd)

    async def aclose(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            if self._sock is not None:
                self._sock.close()
            else:
                trio.lowlevel.notify_closing(fd)
                os.close(fd)
        await trio.lowlevel.checkpoint()


class StdinStream(_Base, trio.abc.ReceiveStream):
    """Reads stdin on a private description (see the module docstring)."""

    @property
    def nonblocking_fd(self) -> int | None:
        """The descriptor, when it is our own non-blocking description (a pipe, FIFO or terminal); else None."""
        return self._fd if self._how == "fd" else None

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        size = max_bytes or 65536
        if self._how == "thread":
            fd = self._fd
            return await trio.to_thread.run_sync(os.read, fd, size, abandon_on_cancel=True)
        while True:
            try:
                if self._sock is not None:
                    return self._sock.recv(size, socket.MSG_DONTWAIT)
                return os.read(self._fd, size)
            except BlockingIOError:
                await self._wait(writable=False)


class StdoutStream(_Base, trio.abc.SendStream):
    """Writes stdout on a private description; each :meth:`send_all` is whole once started."""

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data).cast("B")
        while view:
            try:
                try:
                    written = await self._write(view)
                except BlockingIOError:
                    await self._wait(writable=True)
                    continue
            except trio.Cancelled:
                if len(view) < len(data):  # under way: finish the piece (whole lines) before giving up
                    await self._finish(view)
                raise
            view = view[written:]
        await trio.lowlevel.checkpoint()

    async def _finish(self, view: memoryview) -> None:
        with trio.CancelScope(shield=True, deadline=trio.current_time() + FINISH_PIECE_SECONDS):
            while view:
                try:
                    view = view[await self._write(view) :]
                except BlockingIOError:
                    await self._wait(writable=True)
                except trio.BrokenResourceError:
                    return

    async def _write(self, view: memoryview) -> int:
        """One write: the count written; BlockingIOError when full; BrokenResourceError from other errors."""
        try:
            if self._how == "thread":
                fd = self._fd
                return await trio.to_thread.run_sync(os.write, fd, view)  # never abandoned: writes stay whole
            if self._sock is not None:
                return self._sock.send(view, socket.MSG_DONTWAIT)
            return os.write(self._fd, view)
        except BlockingIOError:
            raise
        except OSError as exc:
            raise trio.BrokenResourceError(os.strerror(exc.errno or 0)) from exc

    def nonblocking_writer(self) -> Callable[[bytes | bytearray | memoryview], int] | None:
        """A function making one non-blocking write (the count written; BlockingIOError when full; OSError on
        failure), for writing in the producer's task; None when stdout is written by a worker thread."""
        if self._how == "thread":
            return None
        sock = self._sock
        if sock is not None:
            return lambda data: sock.send(data, socket.MSG_DONTWAIT)
        return functools.partial(os.write, self._fd)

    async def wait_send_all_might_not_block(self) -> None:
        if self._how != "thread":
            await self._wait(writable=True)


def _open(fd: int, flags: int) -> tuple[int, str]:
    mode = os.fstat(fd).st_mode
    if stat.S_ISSOCK(mode):
        return _dup(fd), "socket"
    if stat.S_ISFIFO(mode) or stat.S_ISCHR(mode):
        private = _reopen(fd, flags)
        if private is not None:
            return private, "fd"
    return _dup(fd), "thread"


def open_stdin(fd: int = 0) -> StdinStream:
    """stdin as a stream.

    :raises TooManyOpenFiles: no descriptor left for it (74).
    """
    return StdinStream(*_open(fd, os.O_RDONLY))


def open_stdout(fd: int = 1) -> StdoutStream:
    """stdout as a stream; write errors come out as :class:`trio.BrokenResourceError` from the OSError.

    :raises TooManyOpenFiles: no descriptor left for it (74).
    """
    return StdoutStream(*_open(fd, os.O_WRONLY))
