"""Sans-I/O replay log of one resumable session: what the app-server sent for its client, counted from 1.

Every message the relay receives for the session is appended with the next sequence number (1, 2, ...). The
log hands messages out to the attached client in order (:meth:`ReplayLog.take`, which advances the *cursor*)
and keeps the ones already handed out, because a connection that drops loses what was still in flight (socket
buffers on both sides). A client that resumes says how many it received (N); :meth:`ReplayLog.rewind` drops
messages 1..N for good and moves the cursor back to N+1, so :meth:`take` hands out exactly the missed suffix,
once, in order, then whatever arrives next.

Bounds (``--client-queue-bytes`` and ``--resume-spool-bytes``, in bytes of UTF-8):

- memory holds the oldest part of the log, at most ``memory_limit`` bytes; later messages go to an overflow
  store (a :class:`~proxy.spool.Spool` file, as ``proxy`` spools stdout), and once anything is there, later
  messages follow it there until it has been read back, so order is kept;
- while a client is attached, messages already handed out are forgotten oldest first when memory is needed;
  if the messages not yet handed out alone pass ``memory_limit``, :meth:`append` says :attr:`Appended.SLOW`
  (the client is a slow consumer: the caller closes it with 1008 and the session goes on detached), except
  while a resumed client catches up on its backlog (everything held when it resumed, and what was read back
  from the overflow store): then later messages queue behind it in the store. While no client is attached,
  nothing is forgotten;
- the overflow file may hold at most ``spool_limit`` bytes (counted like ``proxy``'s ``--spool-limit``: bytes
  written since the file was last empty); past it :meth:`append` says :attr:`Appended.OVERFLOW` and the
  session must end.

Records in the overflow store are one line each: ``=`` and the UTF-8 text, or, for the rare text holding a
line feed, ``~`` and its base64; the store reads back whole lines.
"""

from __future__ import annotations

import base64
import enum
from collections import deque
from collections.abc import Callable
from typing import Protocol

from ..upstream import Text

#: The most bytes read back from the overflow store at once, in bytes.
OVERFLOW_READ_BYTES = 1024 * 1024


class Overflow(Protocol):
    """A first-in, first-out byte store of whole lines (:class:`proxy.spool.Spool`)."""

    def __len__(self) -> int: ...

    def append(self, data: bytes | bytearray) -> None: ...

    def read(self, size: int) -> bytes: ...

    def close(self) -> None: ...


class Appended(enum.Enum):
    """What :meth:`ReplayLog.append` did with a message."""

    #: Kept (in memory or in the overflow store).
    KEPT = "kept"
    #: Kept, but the attached client is a slow consumer: close it (1008) and detach.
    SLOW = "slow"
    #: Not kept: the overflow store would pass its limit; the session must end.
    OVERFLOW = "overflow"


class RewindError(enum.Enum):
    """Why :meth:`ReplayLog.check_rewind` refuses a client's received count."""

    #: Messages after N are no longer held (forgotten to make room while a client was attached).
    TOO_OLD = "too-old"
    #: N is more than the bridge ever handed out.
    TOO_NEW = "too-new"


def _encode(text: Text) -> bytes:
    data = text.encode("utf-8") if isinstance(text, str) else text
    if b"\n" in data:
        return b"~" + base64.b64encode(data) + b"\n"
    return b"=" + data + b"\n"


def _size(text: Text) -> int:
    """Bytes of *text* in UTF-8."""
    if not isinstance(text, str):
        return len(text)
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def _decode(record: bytes) -> bytes:
    """A record's message, as UTF-8 bytes."""
    if record[:1] == b"~":
        return base64.b64decode(record[1:])
    return record[1:]


