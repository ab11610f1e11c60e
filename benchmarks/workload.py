"""The bytes the benchmark sends: JSONL lines of an exact size, and the same messages as WebSocket frames.

Every line is a JSON object (a notification, so the proxy's drain waits for nothing) with a sequence number,
so a lost, split, reordered or extra line shows as a byte mismatch against the expected stream.
"""

from __future__ import annotations

import os
import struct

HEAD = b'{"method":"bench","params":{"seq":'
MIDDLE = b',"pad":"'
TAIL = b'"}}'
SEQ_DIGITS = 10
OVERHEAD = len(HEAD) + SEQ_DIGITS + len(MIDDLE) + len(TAIL)
PAD_ALPHABET = b"abcdefghijklmnopqrstuvwxyz0123456789"


def line(size: int, seq: int) -> bytes:
    """One JSON line of exactly *size* bytes, LF not included."""
    return HEAD + b"%10d" % seq + MIDDLE + _pad(size) + TAIL


def _pad(size: int) -> bytes:
    if size < OVERHEAD:
        raise ValueError(f"a line needs at least {OVERHEAD} bytes")
    count = size - OVERHEAD
    return (PAD_ALPHABET * (count // len(PAD_ALPHABET) + 1))[:count]


def lines_stream(size: int, count: int, first: int = 0) -> bytes:
    """*count* lines of *size* bytes each, LF-terminated, sequence numbers from *first*."""
    head, tail = HEAD, MIDDLE + _pad(size) + TAIL + b"\n"
    return b"".join([head + b"%10d" % seq + tail for seq in range(first, first + count)])


def _header(first_byte: int, length: int, masked: bool) -> bytes:
    bit = 0x80 if masked else 0
    if length < 126:
        return struct.pack("!BB", first_byte, bit | length)
    if length < 1 << 16:
        return struct.pack("!BBH", first_byte, bit | 126, length)
    return struct.pack("!BBQ", first_byte, bit | 127, length)


def client_frame(payload: bytes, mask: bytes) -> bytes:
    """A final text frame from a client: masked with the 4-byte *mask* (RFC 6455 §5.3)."""
    repeated = (mask * (len(payload) // 4 + 1))[: len(payload)]
    masked = (int.from_bytes(payload, "little") ^ int.from_bytes(repeated, "little")).to_bytes(len(payload), "little")
    return _header(0x81, len(payload), True) + mask + masked


def close_frame(code: int, mask: bytes) -> bytes:
    """A client's close frame with status *code* and no reason, masked with *mask* (RFC 6455 §5.5.1)."""
    payload = struct.pack("!H", code)
    return _header(0x88, len(payload), True) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def server_frame(payload: bytes) -> bytes:
    """A final text frame from a server: unmasked."""
    return _header(0x81, len(payload), False) + payload


def frames(size: int, count: int, first: int = 0) -> tuple[bytes, bytes]:
    """The lines of :func:`lines_stream` as (client frames to send, server frames expected back)."""
    masks = os.urandom(4 * count)
    out = []
    back = []
    for index in range(count):
        payload = line(size, first + index)
        out.append(client_frame(payload, masks[4 * index : 4 * index + 4]))
        back.append(server_frame(payload))
    return b"".join(out), b"".join(back)
