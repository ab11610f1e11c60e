"""A byte queue between the tasks that produce frames or lines and the one task that writes them to a stream.

Producers append without awaiting; the writer takes everything queued in one piece, so many messages cost one
write and one task switch. The writer calls :meth:`Outbox.done` after each write, which lets
:meth:`Outbox.wait_below` give backpressure and :meth:`Outbox.wait_flushed` know when every byte is written.

With a :class:`~proxy.spool.Spool`, bytes past ``memory_limit`` go to disk instead of memory, and come back in
order: once anything is on disk, later bytes follow it there until the disk part has been taken.

With a ``write_now`` function (:func:`proxy.fdio.direct_writer`: a non-blocking write to the stream's file
descriptor), a put while nothing is queued or being written is written at once, in the producer's task: a
message then costs no task switch and no wake-up of the writer, which only takes what the descriptor did not
accept.

With a ``gather_now`` function too (:func:`proxy.fdio.direct_gatherer`: ``os.writev`` on the descriptor), what is
put while corked and nothing else waits is kept as a list of pieces (big ones as they are, small ones copied
into runs), not copied into the buffer, and :meth:`Outbox.uncork` writes them with one gathering write: a big
frame's header and payload reach the socket without being joined first.
"""

from __future__ import annotations

import trio

from .fdio import GatherNow, WriteNow
from .spool import Spool

#: The most bytes one :meth:`Outbox.take` reads back from the spool, in bytes.
SPOOL_READ_BYTES = 1024 * 1024
#: At most this many pieces go to one gathering write (Linux's IOV_MAX); more are joined into one piece first.
GATHER_PIECES = 1024
#: A gathered piece smaller than this, in bytes, is copied onto the run of small pieces before it: a gathering
#: write of many small pieces costs more than one copy of them (1,000 pieces of 100 B: 167 against 73 µs here).
GATHER_PIECE_BYTES = 16 * 1024


