"""Sans-I/O fragmentation of WebSocket text messages (RFC 6455 §5.4): cutting outgoing ones, joining incoming ones.

Codex drops the connection on a frame over its advertised limit (16 MiB), so :func:`fragments` cuts larger
messages. wsproto hands over an incoming data frame as one or more events as its bytes arrive;
:class:`MessageAssembler` joins them into whole messages (UTF-8 bytes) and stops holding a message once it
passes the limit, each fragment counting at least a fixed overhead, so memory stays bounded.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

#: Each text fragment counts at least this many bytes against the limit, however small its payload: about what
#: one frame costs while wsproto parses it and Python holds it as an event and a str (measured: 1 MiB in 2-byte
#: fragments once cost 60 MiB). So a flood of tiny or empty fragments trips ``--max-incoming-size`` as its
#: memory would (with the 256 MiB default, about two million fragments per message), while a message cut in
#: fragments of ordinary size counts its bytes only.
FRAGMENT_OVERHEAD = 128


#: A stdin line over the server's frame limit is sent in fragments of at most this many bytes.
FRAGMENT_BYTES = 1024 * 1024


@dataclass(frozen=True)
class TooBig:
    """A message passed the limit.

    :ivar size: how much of it had arrived, in bytes (at least), each fragment counting at least
        :data:`FRAGMENT_OVERHEAD`.
    :ivar fragments: how many fragments had arrived (1: a single frame).
    """

    size: int
    fragments: int = 1


@dataclass(frozen=True)
class Binary:
    """A whole binary message arrived; only its ``size`` in bytes is kept."""

    size: int


def too_big_fragments(too_big: TooBig) -> str:
    """Words for a message's fragment count in the "over --max-incoming-size" line ("" for one frame)."""
    if too_big.fragments <= 1:
        return ""
    return f" (in {too_big.fragments} fragments, each counted as at least {FRAGMENT_OVERHEAD} bytes)"


class MessageAssembler:
    """Join text fragments into messages, as UTF-8 bytes; count binary ones.

    Fragments are encoded into one growing buffer as they come (no list of pieces, no join at the end), and
    the whole message comes out as UTF-8 bytes, ready for its line: a message is never held as a str of the
    whole, which would cost 4 bytes per character for a message with one emoji in it.

    :param max_size: the largest message accepted, in bytes of UTF-8 (``--max-incoming-size``), each fragment
        counting at least :data:`FRAGMENT_OVERHEAD`. After a :class:`TooBig`, the rest of that message is dropped as
        it arrives.
    """

    def __init__(self, max_size: int) -> None:
        self._max = max_size
        self._buffer = bytearray()
        self._counted = 0  # bytes held plus the overhead of each fragment
        self._fragments = 0
        self._binary = 0
        self._dropping = False

    @property
    def partial(self) -> bool:
        """True while a message has started and not finished."""
        return self._fragments > 0 or self._binary > 0

    def text(self, data: str, finished: bool) -> bytes | bytearray | TooBig | None:
        """Take a text fragment; return the whole message (UTF-8) when *finished*, a :class:`TooBig`, or None."""
        if self._dropping:
            self._dropping = not finished
            return None
        if finished and not self._fragments:  # a whole message in one event: the common case
            if len(data) > self._max:  # characters <= bytes: no need to encode to know
                return self._too_big(len(data), 1, finished)
            encoded = data.encode("utf-8")
            if len(encoded) > self._max:
                return self._too_big(len(encoded), 1, finished)
            return encoded
        self._fragments += 1
        if self._counted + max(FRAGMENT_OVERHEAD, len(data)) > self._max:  # characters <= bytes: a safe test
            return self._too_big(self._counted + max(FRAGMENT_OVERHEAD, len(data)), self._fragments, finished)
        held = len(self._buffer)
        self._buffer += data.encode("utf-8")
        self._counted += max(FRAGMENT_OVERHEAD, len(self._buffer) - held)
        if self._counted > self._max:
            return self._too_big(self._counted, self._fragments, finished)
        if not finished:
            return None
        message, self._buffer = self._buffer, bytearray()
        self._counted = self._fragments = 0
        return message

    def utf8(self, data: bytes) -> bytes | TooBig:
        """Take a whole, unfragmented text message as its UTF-8 bytes (:class:`proxy.fastws.Utf8Text`)."""
        if len(data) > self._max:
            return self._too_big(len(data), 1, True)
        return data

    def binary(self, data: bytes | bytearray, finished: bool) -> Binary | None:
        """Take a binary fragment; return its message's size once *finished*. Its bytes are not kept."""
        self._binary += len(data)
        if not finished:
            return None
        size, self._binary = self._binary, 0
        return Binary(size)

    def _too_big(self, size: int, fragments: int, finished: bool) -> TooBig:
        self._buffer = bytearray()
        self._counted = self._fragments = 0
        self._dropping = not finished
        return TooBig(size, fragments)


def _cuts(data: bytes | bytearray, limit: int) -> Iterator[tuple[int, int]]:
    """(start, end) of each piece of UTF-8 *data*: at most *limit* bytes, never inside a character, except a
    character longer than *limit*, which is a piece of its own."""
    start = 0
    while start < len(data):
        end = min(start + limit, len(data))
        while end < len(data) and data[end] & 0xC0 == 0x80:  # a continuation byte: back up
            end -= 1
        if end == start:  # one character longer than the limit: send it whole
            end += 1
            while end < len(data) and data[end] & 0xC0 == 0x80:
                end += 1
        yield start, end
        start = end


def utf8_fragments(text: str, limit: int) -> list[str]:
    """Split *text* into pieces of at most *limit* bytes of UTF-8 each, never inside a character.

    RFC 6455 §5.4 lets a text message be cut anywhere, even inside a character, but wsproto takes str, so cuts
    fall on characters. When *limit* is smaller than a character (a server advertising 1 to 3 bytes), that
    character is a fragment of its own, over the limit by at most 3 bytes: every piece makes progress, and a
    limit that small is no real server's (Codex advertises 16 MiB).
    """
    data = text.encode("utf-8")
    return [data[start:end].decode("utf-8") for start, end in _cuts(data, limit)]


def fragments(text: str, limit: int) -> list[str]:
    """The frames to send *text* in: ``[text]`` when its UTF-8 fits *limit* bytes, else :func:`utf8_fragments`."""
    # 4 bytes per character at most: the common, small message is never encoded here.
    if len(text) * 4 <= limit or (text.isascii() and len(text) <= limit) or len(text.encode("utf-8")) <= limit:
        return [text]
    return utf8_fragments(text, limit)


def text_fragments(text: str | bytes | bytearray, limit: int) -> Iterator[tuple[str, bool]]:
    """The frames of a text message as (piece, is the last), one at a time; *text* as str or valid UTF-8.

    From bytes, each piece is decoded only when its turn comes, so a large message is never a str whole (a
    str costs 4 bytes per character once it holds one emoji), and a message over *limit* goes in pieces of at
    most :data:`FRAGMENT_BYTES` (any cut is valid, RFC 6455 §5.4): each piece costs a few copies of itself on
    its way into the socket queue, so small pieces keep that cost small. Cut as :func:`utf8_fragments`.
    """
    if isinstance(text, str):
        pieces = fragments(text, limit)
        for index, piece in enumerate(pieces):
            yield piece, index == len(pieces) - 1
        return
    if len(text) <= limit:
        yield text.decode("utf-8"), True
        return
    view = memoryview(text)
    for start, end in _cuts(text, min(limit, FRAGMENT_BYTES)):
        yield str(view[start:end], "utf-8"), end == len(text)
