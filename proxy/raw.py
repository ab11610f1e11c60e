"""``--raw``: copy bytes between stdio and the control socket, no handshake and no framing.

This is what ``codex app-server proxy`` does, for clients that speak WebSocket themselves. Half-close is
passed on: stdin EOF shuts down the socket's write side (``shutdown(SHUT_WR)``) and the proxy then waits
for the server to close; the server closing ends the run once stdout has everything.
"""

from __future__ import annotations

import trio

from .ending import Ending, stdout_failure
from .errors import ExitStatus, reason_of

COPY_BYTES = 256 * 1024


class RawRelay:
    """Two copy loops over one established stream."""

    def __init__(
        self,
        stream: trio.abc.HalfCloseableStream,
        stdin: trio.abc.ReceiveStream,
        stdout: trio.abc.SendStream,
    ) -> None:
        self._stream = stream
        self._stdin = stdin
        self._stdout = stdout
        self._ending: Ending | None = None
        self._ended = trio.Event()

    @property
    def ending_decided(self) -> bool:
        return self._ending is not None

    def interrupt(self, signum: int) -> None:
        """A signal arrived: stop copying and exit 128+*signum*."""
        self._end(Ending(128 + signum))

    def _end(self, ending: Ending) -> None:
        if self._ending is None:
            self._ending = ending
            self._ended.set()

    async def run(self) -> Ending:
        """Copy until the server closes (or a failure or signal); return how it ended."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._up)
            nursery.start_soon(self._down)
            await self._ended.wait()
            nursery.cancel_scope.cancel()
        assert self._ending is not None
        return self._ending

    def _lost(self, exc: BaseException) -> None:
        self._end(Ending(ExitStatus.SESSION_FAILED, f"lost the connection to the app-server ({reason_of(exc)})"))

    async def _up(self) -> None:
        while True:
            try:
                data = await self._stdin.receive_some(COPY_BYTES)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                self._end(Ending(ExitStatus.IOERR, f"cannot read stdin: {reason_of(exc)}"))
                return
            try:
                if not data:
                    await self._stream.send_eof()  # half-close: the server sees EOF, we keep reading
                    return
                await self._stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                self._lost(exc)
                return

    async def _down(self) -> None:
        while True:
            try:
                data = await self._stream.receive_some(COPY_BYTES)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                self._lost(exc)
                return
            if not data:
                self._end(Ending(ExitStatus.OK))
                return
            try:
                await self._stdout.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                self._end(stdout_failure(exc))
                return
