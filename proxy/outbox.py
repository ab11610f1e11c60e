"""A byte queue between the tasks that produce frames or lines and the one task that writes them to a stream.

Producers append without awaiting; the writer takes everything queued in one piece, so many messages cost one
write and one task switch. The writer calls :meth:`Outbox.done` after each write, which lets
:meth:`Outbox.wait_below` give backpressure and :meth:`Outbox.wait_flushed` know when every byte is written.

With a :class:`~proxy.spool.Spool`, bytes past ``memory_limit`` go to disk instead of memory, and come back in
order: once anything is on disk, later bytes follow it there until the disk part has been taken.
"""

from __future__ import annotations

import trio

from .spool import Spool

#: The most bytes one :meth:`Outbox.take` reads back from the spool, in bytes.
SPOOL_READ_BYTES = 1024 * 1024


class Outbox:
    """Bytes waiting to be written, plus the bytes of the write in progress."""

    def __init__(self, memory_limit: int | None = None, spool: Spool | None = None) -> None:
        self._buffer = bytearray()
        self._memory_limit = memory_limit
        self._spool = spool
        self._in_flight = 0
        self._closed = False
        self._lot = trio.lowlevel.ParkingLot()

    def __len__(self) -> int:
        """Bytes queued (in memory or spooled) or being written."""
        return len(self._buffer) + self._in_flight + (len(self._spool) if self._spool else 0)

    def put(self, data: bytes | bytearray) -> None:
        """Queue *data*; never blocks. Dropped once the outbox is closed.

        :raises LocalIOError: the spool is full or its disk failed.
        """
        if not data or self._closed:
            return
        spool = self._spool
        if spool is not None and (len(spool) or len(self._buffer) + len(data) > (self._memory_limit or 0)):
            spool.append(data)  # once anything is on disk, later bytes queue behind it there
        else:
            self._buffer += data
        self._lot.unpark_all()

    async def take(self) -> bytes | bytearray:
        """Wait for queued bytes and take the oldest; call :meth:`done` once they are written."""
        while True:
            if self._buffer:
                data: bytes | bytearray
                data, self._buffer = self._buffer, bytearray()
                break
            if self._spool is not None and len(self._spool):
                data = self._spool.read(SPOOL_READ_BYTES)
                break
            await self._lot.park()
        self._in_flight = len(data)
        return data

    def done(self) -> None:
        """The bytes from the last :meth:`take` are written."""
        self._in_flight = 0
        self._lot.unpark_all()

    @property
    def abandoned(self) -> bool:
        """True after :meth:`abandon` or :meth:`close`: the writer should stop after its current piece."""
        return self._closed

    def abandon(self) -> None:
        """Stop: drop what is queued and delete the spool; the write in progress still counts until :meth:`done`."""
        self._closed = True
        self._buffer = bytearray()
        if self._spool is not None:
            self._spool.close()
        self._lot.unpark_all()

    def close(self) -> None:
        """The stream is gone: :meth:`abandon`, and the write in progress is over too."""
        self.abandon()
        self._in_flight = 0
        self._lot.unpark_all()

    async def wait_below(self, limit: int) -> None:
        """Wait until fewer than *limit* bytes are queued or in flight (or the outbox is closed)."""
        while len(self) >= limit:
            await self._lot.park()

    async def wait_flushed(self) -> None:
        """Wait until every queued byte is written."""
        await self.wait_below(1)
