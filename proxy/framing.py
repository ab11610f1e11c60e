"""Whole data frames to send (RFC 6455 §5.2), sans-I/O: the sending half of :mod:`proxy.fastws`'s fast path.

A :class:`Framer` belongs to one end of a connection. The client end masks every frame with a fresh random
32-bit key (§5.3), taken from :func:`os.urandom` in batches; the server end masks nothing. Fragments, control
frames and close frames are wsproto's to make: :class:`proxy.fastws.Connection` decides which frames come here.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence

from .masking import mask

#: Random bytes fetched per :func:`os.urandom` call for masking keys: 1024 keys.
MASK_BATCH_BYTES = 4096
#: The first byte of a whole (FIN) text frame and of a whole binary frame (§5.2).
TEXT = 0x81
BINARY = 0x82


def header(first: int, size: int, mask_bit: int) -> bytes:
    """A frame header: *first* (FIN, RSV bits, opcode), the mask bit (0x80 or 0) and the payload length *size*
    in bytes, in its minimal encoding (7, 16 or 64 bits, §5.2); without the masking key."""
    if size < 126:
        return bytes((first, size | mask_bit))
    if size < 0x10000:
        return struct.pack("!BBH", first, 126 | mask_bit, size)
    return struct.pack("!BBQ", first, 127 | mask_bit, size)


class Framer:
    """The whole frames one end of a connection sends.

    :param masked: this is the client end: every frame is masked with its own random key (§5.3).
    """

    def __init__(self, masked: bool) -> None:
        self._mask_bit = 0x80 if masked else 0
        self._keys = b""  # a batch of random bytes; keys are taken from _key_at on, each used once
        self._key_at = 0

    def frame(self, first: int, payload: bytes | bytearray) -> bytes:
        """One whole frame of *payload* (already UTF-8 for a text frame), first byte *first*."""
        return b"".join(self.parts(first, payload))

    def parts(self, first: int, payload: bytes | bytearray) -> tuple[bytes, bytes | bytearray]:
        """:meth:`frame` as two pieces to write one after the other: the header with the masking key, and the
        payload, masked if need be (a big payload is then not copied once more to join them)."""
        head = header(first, len(payload), self._mask_bit)
        if not self._mask_bit:
            return head, payload
        key = self._take_keys(1)
        return head + key, mask(payload, key)

    def texts(self, texts: Sequence[str | bytes | bytearray]) -> bytes:
        """Whole text frames for each of *texts* (a str is encoded; bytes must be valid UTF-8), in order, joined.

        One call for the messages of one read: per-message calls (a frame, a key, a join) cost a relay about a
        tenth of its CPU per 100 B message.

        :raises UnicodeEncodeError: a str holds a lone surrogate.
        """
        pieces: list[bytes | bytearray] = []
        append = pieces.append
        if not self._mask_bit:
            for text in texts:
                data = text.encode("utf-8") if isinstance(text, str) else text
                size = len(data)
                append(bytes((TEXT, size)) if size < 126 else header(TEXT, size, 0))
                append(data)
            return b"".join(pieces)
        keys = self._take_keys(len(texts))
        at = 0
        for text in texts:
            data = text.encode("utf-8") if isinstance(text, str) else text
            size = len(data)
            key = keys[at : at + 4]
            at += 4
            append(bytes((TEXT, size | 0x80)) if size < 126 else header(TEXT, size, 0x80))
            append(key)
            append(mask(data, key))
        return b"".join(pieces)

    def _take_keys(self, count: int) -> bytes:
        """*count* fresh random masking keys, 4 bytes each, never handed out before."""
        need = 4 * count
        at = self._key_at
        if at + need > len(self._keys):
            self._keys = os.urandom(max(MASK_BATCH_BYTES, need))  # the old batch's rest is never used
            at = 0
        self._key_at = at + need
        return self._keys[at : at + need]
