"""The frames waiting for one ``serve`` client, and the task that writes them (trio side: it only moves bytes).

:meth:`FrameQueue.put` writes at once, in the producer's task, when nothing waits and the stream has a file
descriptor (:func:`proxy.fdio.direct_writer`; not TLS), and queues whatever the descriptor did not take;
:meth:`FrameQueue.write` (the writer task) sends the queued frames in sends of about :data:`SEND_BYTES`. The bound
on what waits (``--client-queue-bytes``) and the slow-consumer close are the endpoint's
(:meth:`proxy.serve.client.WebSocketEndpoint.deliver`), which reads :attr:`FrameQueue.queued` and
:attr:`FrameQueue.in_flight`.
"""

from __future__ import annotations

from collections import deque

import trio

from ..fdio import direct_sender, direct_writer

#: Frames are written in sends of about this many bytes.
SEND_BYTES = 256 * 1024


class FrameQueue:
    """Whole frames not yet written to one client, and the send in progress.

    :param stream: the client's stream (TCP or TLS).
    """

    def __init__(self, stream: trio.abc.Stream) -> None:
        self._send = direct_sender(stream)
        self._write_now = direct_writer(stream)  # None for TLS: every frame goes through the writer task
        self._queue: deque[bytes] = deque()
        #: Bytes of frames waiting, and of the send in progress.
        self.queued = 0
        self.in_flight = 0
        self._lot = trio.lowlevel.ParkingLot()
        #: A send failed: the client's connection is gone, and frames put from now on are dropped.
        self.broken = False

    def put(self, data: bytes) -> None:
        """Write *data* (whole frames) now if nothing waits, else queue it; never blocks."""
        if not data or self.broken:
            return
        if self._write_now is not None and not self._queue and not self.in_flight:
            # Nothing waits: write now, in this task (no wake-up of the writer); it takes what is left.
            try:
                written = self._write_now(data)
            except OSError:  # EAGAIN; any other error the writer meets again and reports
                written = 0
            if written == len(data):
                return
            data = data[written:]
        self._queue.append(data)
        self.queued += len(data)
        self._lot.unpark_all()

    async def write(self) -> None:
        """The writer task: send what is queued, as it comes; return once a send fails (the connection broke)."""
        while True:
            while not self._queue:
                await self._lot.park()
            chunks = [self._queue.popleft()]
            size = len(chunks[0])
            while self._queue and size + len(self._queue[0]) <= SEND_BYTES:
                chunks.append(self._queue.popleft())
                size += len(chunks[-1])
            self.queued -= size
            self.in_flight = size
            try:
                await self._send(b"".join(chunks) if len(chunks) > 1 else chunks[0])
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self.broken = True
                self._queue.clear()
                self.queued = self.in_flight = 0
                self._lot.unpark_all()
                return
            self.in_flight = 0
            self._lot.unpark_all()

    async def wait_below(self, size: int) -> None:
        """Wait until fewer than *size* bytes of frames wait for the client (or the connection broke)."""
        while self.queued + self.in_flight >= size and not self.broken:
            await self._lot.park()

    async def wait_flushed(self) -> None:
        """Wait until every frame is written (or the connection broke)."""
        while (self._queue or self.in_flight) and not self.broken:
            await self._lot.park()

    def abandon(self) -> None:
        """Drop the frames that wait (not the send in progress)."""
        self._queue.clear()
        self.queued = 0
