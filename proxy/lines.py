"""Sans-I/O JSONL framing: bytes in, whole lines out; a WebSocket text message out as one line.

Lines end at LF only (``\\n``). Codex output contains raw U+2028 and U+2029, which :meth:`str.splitlines`
would wrongly treat as line breaks, so nothing here uses it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from .envelope import read_envelope


@dataclass(frozen=True)
class LineTooLong:
    """A line longer than the limit, dropped whole. ``size`` is its length in bytes without the LF."""

    number: int
    size: int


class LineSplitter:
    """Split a byte stream into numbered lines.

    A trailing CR is stripped; lines that are empty or whitespace only are skipped but still counted; a line
    over ``max_line_bytes`` is not buffered beyond the limit and comes out as :class:`LineTooLong`.
    Numbers start at 1.
    """

    def __init__(self, max_line_bytes: int) -> None:
        self._max = max_line_bytes
        self._partial = bytearray()
        self._number = 0
        self._discarding = 0  # bytes of an over-long line dropped so far; 0 when not dropping

    @property
    def line_count(self) -> int:
        """How many lines (including blank ones) have ended so far."""
        return self._number

    def feed(self, data: bytes) -> list[tuple[int, bytes | bytearray] | LineTooLong]:
        """Take the next chunk; return the lines it completes, in order."""
        out: list[tuple[int, bytes | bytearray] | LineTooLong] = []
        pieces = split_lines(data)
        last = pieces.pop()
        for piece in pieces:
            self._end_line(piece, out)
        self._hold(last)
        return out

    def end(self) -> list[tuple[int, bytes | bytearray] | LineTooLong]:
        """Call at EOF: the last line when it had no LF."""
        out: list[tuple[int, bytes | bytearray] | LineTooLong] = []
        if self._partial or self._discarding:
            self._end_line(b"", out)
        return out

    def _hold(self, piece: bytes) -> None:
        if self._discarding:
            self._discarding += len(piece)
        elif len(self._partial) + len(piece) > self._max + 1:  # +1: a CR that will be stripped
            self._discarding = len(self._partial) + len(piece)
            self._partial.clear()
        else:
            self._partial += piece

    def _end_line(self, piece: bytes, out: list[tuple[int, bytes | bytearray] | LineTooLong]) -> None:
        self._number += 1
        if self._discarding or len(self._partial) + len(piece) > self._max + 1:
            size = self._discarding + len(self._partial) + len(piece)
            self._discarding = 0
            self._partial.clear()
            out.append(LineTooLong(self._number, size))
            return
        line: bytes | bytearray
        if self._partial:
            self._partial += piece
            line, self._partial = self._partial, bytearray()  # hand the buffer over: no copy of a long line
            if line.endswith(b"\r"):
                del line[-1]
        else:
            line = piece[:-1] if piece.endswith(b"\r") else piece
        if len(line) > self._max:
            out.append(LineTooLong(self._number, len(line)))
        elif line and not line.isspace():
            out.append((self._number, line))


#: :func:`split_lines` looks for this many line ends with ``bytes.find`` before it judges the lines' length.
SPLIT_PROBE_LINES = 4
#: Lines shorter than this on average (in bytes) are split by ``bytes.split``; longer ones found with ``bytes.find``.
SPLIT_LONG_LINE_BYTES = 2048


def split_lines(data: bytes) -> list[bytes]:
    """``data.split(b"\\n")``, fast for long lines too.

    ``bytes.split`` on one byte compares byte by byte (216 µs for a 256 KiB read of 64 KiB lines here), while
    ``bytes.find`` uses memchr (47 µs for the same read, copies of the lines included); for short lines the
    Python loop around ``find`` costs more than the scan. So the first :data:`SPLIT_PROBE_LINES` line ends are
    found with ``find``, and if those lines are short the rest is left to ``split``.
    """
    pieces: list[bytes] = []
    find = data.find
    start = 0
    end = find(b"\n")
    while end >= 0:
        pieces.append(data[start:end])
        start = end + 1
        if len(pieces) == SPLIT_PROBE_LINES and start < SPLIT_PROBE_LINES * SPLIT_LONG_LINE_BYTES:
            return data.split(b"\n")  # short lines: one C loop beats a Python loop per line
        end = find(b"\n", start)
    pieces.append(data[start:])
    return pieces


def message_line(text: str | bytes | bytearray) -> bytes | bytearray:
    """A text message (str, or its UTF-8 bytes) as one JSONL line, LF included, in UTF-8.

    Codex never sends a raw CR or LF; another server might. In valid JSON (RFC 8259 §2) they can only be
    whitespace between tokens, so each becomes a space: the message stays exactly as sent (numbers such as
    ``1e999``, duplicate keys, huge integers), without a parse. Text with a raw CR or LF that is not JSON is
    written as a JSON string, so it still fills exactly one line. The text comes from a UTF-8 decode, so it
    holds no lone surrogate. A bytearray is extended in place and returned (no copy of a large message).
    """
    data = _one_line(text)
    if isinstance(data, bytearray):
        data += b"\n"
        return data
    return data + b"\n"


def message_lines(texts: Sequence[str | bytes | bytearray]) -> bytes | bytearray:
    """Text messages as JSONL, one :func:`message_line` each, in order: every byte copied once (a line each
    and then a join would copy every byte twice)."""
    if len(texts) == 1:
        return message_line(texts[0])
    return b"\n".join([*map(_one_line, texts), b""])  # the empty last item gives the last line its LF


def _one_line(text: str | bytes | bytearray) -> bytes | bytearray:
    """*text* as UTF-8 without a raw CR or LF (see :func:`message_line`), no LF added."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    if b"\n" in data or b"\r" in data:
        if read_envelope(data) is not None:
            return data.translate(_NEWLINES_TO_SPACES)
        import json  # rare (text with a raw LF that is not JSON): start-up does without json

        return json.dumps(data.decode("utf-8")).encode("ascii")
    return data


_NEWLINES_TO_SPACES = bytes.maketrans(b"\r\n", b"  ")


def line_pieces(data: bytes | bytearray, size: int) -> Iterator[memoryview]:
    """Cut *data* (whole LF-terminated lines) into pieces of about *size* bytes, each ending at a line end.

    A writer that stops between pieces never leaves half a line behind. A line longer than *size* is one piece;
    bytes after the last LF, if any, are the last piece.
    """
    view = memoryview(data)
    start = 0
    while start < len(data):
        end = start + size
        if end < len(data):
            cut = data.rfind(b"\n", start, end)
            if cut < 0:
                cut = data.find(b"\n", end)
            end = cut + 1 if cut >= 0 else len(data)
        yield view[start:end]
        start = end
