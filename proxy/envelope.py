"""Sans-I/O JSON reading that never builds the document: validate a message and read its JSON-RPC envelope.

The proxy needs only a message's top-level ``id``, ``method`` and ``error.code``. Parsing whole messages into
Python objects costs many times their size (a 64 MiB ``[[],[],...]`` is 1.7 GiB as lists) and recurses once per
level of nesting. msgspec (a C parser) validates the whole text and keeps only those three members, as raw JSON
slices of the input; everything else is skipped without being built.

- :func:`envelope_of`: the envelope of valid JSON, or the parser's error; :mod:`proxy.linecheck` builds the
  stdin rules on it (exactly as strict as Codex's parser).
- :func:`read_envelope` for the server's messages: is it JSON, and what is its envelope. Lenient where the server
  is (any depth, lone surrogates), because the proxy only reports on it. It never raises on any input, however
  deep (:class:`RecursionError` is caught and answered).
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass

import msgspec


class _Top(msgspec.Struct):
    id: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    method: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    error: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET


class _Error(msgspec.Struct):
    code: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET


_TOP = msgspec.json.Decoder(_Top)
_ERROR = msgspec.json.Decoder(_Error)
_ANY = msgspec.json.Decoder(msgspec.Raw)  # validates, builds nothing
_SCALAR = msgspec.json.Decoder()


class Envelope(msgspec.Struct, frozen=True, kw_only=True):
    """The JSON-RPC envelope of a JSON text (all None / False for a value that is not an object).

    :ivar is_object: the top-level value is an object.
    :ivar has_id: it has an ``id`` member (of any value, ``null`` included).
    :ivar id: the ``id`` when it is a string or number (a number too large for msgspec is kept as its JSON
        text in a :class:`RawNumber`), else None.
    :ivar id_json: the ``id`` member's JSON text, when it has one (for ``-vv``).
    :ivar has_method: it has a ``method`` member (of any value).
    :ivar method: the ``method`` when it is a string.
    :ivar error_code: ``error.code`` when ``error`` is an object holding a ``code`` string or number.

    A msgspec Struct rather than a frozen dataclass: made once per message, and 10 times cheaper to make.
    """

    is_object: bool = False
    has_id: bool = False
    id: object = None
    id_json: str | None = None
    has_method: bool = False
    method: str | None = None
    error_code: object = None


@dataclass(frozen=True)
class RawNumber:
    """A JSON number outside what msgspec decodes (e.g. 30 digits), kept as its text so ids still compare."""

    text: str


NOT_AN_OBJECT = Envelope()


def _scalar(raw: msgspec.Raw | msgspec.UnsetType) -> object:
    """A string or number member decoded; None for anything else (objects and arrays are never built)."""
    if isinstance(raw, msgspec.UnsetType) or memoryview(raw)[0] not in _SCALAR_STARTS:
        return None
    try:
        return _SCALAR.decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError):  # an integer too large for msgspec
        return RawNumber(bytes(raw).decode("ascii", "replace"))


_SCALAR_STARTS = frozenset(b'"-0123456789')


def _envelope(top: _Top) -> Envelope:
    code: object = None
    error = top.error
    if error is not msgspec.UNSET and memoryview(error)[0] == _OPEN_BRACE:
        # a deep error object has no code we could read
        with contextlib.suppress(msgspec.ValidationError, msgspec.DecodeError, RecursionError):
            code = _scalar(_ERROR.decode(error).code)
    raw_id = top.id
    raw_method = top.method
    method = None if raw_method is msgspec.UNSET else _scalar(raw_method)
    if raw_id is msgspec.UNSET:
        return Envelope(
            is_object=True,
            has_method=raw_method is not msgspec.UNSET,
            method=method if isinstance(method, str) else None,
            error_code=code,
        )
    return Envelope(
        is_object=True,
        has_id=True,
        id=_scalar(raw_id),
        id_json=bytes(memoryview(raw_id)[:64]).decode("utf-8", "replace"),  # for messages; bounded
        has_method=raw_method is not msgspec.UNSET,
        method=method if isinstance(method, str) else None,
        error_code=code,
    )


_OPEN_BRACE = ord("{")


def envelope_of(data: str | bytes | bytearray) -> Envelope:
    """The envelope of the JSON text *data*, validated whole (RFC 8259) without building it.

    :raises msgspec.DecodeError: *data* is not valid JSON (its message says where).
    :raises RecursionError: *data* nests deeper than msgspec's parser recurses.
    """
    try:
        return _envelope(_TOP.decode(data))
    except msgspec.ValidationError:  # valid so far, but not an object: validate the rest, build nothing
        _ANY.decode(data)
        return NOT_AN_OBJECT


def read_envelope(text: str | bytes | bytearray) -> Envelope | None:
    """The envelope of a message from the server, or None when it is not JSON.

    Validates the whole text (RFC 8259) without building it. Any depth is accepted: past the C parser's
    recursion limit, :func:`_deep_envelope` reads the top level with a scanner that keeps one byte per level.
    """
    try:
        return envelope_of(text)
    except msgspec.DecodeError:
        return None
    except RecursionError:
        return _deep_envelope(text)


# -- deeper than msgspec goes: a token scanner with an explicit stack ---------------------------------------------

_TOKEN = re.compile(
    r'[ \t\n\r]*(?:(?P<s>"(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*")'
    r"|(?P<n>-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)"
    r"|(?P<l>true|false|null)|(?P<p>[\[\]{}:,]))"
)
_MEMBERS = ("id", "method", "error")


def _deep_envelope(text: str | bytes | bytearray) -> Envelope | None:
    """:func:`read_envelope` for text nested deeper than msgspec recurses: validate it and read its top level.

    One Python step per token and one byte of stack per level: slow for huge deep messages, never recursive.
    """
    if not isinstance(text, str):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            return None
    stack = bytearray()  # "[" or "{" per open level
    expect = "value"  # value | key | colon | comma | end
    opened = False  # the previous token opened an array or object (so "]" / "}" may close it empty)
    key: object = None
    members: dict[str, bytes] = {}  # top-level id/method/error: their JSON text
    member: tuple[str, int] | None = None  # the top-level member being read when it is an array or object
    pos = 0
    while (match := _TOKEN.match(text, pos)) is not None:
        pos = match.end()
        kind = match.lastgroup or "p"
        token = match.group(kind)
        just_opened, opened = opened, False
        if expect == "end":
            return None
        if kind == "p" and token in "]}":
            closes = ord("[" if token == "]" else "{")
            if stack[-1:] != bytes([closes]) or not (expect == "comma" or (just_opened and expect != "colon")):
                return None
            del stack[-1]
            expect = "comma" if stack else "end"
            if member is not None and len(stack) == 1:
                members[member[0]] = text[member[1] : pos].encode()
                member = None
        elif expect == "key":
            if kind != "s":
                return None
            if len(stack) == 1:
                key = _SCALAR.decode(token.encode())
            expect = "colon"
        elif expect == "colon":
            if token != ":":
                return None
            expect = "value"
        elif expect == "comma":
            if token != ",":
                return None
            expect = "key" if stack[-1] == ord("{") else "value"
        else:  # a value
            top_member = len(stack) == 1 and stack[0] == ord("{") and key in _MEMBERS
            if kind in ("s", "n", "l"):
                if top_member:
                    members[str(key)] = token.encode()
                expect = "comma" if stack else "end"
            elif token in "[{":
                if top_member:
                    member = (str(key), match.start(kind))
                stack.append(ord(token))
                expect = "key" if token == "{" else "value"
                opened = True
            else:
                return None
    if text[pos:].strip(" \t\n\r") or expect != "end":
        return None
    if not text.lstrip(" \t\n\r").startswith("{"):
        return NOT_AN_OBJECT
    return _envelope(_Top(**{name: msgspec.Raw(value) for name, value in members.items()}))
