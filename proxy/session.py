"""Sans-I/O JSON-RPC 2.0 bookkeeping for one proxy session.

Codex speaks JSON-RPC 2.0 without the ``"jsonrpc"`` field. A *request* has ``method`` and ``id``; a
*notification* has ``method`` and no ``id``; a *response* has ``id`` and ``result`` or ``error`` and no
``method``. The session validates stdin lines, remembers the ids of requests sent, crosses them off when their
responses arrive, and says when the session has drained after stdin EOF.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

from .envelope import Envelope, RawNumber, read_envelope
from .linecheck import check_line, utf8_error

IdKey = tuple[str, object]


@dataclass(frozen=True)
class BadLine:
    """A stdin line that was not sent; ``reason`` completes "line N is ..."."""

    number: int
    reason: str


@dataclass(frozen=True)
class Retry:
    """Send *text* (the request, unchanged, same id) again after *delay* seconds; its error is not delivered."""

    text: bytes | bytearray
    delay: float
    attempt: int


#: Codex's JSON-RPC error code for a full intake queue ("Server overloaded; retry later.").
OVERLOADED = -32001
#: At most this many bytes of request text are kept for overload retries, all requests in flight together;
#: a request that does not fit is still sent and tracked, but not retried (its ``-32001`` error is delivered).
RETRY_MEMORY_CHARS = 16 * 1024 * 1024
#: Codex's request ids (measured on 0.169.0): a string or an integer in i64; a line with any other id gets no reply.
ID_MIN, ID_MAX = -(2**63), 2**63 - 1
#: Backoff before retry n (1-based): a random time in [base/2, base], base = 50 ms doubling, capped at 2 s.
BACKOFF_FIRST = 0.05
BACKOFF_CAP = 2.0


def backoff_delay(attempt: int, rng: random.Random) -> float:
    """Seconds to wait before retry *attempt* (1, 2, ...): exponential, capped, with jitter ("equal jitter")."""
    base = min(BACKOFF_CAP, BACKOFF_FIRST * 2 ** (attempt - 1))
    return rng.uniform(base / 2, base)


def id_key(value: object) -> IdKey | None:
    """A hashable key for a JSON-RPC id that keeps ``1`` and ``"1"`` apart; None for null or non-ids."""
    if isinstance(value, str):
        return ("s", value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return ("n", value)
    if isinstance(value, RawNumber):
        return ("n", value.text)
    return None


class Session:
    """Requests in flight and the drain rule (stdin EOF and every forwarded request answered)."""

    def __init__(
        self,
        overload_retries: int = 0,
        until: frozenset[str] = frozenset(),
        rng: random.Random | None = None,
    ) -> None:
        """:param overload_retries: how often a request answered ``-32001`` is sent again (0: never).
        :param until: notification methods (``--until``): after stdin EOF, the session has drained only once one
            of them has arrived after the last line sent.
        """
        self._outstanding: Counter[IdKey] = Counter()
        self._stdin_closed = False
        self._until = until
        self._until_seen = not until
        self._retries = overload_retries
        self._rng = rng or random.Random()
        self._requests: dict[IdKey, bytes | bytearray] = {}  # texts of requests in flight, kept only for retries
        self._requests_chars = 0  # their total length, at most RETRY_MEMORY_CHARS
        self.notice: str | None = None  # a warning about the last line :meth:`outgoing` accepted, if any
        self._attempts: Counter[IdKey] = Counter()

    @property
    def outstanding(self) -> int:
        """How many forwarded requests still await their response."""
        return sum(self._outstanding.values())

    @property
    def retry_memory(self) -> int:
        """Bytes of request text kept for overload retries (at most :data:`RETRY_MEMORY_CHARS`)."""
        return self._requests_chars

    @property
    def stdin_closed(self) -> bool:
        return self._stdin_closed

    @property
    def drained(self) -> bool:
        """True once stdin reached EOF, every forwarded request has its response and any ``--until`` came."""
        return self._stdin_closed and not self._outstanding and self._until_seen

    @property
    def awaiting(self) -> str:
        """What the drain still waits for, in words, e.g. ``2 responses and a turn/completed notification``."""
        parts = []
        if self._outstanding:
            count = self.outstanding
            parts.append(f"{count} response{'s' if count != 1 else ''}")
        if not self._until_seen:
            parts.append(f"a {' or '.join(sorted(self._until))} notification")
        return " and ".join(parts) or "nothing"

    def close_stdin(self) -> None:
        """Record stdin EOF: no more requests will be sent."""
        self._stdin_closed = True

    def outgoing(self, number: int, line: bytes | bytearray) -> bytes | bytearray | BadLine:
        """Check stdin line *number*; return the line to send (the same object: UTF-8, unchanged), or why not.

        A line must be UTF-8 and exactly one JSON value that Codex's parser takes
        (:func:`proxy.linecheck.check_line`: RFC 8259, no lone surrogates, at most 127 levels deep), and a
        request's id must be a string or an integer in i64 (a null id is sent as it is): Codex drops anything
        else without a reply. A request reusing the id
        of one still in flight is sent, with a warning in :attr:`notice` (Codex drops it too).
        """
        self.notice = None
        bad_utf8 = utf8_error(line)  # msgspec does not check UTF-8 inside the strings it skips
        if bad_utf8 is not None:
            return BadLine(number, bad_utf8)
        text = line
        envelope = check_line(line)
        if isinstance(envelope, str):
            return BadLine(number, envelope)
        if envelope.has_method and envelope.has_id and envelope.id_json != "null" and not _codex_id(envelope.id):
            return BadLine(number, f"a request whose id {_shown(envelope)} is neither a string nor a 64-bit integer")
        if self._until:
            self._until_seen = False  # only a notification after this line ends the drain
        if envelope.has_method:
            key = id_key(envelope.id)
            if key is not None:
                if self._outstanding[key]:
                    self.notice = (
                        f"stdin line {number} reuses id {_shown(envelope)} of a request still in flight; "
                        "Codex drops such a request without a reply (sent anyway)"
                    )
                self._outstanding[key] += 1
                fits = self._requests_chars + len(text) <= RETRY_MEMORY_CHARS
                if self._retries and key not in self._requests and fits:
                    self._requests[key] = text
                    self._requests_chars += len(text)
        return text

    def incoming(self, text: str | bytes | bytearray) -> Retry | None:
        """Look at a message from the server: a response crosses its request off.

        :returns: a :class:`Retry` when the message is an overload error (``-32001``) for a request that has
            retries left: then the message is not to be delivered and the request stays outstanding.
        """
        watching = not self._until_seen
        if isinstance(text, str):
            text = text.encode("utf-8")  # small in tests; the relay passes bytes
        if not watching and (not self._outstanding or (b'"id"' not in text and b"\\u" not in text)):
            return None  # cannot be a message we wait for: skip the parse on the hot path
        message = read_envelope(text)
        if message is None or not message.is_object:
            return None
        if message.has_method:
            method = message.method
            if watching and not message.has_id and method is not None and method in self._until:
                self._until_seen = True
            return None
        key = id_key(message.id)
        if key is None or not self._outstanding[key]:
            return None
        retry = self._retry(key, message)
        if retry is not None:
            return retry
        self._outstanding[key] -= 1
        if not self._outstanding[key]:
            del self._outstanding[key]
            kept = self._requests.pop(key, None)
            if kept is not None:
                self._requests_chars -= len(kept)
            self._attempts.pop(key, None)
        return None

    def _retry(self, key: IdKey, message: Envelope) -> Retry | None:
        if message.error_code != OVERLOADED or isinstance(message.error_code, bool):
            return None
        text = self._requests.get(key)
        if text is None or self._outstanding[key] != 1 or self._attempts[key] >= self._retries:
            return None  # retries used up, or the id is ambiguous: deliver the error
        self._attempts[key] += 1
        attempt = self._attempts[key]
        return Retry(text, backoff_delay(attempt, self._rng), attempt)


def _codex_id(value: object) -> bool:
    """True for an id Codex answers: a string, or an integer in i64 (``1.0`` is not one)."""
    if isinstance(value, str):
        return True
    return isinstance(value, int) and not isinstance(value, bool) and ID_MIN <= value <= ID_MAX


def _shown(envelope: Envelope) -> str:
    shown = envelope.id_json or "null"
    return shown if len(shown) <= 40 else shown[:37] + "..."
