"""A byte queue between one producer task and the one task that writes to a stream.

The producer appends whole frames or whole lines without awaiting; the writer takes everything queued in one
piece, so many messages cost one write and one task switch. The writer calls :meth:`Outbox.done` after each
write, which lets :meth:`Outbox.wait_below` give backpressure and :meth:`Outbox.wait_flushed` know when
every queued byte has been written.
"""

from __future__ import annotations

import trio


class Outbox:
    """Bytes waiting to be written, plus the bytes of the write in progress."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._in_flight = 0
        self._closed = False
        self._lot = trio.lowlevel.ParkingLot()

    def __len__(self) -> int:
        """Bytes queued or being written."""
        return len(self._buffer) + self._in_flight

    def put(self, data: bytes | bytearray) -> None:
        """Queue *data*; never blocks. Dropped once the outbox is closed."""
        if data and not self._closed:
            self._buffer += data
            self._lot.unpark_all()

    async def take(self) -> bytearray:
        """Wait for queued bytes and take them all; call :meth:`done` once they are written."""
        while not self._buffer:
            await self._lot.park()
        data, self._buffer = self._buffer, bytearray()
        self._in_flight = len(data)
        return data

    def done(self) -> None:
        """The bytes from the last :meth:`take` are written."""
        self._in_flight = 0
        self._lot.unpark_all()

    def close(self) -> None:
        """The stream is gone: drop what is queued and release every waiter."""
        self._closed = True
        self._buffer = bytearray()
        self._in_flight = 0
        self._lot.unpark_all()

    async def wait_below(self, limit: int) -> None:
        """Wait until fewer than *limit* bytes are queued or in flight (or the outbox is closed)."""
        while len(self) >= limit:
            await self._lot.park()

    async def wait_flushed(self) -> None:
        """Wait until every queued byte is written."""
        await self.wait_below(1)