class Outbox:
    """Bytes waiting to be written, plus the bytes of the write in progress."""

    def __init__(
        self,
        memory_limit: int | None = None,
        spool: Spool | None = None,
        write_now: WriteNow | None = None,
        gather_now: GatherNow | None = None,
    ) -> None:
        self._buffer = bytearray()
        self._gather_now = gather_now
        self._pieces: list[bytes | bytearray | memoryview] = []  # put while corked, before anything else waited
        self._pieces_size = 0
        self._memory_limit = memory_limit
        self._spool = spool
        self._write_now = write_now
        self._cut_line = False  # a direct write stopped inside a line: the buffer starts with its rest
        self._corked = False
        self.line_rest = False  # the last take() is the rest of a line a direct write began
        self._in_flight = 0
        self._closed = False
        self._lot = trio.lowlevel.ParkingLot()

    def __len__(self) -> int:
        """Bytes queued (in memory or spooled) or being written."""
        return len(self._buffer) + self._pieces_size + self._in_flight + (len(self._spool) if self._spool else 0)

    def put(self, data: bytes | bytearray | memoryview) -> None:
        """Queue *data*; never blocks. Dropped once the outbox is closed.

        :raises LocalIOError: the spool is full or its disk failed.
        """
        if not data or self._closed:
            return
        if self._pieces or (self._corked and self._can_gather()):
            pieces = self._pieces
            if len(data) >= GATHER_PIECE_BYTES:
                pieces.append(data)
            elif pieces and type(pieces[-1]) is bytearray:
                pieces[-1] += data  # a run of small pieces, ours
            else:
                pieces.append(bytearray(data))
            self._pieces_size += len(data)
            return
        if self._can_write_at_once(data):
            data = self._write_at_once(data)  # the rest, if the descriptor took only part
            if not data:
                return
        spool = self._spool
        if spool is not None and (len(spool) or len(self._buffer) + len(data) > (self._memory_limit or 0)):
            spool.append(data)  # once anything is on disk, later bytes queue behind it there
        else:
            self._buffer += data
        if not self._corked:
            self._flush()

    @property
    def gathering(self) -> bool:
        """True when what is :meth:`put` now is gathered for one write at :meth:`uncork` (no copy): a caller may
        then put a big payload apart from its header."""
        return self._corked and (bool(self._pieces) or self._can_gather())

    def _can_gather(self) -> bool:
        return (
            self._gather_now is not None
            and not self._buffer
            and not self._in_flight
            and not (self._spool is not None and len(self._spool))
        )

    def _can_write_at_once(self, data: bytes | bytearray | memoryview) -> bool:
        """Nothing waits, and the rest of a partial write would fit in memory (where the writer looks for the rest
        of a cut line)."""
        if self._buffer or self._corked or self._write_now is None or self._in_flight:
            return False
        return self._spool is None or (not len(self._spool) and len(data) <= (self._memory_limit or 0))

    def _write_at_once(self, data: bytes | bytearray | memoryview) -> bytes | bytearray | memoryview:
        """Write *data* with ``write_now`` (no copy into the buffer first); return what it did not take."""
        written = self._try_write(data)
        return memoryview(data)[written:] if written else data

    def _try_write(self, data: bytes | bytearray | memoryview) -> int:
        """One ``write_now`` of *data*: the count written (0 on EAGAIN; any other error the writer meets again
        and reports). A write that stops inside a line leaves :attr:`_cut_line` set for the writer."""
        assert self._write_now is not None
        try:
            written = self._write_now(data)
        except OSError:
            return 0
        if written:
            self._cut_line = written < len(data) and data[written - 1] != 0x0A
        return written

    def cork(self) -> None:
        """Gather what is put until :meth:`uncork`, to write it at once (many messages, one system call)."""
        self._corked = True

    def uncork(self) -> None:
        """Write what was gathered since :meth:`cork` (or hand it to the writer)."""
        self._corked = False
        if self._pieces:
            self._write_pieces()
        elif self._buffer or (self._spool is not None and len(self._spool)):
            self._flush()

    def _write_pieces(self) -> None:
        """Write the gathered pieces with one gathering write; queue what it did not take, in order."""
        pieces, self._pieces, self._pieces_size = self._pieces, [], 0
        if len(pieces) == 1 or len(pieces) > GATHER_PIECES:
            self.put(pieces[0] if len(pieces) == 1 else b"".join(pieces))  # one write, as put does
            return
        assert self._gather_now is not None
        try:
            written = self._gather_now(pieces)
        except OSError:
            written = 0  # EAGAIN; any other error the writer meets again and reports
        last = 0x0A  # the last byte written, for _cut_line
        for piece in pieces:
            if written >= len(piece):
                written -= len(piece)
                if len(piece):
                    last = piece[-1]
                continue
            if written:
                last = piece[written - 1]
                piece = memoryview(piece)[written:]
                written = 0
            if not self._buffer:
                self._cut_line = last != 0x0A
            self._buffer += piece
        if self._buffer and self._lot:
            self._lot.unpark_all()

    def _flush(self) -> None:
        buffer = self._buffer
        if self._write_now is not None and buffer and not self._in_flight and not (self._spool and len(self._spool)):
            written = self._try_write(buffer)
            if written == len(buffer):
                buffer.clear()
                return
            del buffer[:written]
        if self._lot:
            self._lot.unpark_all()

    async def take(self) -> bytes | bytearray:
        """Wait for queued bytes and take the oldest; call :meth:`done` once they are written."""
        while True:
            if self._buffer:
                data: bytes | bytearray
                if self._cut_line:  # the rest of a line a direct write began, alone: the writer ends it whole
                    end = self._buffer.find(b"\n") + 1 or len(self._buffer)
                    data = bytes(self._buffer[:end])
                    del self._buffer[:end]
                    self._cut_line = False
                    self.line_rest = True
                    break
                data, self._buffer = self._buffer, bytearray()
                self.line_rest = False
                break
            if self._spool is not None and len(self._spool):
                data = self._spool.read(SPOOL_READ_BYTES)
                self.line_rest = False
                break
            await self._lot.park()
        self._in_flight = len(data)
        return data

    def done(self) -> None:
        """The bytes from the last :meth:`take` are written."""
        self._in_flight = 0
        self._lot.unpark_all()

    def take_line_rest(self) -> bytes:
        """The rest of the line a direct write began (b"" when none), taken like :meth:`take` (call :meth:`done`).

        The writer writes it whole even when cancelled, so stdout keeps whole lines.
        """
        if not self._cut_line:
            return b""
        end = self._buffer.find(b"\n") + 1 or len(self._buffer)
        rest = bytes(self._buffer[:end])
        del self._buffer[:end]
        self._cut_line = False
        self._in_flight = len(rest)
        return rest

    @property
    def abandoned(self) -> bool:
        """True after :meth:`abandon` or :meth:`close`: the writer should stop after its current piece."""
        return self._closed

    def abandon(self) -> None:
        """Stop: drop what is queued and delete the spool; the write in progress still counts until :meth:`done`.

        The rest of a line a direct write began stays queued: the writer ends it, so no half line is left.
        """
        self._closed = True
        self._pieces, self._pieces_size = [], 0
        end = self._buffer.find(b"\n") + 1 if self._cut_line else 0
        self._buffer = self._buffer[:end]
        if self._spool is not None:
            self._spool.close()
        self._lot.unpark_all()

    def close(self) -> None:
        """The stream is gone: :meth:`abandon`, and the write in progress is over too."""
        self.abandon()
        self._buffer = bytearray()
        self._in_flight = 0
        self._lot.unpark_all()

    async def wait_below(self, limit: int) -> None:
        """Wait until fewer than *limit* bytes are queued or in flight (or the outbox is closed)."""
        while len(self) >= limit:
            await self._lot.park()

    async def wait_changed(self) -> None:
        """Wait until the writer has written what it took, or the outbox is closed (then return at once)."""
        if not self._closed:
            await self._lot.park()

    async def wait_flushed(self) -> None:
        """Wait until every queued byte is written."""
        await self.wait_below(1)
