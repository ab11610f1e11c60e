"""Sans-I/O check of one stdin line, exactly as strict as Codex's parser (serde_json, measured on Codex 0.169.0).

RFC 8259 only (no ``NaN``/``Infinity``), UTF-8, no lone surrogate escapes, at most :data:`MAX_DEPTH` levels of
arrays and objects: Codex drops anything else without a reply, so the proxy refuses it with a reason instead.
The JSON is validated by msgspec without building it (:func:`proxy.envelope.envelope_of`); depth is counted
without a parse and without recursion. Nothing here raises on any input, however deep.
"""

from __future__ import annotations

import codecs
import re
from typing import Final

import msgspec

from .envelope import Envelope, envelope_of

#: The deepest nesting of arrays and objects Codex 0.169.0 answers (128 levels are dropped, "recursion limit").
MAX_DEPTH: Final = 127

_BRACKETS = bytes.maketrans(b"{}", b"[]")
_NOT_QUOTES_OR_BRACKETS = bytes(set(range(256)) - set(b'"[]{}'))
#: A string once only quotes and brackets are left (escaped quotes removed before).
_QUOTED = re.compile(rb'"[^"]*"')
#: An escape of a UTF-16 surrogate, preceded by an even number of backslashes (so it is an escape).
_SURROGATE = re.compile(rb"(?<!\\)(?:\\\\)*\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def _more_brackets_than(data: bytes | bytearray, limit: int) -> bool:
    """True when *data* holds more than *limit* opening brackets (``[`` and ``{``), strings included.

    At most *limit* + 1 searches (memchr speed): ``bytes.count`` looks at every byte and cost 98 µs of the
    115 µs check of a 64 KiB line; most lines have a handful of brackets.
    """
    if len(data) <= limit:
        return False
    seen = 0
    for bracket in (b"[", b"{"):
        at = data.find(bracket)
        while at >= 0:
            seen += 1
            if seen > limit:
                return True
            at = data.find(bracket, at + 1)
    return False


def depth_over(data: bytes | bytearray, limit: int = MAX_DEPTH) -> bool:
    """True when the valid JSON text *data* nests arrays and objects more than *limit* levels deep.

    Without a parse and without recursion: only quotes and brackets are kept, strings taken out, and innermost
    ``[]`` pairs removed level by level, so the work is at most *limit* passes of C code over the brackets, and
    the copies are no larger than the brackets and quotes of the text.
    """
    if not _more_brackets_than(data, limit):
        return False
    if b"\\" in data:  # only inside strings: drop escaped backslashes, then escaped quotes, so quotes pair up
        data = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    # Keep quotes and brackets only (smaller than the text), then drop what was inside strings.
    brackets = _QUOTED.sub(b"", data.translate(_BRACKETS, _NOT_QUOTES_OR_BRACKETS))
    if b"[" * (limit + 1) in brackets:
        return True
    for _ in range(limit):
        shorter = brackets.replace(b"[]", b"")
        if not shorter:
            return False
        if len(shorter) == len(brackets):  # cannot happen for valid JSON; do not loop on it
            return False
        brackets = shorter
    return True


def check_line(data: bytes | bytearray) -> Envelope | str:
    """Check one stdin line as Codex's parser would; return its envelope, or why Codex would drop it.

    The reason completes "line N is ...", e.g. ``not valid JSON (invalid character at column 13)``.
    *data* is the line without the LF, already known to be UTF-8 (msgspec does not check UTF-8 inside the
    strings it skips): see :func:`utf8_error`.
    """
    try:
        envelope = envelope_of(data)
    except msgspec.DecodeError as exc:
        return _why(data, exc)
    except RecursionError:
        return f"nested more than {MAX_DEPTH} levels deep (Codex's limit)"
    if depth_over(data):
        return f"nested more than {MAX_DEPTH} levels deep (Codex's limit)"
    return envelope


def utf8_error(data: bytes | bytearray) -> str | None:
    """Why *data* is not UTF-8 (completing "line N is ..."), or None when it is.

    Decoded 1 MiB at a time and thrown away: a whole decode of a large line would cost up to 4 bytes per
    character as a str.
    """
    if data.isascii():
        return None
    decoder = codecs.getincrementaldecoder("utf-8")()
    view = memoryview(data)
    step = 1 << 20
    for start in range(0, len(data), step):
        try:
            decoder.decode(view[start : start + step], final=start + step >= len(data))
        except UnicodeDecodeError as exc:
            return f"not valid UTF-8 (byte {start + exc.start + 1})"
    return None


def _why(data: bytes | bytearray, exc: msgspec.DecodeError) -> str:
    message = str(exc)
    if "surrogate" in message or (message == "Input data was truncated" and _lone_surrogate(data)):
        return "not valid JSON (a lone UTF-16 surrogate escape such as \\ud800)"
    message = message.removeprefix("JSON is malformed: ")
    # msgspec counts bytes from 0; say "column", from 1, as the rest of the stdin messages do.
    message = re.sub(r" \(byte (\d+)\)$", lambda m: f" at column {int(m.group(1)) + 1}", message)
    if message == "Input data was truncated":
        message = "it ends too early"
    return f"not valid JSON ({message})"


def _lone_surrogate(data: bytes | bytearray) -> bool:
    """True when *data* holds a surrogate escape that is not half of a high-low pair (checked only on errors)."""
    for match in _SURROGATE.finditer(data):
        escape = match.group()[-6:]
        if escape[2:3] in b"dD" and escape[3:4] in b"89abAB":  # high: a low one must follow
            follow = data[match.end() : match.end() + 6]
            if not (follow[:3] in (b"\\ud", b"\\uD") and follow[3:4] in b"cdefCDEF"):
                return True
        elif data[match.start() - 6 : match.start() - 4] != b"\\u":
            return True
    return False