class ReplayLog:
    """The messages of one session, their sequence numbers, and the bounds above.

    :param memory_limit: bytes of messages kept in memory (``--client-queue-bytes``).
    :param spool_limit: bytes the overflow store may hold (``--resume-spool-bytes``).
    :param overflow: makes the overflow store on first use (a :class:`~proxy.spool.Spool`).
    :raises LocalIOError: from :meth:`append` and :meth:`take` when the overflow store's disk fails.
    """

    def __init__(self, memory_limit: int, spool_limit: int, overflow: Callable[[], Overflow]) -> None:
        self._memory_limit = memory_limit
        self._spool_limit = spool_limit
        self._make_overflow = overflow
        self._overflow: Overflow | None = None
        self._spooled_count = 0
        self._spool_written = 0
        # Memory holds messages first .. first+len(_texts)-1; the overflow store holds the rest, up to appended.
        self._texts: deque[Text] = deque()
        self._sizes: deque[int] = deque()
        self._memory_bytes = 0
        #: Sequence number of the last message read back from the overflow store.
        self._backlog_end = 0
        #: Sequence number of the last message appended (0: none yet).
        self.appended = 0
        #: Sequence number of the oldest message still held.
        self.first = 1
        #: Sequence number of the next message :meth:`take` hands out.
        self.cursor = 1
        #: True while a client is attached (messages handed out may then be forgotten when memory is needed).
        self.attached = True

    # -- sizes ---------------------------------------------------------------------------------------------

    @property
    def memory_bytes(self) -> int:
        """Bytes of messages held in memory."""
        return self._memory_bytes

    @property
    def spooled_bytes(self) -> int:
        """Bytes written to the overflow store since it was last empty (what its limit counts)."""
        return self._spool_written

    @property
    def pending(self) -> int:
        """Messages not yet handed out."""
        return self.appended - self.cursor + 1

    @property
    def held(self) -> int:
        """Messages held (handed out or not)."""
        return self.appended - self.first + 1

    # -- appending -----------------------------------------------------------------------------------------

    def append(self, text: Text) -> Appended:
        """Add the next message from the app-server; see :class:`Appended`."""
        size = _size(text)
        slow = False
        if not self._spooled_count:
            if self.attached:
                self._forget_handed_out(self._memory_limit - size)
            # One message larger than memory still goes out alone when nothing else waits (as for any client).
            if self._memory_bytes + size <= self._memory_limit or (self.attached and self.pending == 0):
                self._keep(text, size)
                return Appended.KEPT
            # Memory is full of messages the client has not taken: a slow consumer, unless it is still catching
            # up on a backlog read back from the store (then later messages queue behind it there).
            slow = self.attached and self.cursor > self._backlog_end
        if not self._spool(text):
            return Appended.OVERFLOW
        return Appended.SLOW if slow else Appended.KEPT

    def _keep(self, text: Text, size: int) -> None:
        self._texts.append(text)
        self._sizes.append(size)
        self._memory_bytes += size
        self.appended += 1

    def _spool(self, text: Text) -> bool:
        record = _encode(text)
        if self._spool_written + len(record) > self._spool_limit:
            return False
        if self._overflow is None:
            self._overflow = self._make_overflow()
        self._overflow.append(record)
        self._spool_written += len(record)
        self._spooled_count += 1
        self.appended += 1
        return True

    def _forget_handed_out(self, target: int) -> None:
        """Forget messages already handed out, oldest first, until memory holds at most *target* bytes."""
        while self._memory_bytes > target and self.cursor > self.first:
            self._texts.popleft()
            self._memory_bytes -= self._sizes.popleft()
            self.first += 1

    # -- handing out ---------------------------------------------------------------------------------------

    def take(self, max_bytes: int) -> list[Text]:
        """The next messages for the attached client, about *max_bytes* bytes (at least one when any is
        pending), in order; the cursor moves past them. They stay held until a rewind drops them or memory is
        needed."""
        if self.cursor - self.first >= len(self._texts):
            self._read_back()
        start = self.cursor - self.first
        texts: list[Text] = []
        size = 0
        index = start
        while index < len(self._texts) and (not texts or size + self._sizes[index] <= max_bytes):
            texts.append(self._texts[index])
            size += self._sizes[index]
            index += 1
        self.cursor += len(texts)
        return texts

    def _read_back(self) -> None:
        """Move the oldest records of the overflow store into memory (forgetting handed-out ones for room)."""
        if not self._spooled_count or self._overflow is None:
            return
        # A quarter of memory at a time (at most 1 MiB), so memory stays within its bound plus one message.
        chunk = max(1, min(OVERFLOW_READ_BYTES, self._memory_limit // 4))
        if self.attached:
            self._forget_handed_out(self._memory_limit - chunk)
        data = self._overflow.read(chunk)
        for record in data.split(b"\n")[:-1]:
            text = _decode(record)
            size = _size(text)
            self._texts.append(text)
            self._sizes.append(size)
            self._memory_bytes += size
            self._spooled_count -= 1
        self._backlog_end = max(self._backlog_end, self.first + len(self._texts) - 1)
        if not len(self._overflow):
            self._spool_written = 0

    # -- resuming ------------------------------------------------------------------------------------------

    def check_rewind(self, received: int) -> RewindError | None:
        """Whether a client that received messages 1..*received* can be given exactly the rest."""
        if received > self.cursor - 1:
            return RewindError.TOO_NEW
        if received < self.first - 1:
            return RewindError.TOO_OLD
        return None

    def rewind(self, received: int) -> None:
        """The client received messages 1..*received* (checked with :meth:`check_rewind`): forget them, and
        hand out *received* + 1 next."""
        assert self.check_rewind(received) is None
        while self.first <= received:
            self._texts.popleft()
            self._memory_bytes -= self._sizes.popleft()
            self.first += 1
        self.cursor = received + 1
        self._backlog_end = self.appended  # what the client missed is a backlog it is catching up on

    def close(self) -> None:
        """Forget everything and delete the overflow store."""
        if self._overflow is not None:
            self._overflow.close()
            self._overflow = None
        self._texts.clear()
        self._sizes.clear()
        self._memory_bytes = 0
        self._spooled_count = 0
        self._spool_written = 0
