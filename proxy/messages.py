"""Sans-I/O fragmentation of WebSocket text messages (RFC 6455 §5.4): cutting outgoing ones, joining incoming ones.

Codex drops the connection on a frame over its advertised limit (16 MiB), so :func:`fragments` cuts larger
messages. wsproto hands over an incoming data frame as one or more events as its bytes arrive;
:class:`MessageAssembler` joins them into whole messages and stops holding a message once it passes the
limit, so memory stays bounded.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TooBig:
    """A message passed the limit; ``size`` is how much of it had arrived, in bytes (at least)."""

    size: int


@dataclass(frozen=True)
class Binary:
    """A whole binary message arrived; only its ``size`` in bytes is kept."""

    size: int


class MessageAssembler:
    """Join text fragments into messages; count binary ones.

    :param max_size: the largest message accepted, in bytes of UTF-8 (``--max-incoming-size``). After a
        :class:`TooBig`, the rest of that message is dropped as it arrives.
    """

    def __init__(self, max_size: int) -> None:
        self._max = max_size
        self._parts: list[str] = []
        self._chars = 0
        self._binary = 0
        self._dropping = False

    @property
    def partial(self) -> bool:
        """True while a message has started and not finished."""
        return bool(self._parts) or self._chars > 0 or self._binary > 0

    def text(self, data: str, finished: bool) -> str | TooBig | None:
        """Take a text fragment; return the whole message when *finished*, a :class:`TooBig`, or None."""
        if self._dropping:
            self._dropping = not finished
            return None
        if not finished:
            self._parts.append(data)
            self._chars += len(data)
            if self._chars > self._max:  # characters <= bytes: a safe early test
                return self._too_big(self._chars, finished)
            return None
        if self._parts:
            self._parts.append(data)
            data = "".join(self._parts)
            self._parts = []
            self._chars = 0
        # 4 bytes per character at most: encode only when the message may be over the limit.
        if len(data) * 4 > self._max and (size := len(data.encode("utf-8"))) > self._max:
            return self._too_big(size, finished)
        return data

    def binary(self, data: bytes | bytearray, finished: bool) -> Binary | None:
        """Take a binary fragment; return its message's size once *finished*. Its bytes are not kept."""
        self._binary += len(data)
        if not finished:
            return None
        size, self._binary = self._binary, 0
        return Binary(size)

    def _too_big(self, size: int, finished: bool) -> TooBig:
        self._parts = []
        self._chars = 0
        self._dropping = not finished
        return TooBig(size)


def utf8_fragments(text: str, limit: int) -> list[str]:
    """Split *text* into pieces of at most *limit* bytes of UTF-8 each, never inside a character.

    RFC 6455 §5.4 lets a text message be cut anywhere, even inside a character, but wsproto takes str, so cuts
    fall on characters. When *limit* is smaller than a character (a server advertising 1 to 3 bytes), that
    character is a fragment of its own, over the limit by at most 3 bytes: every piece makes progress, and a
    limit that small is no real server's (Codex advertises 16 MiB).
    """
    data = text.encode("utf-8")
    pieces: list[str] = []
    start = 0
    while start < len(data):
        end = min(start + limit, len(data))
        while end < len(data) and data[end] & 0xC0 == 0x80:  # a continuation byte: back up
            end -= 1
        if end == start:  # one character longer than the limit: send it whole
            end += 1
            while end < len(data) and data[end] & 0xC0 == 0x80:
                end += 1
        pieces.append(data[start:end].decode("utf-8"))
        start = end
    return pieces


def fragments(text: str, limit: int) -> list[str]:
    """The frames to send *text* in: ``[text]`` when its UTF-8 fits *limit* bytes, else :func:`utf8_fragments`."""
    # 4 bytes per character at most: the common, small message is never encoded here.
    if len(text) * 4 <= limit or len(text.encode("utf-8")) <= limit:
        return [text]
    return utf8_fragments(text, limit)
