"""Hypothesis: stdin lines near every edge of Codex's parser, checked against an independent oracle (issue 9 #13).

The oracle parses with Python's :mod:`json` (which accepts more than Codex) and then applies the rules Codex
adds, as measured on 0.169.0: no ``NaN``/``Infinity``, no lone surrogate, at most 127 levels, a request id that
is a string or an i64 integer. The proxy must agree on every line, and never raise.
"""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.lines import LineSplitter, LineTooLong
from proxy.session import ID_MAX, ID_MIN, BadLine, Session

MAX_DEPTH = 127


class Refused(Exception):
    pass


def _constant(name: str) -> object:
    raise Refused(name)


def _int(text: str) -> object:
    return int(text) if len(text) <= 40 else float("inf")  # beyond any id; avoids int_max_str_digits


def _depth(text: str) -> int:
    """The deepest nesting in valid JSON *text*, by a plain scan (duplicate keys count too)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _surrogate(value: object) -> bool:
    if isinstance(value, str):
        return any(0xD800 <= ord(c) <= 0xDFFF for c in value)
    if isinstance(value, list):
        return any(_surrogate(v) for v in value)
    if isinstance(value, dict):
        return any(_surrogate(k) or _surrogate(v) for k, v in value.items())
    return False


def _pairs(pairs: list[tuple[str, object]]) -> dict[str, object]:
    # Codex's parser meets every string, also those of a duplicate key that a dict would drop.
    if any(_surrogate(key) or _surrogate(value) for key, value in pairs):
        raise Refused("surrogate")
    return dict(pairs)


def oracle(line: bytes | bytearray) -> bool:
    """True when Codex 0.169.0 would take *line* (as far as its parser and request ids go)."""
    try:
        text = line.decode("utf-8")
        value = json.loads(text, parse_constant=_constant, parse_int=_int, object_pairs_hook=_pairs)
    except (UnicodeDecodeError, ValueError, Refused):
        return False
    if _depth(text) > MAX_DEPTH or _surrogate(value):
        return False
    if isinstance(value, dict) and "method" in value and value.get("id") is not None:
        id_ = value["id"]
        if not isinstance(id_, str) and not (type(id_) is int and ID_MIN <= id_ <= ID_MAX):
            return False
    return True


scalars = st.one_of(
    st.sampled_from([b"0", b"-0", b"1e999", b"-1E-400", b"1.5", b"true", b"false", b"null", b'""']),
    st.integers(min_value=-(2**70), max_value=2**70).map(lambda n: str(n).encode()),
    st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b"01", b"1.", b".5", b"+1", b"0x10"]),
    st.integers(min_value=1, max_value=3000).map(lambda n: b"7" * n),
    st.sampled_from([b'"\\ud800"', b'"\\udc00"', b'"\\ud83d\\ude00"', b'"\\\\ud800"', b'"\\ud800\\u0041"']),
    st.sampled_from([b'"\xff"', b'"\xc3"', b'"\xed\xa0\x80"', b'"\x01"', b'"\\x"', b'"\t"']),
    st.text(max_size=8).map(lambda s: json.dumps(s).encode()),
)


@st.composite
def nested(draw: st.DrawFn) -> bytes:
    """A value nested around the limit, mixing arrays and objects, with a scalar or nothing inside."""
    depth = draw(st.one_of(st.integers(min_value=120, max_value=135), st.integers(min_value=0, max_value=10)))
    kinds = draw(st.lists(st.sampled_from([b"[", b"{"]), min_size=depth, max_size=depth))
    inner = draw(st.one_of(st.just(b""), scalars))
    text = inner
    for kind in reversed(kinds):
        if kind == b"[":
            text = b"[" + text + b"]"
        else:
            key = draw(st.sampled_from([b'"k"', b'"id"', b'"method"', b'"k"']))
            text = b"{" + key + b":" + (text or b"0") + b"}"
    return text


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    id_ = draw(st.one_of(scalars, st.just(b"[1]"), st.just(b"{}")))
    params = draw(st.one_of(scalars, nested()))
    members = [b'"id":' + id_, b'"method":"m"', b'"params":' + params]
    if draw(st.booleans()):
        members.append(b'"params":' + draw(scalars))  # a duplicate key
    members = draw(st.permutations(members))
    space = draw(st.sampled_from([b"", b" ", b"\t", b"\r", b" \r "]))
    return b"{" + (b"," + space).join(members) + b"}"


lines = st.one_of(requests(), nested(), scalars, st.binary(max_size=40))


@settings(max_examples=400, deadline=None)
@given(line=lines)
def test_each_line_is_sent_exactly_when_codex_would_take_it(line: bytes) -> None:
    session = Session()
    result = session.outgoing(1, line)
    assert isinstance(result, BadLine) != oracle(line), (line[:200], result)
    if not isinstance(result, BadLine):
        assert result == line  # sent byte for byte


@settings(max_examples=100, deadline=None)
@given(
    body=st.lists(lines, min_size=1, max_size=6),
    endings=st.lists(st.sampled_from([b"\n", b"\r\n", b"\r\r\n", b"\n\n"]), min_size=6, max_size=6),
    cut=st.integers(min_value=1, max_value=64),
)
def test_any_stdin_stream_gives_one_verdict_per_line_in_order(
    body: list[bytes], endings: list[bytes], cut: int
) -> None:
    # A raw LF ends a line; a raw CR inside a line is JSON whitespace (or an error), never a line end.
    stream = b"".join(line + ending for line, ending in zip(body, endings, strict=False))
    splitter = LineSplitter(1 << 20)
    items: list[tuple[int, bytes | bytearray] | LineTooLong] = []
    for start in range(0, len(stream), cut):
        items += splitter.feed(stream[start : start + cut])
    items += splitter.end()
    whole = [item for item in items if not isinstance(item, LineTooLong)]
    assert len(whole) == len(items)
    assert [number for number, _ in whole] == sorted({number for number, _ in whole})
    session = Session()
    for number, line in whole:
        verdict = session.outgoing(number, line)
        assert isinstance(verdict, BadLine) != oracle(line), (number, line[:100], verdict)
