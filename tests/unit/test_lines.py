"""LF-only line framing of stdin and one-line encoding of messages (proxy.lines)."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from proxy.lines import (
    SPLIT_LONG_LINE_BYTES,
    LineSplitter,
    LineTooLong,
    line_pieces,
    message_line,
    message_lines,
    split_lines,
)


def split_all(chunks: list[bytes], max_line_bytes: int = 1 << 20) -> list[tuple[int, bytes | bytearray] | LineTooLong]:
    splitter = LineSplitter(max_line_bytes)
    out: list[tuple[int, bytes | bytearray] | LineTooLong] = []
    for chunk in chunks:
        out += splitter.feed(chunk)
    return out + splitter.end()


def test_lines_split_on_lf_only_and_keep_unicode_separators() -> None:
    data = '{"a":"x\u2028y\u2029z\x0b\x0c\x1c\x85"}\n{"b":1}\n'.encode()
    assert split_all([data]) == [(1, '{"a":"x\u2028y\u2029z\x0b\x0c\x1c\x85"}'.encode()), (2, b'{"b":1}')]


def test_trailing_cr_stripped_once() -> None:
    assert split_all([b"a\r\nb\r\r\n"]) == [(1, b"a"), (2, b"b\r")]


def test_blank_and_whitespace_lines_skipped_but_counted() -> None:
    assert split_all([b"\n \t\n\r\n1\n"]) == [(4, b"1")]


def test_last_line_without_lf_is_kept() -> None:
    assert split_all([b"1\n2"]) == [(1, b"1"), (2, b"2")]
    assert split_all([b"1\n"]) == [(1, b"1")]
    assert split_all([]) == []


def test_line_over_the_limit_reported_with_number_and_size_and_dropped() -> None:
    out = split_all([b"ok\n", b"x" * 5, b"x" * 6, b"\nafter\n"], max_line_bytes=10)
    assert out == [(1, b"ok"), LineTooLong(2, 11), (3, b"after")]


def test_line_exactly_at_the_limit_passes_even_with_cr() -> None:
    assert split_all([b"x" * 10 + b"\r\n"], max_line_bytes=10) == [(1, b"x" * 10)]


def test_over_long_last_line_without_lf() -> None:
    assert split_all([b"x" * 30], max_line_bytes=10) == [LineTooLong(1, 30)]


def test_over_long_line_is_not_buffered() -> None:
    splitter = LineSplitter(10)
    for _ in range(1000):
        splitter.feed(b"y" * 1000)
    assert len(splitter._partial) == 0  # memory stays bounded while dropping
    assert splitter.feed(b"\n") == [LineTooLong(1, 1_000_000)]


lines_strategy = st.lists(
    st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\n"), max_size=40).map(lambda s: s.encode()),
    max_size=20,
)


@given(lines=lines_strategy, cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=30))
def test_any_chunking_gives_the_same_lines(lines: list[bytes], cuts: list[int]) -> None:
    data = b"".join(line + b"\n" for line in lines)
    whole = split_all([data])
    points = sorted({min(c, len(data)) for c in cuts})
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    assert split_all(chunks) == whole  # chunks may cut multi-byte characters anywhere
    expected = [
        (n, line.removesuffix(b"\r"))
        for n, line in enumerate(lines, 1)
        if line.removesuffix(b"\r") and not line.removesuffix(b"\r").isspace()
    ]
    assert whole == expected


@given(
    lengths=st.lists(
        st.one_of(st.integers(0, 40), st.integers(SPLIT_LONG_LINE_BYTES - 2, SPLIT_LONG_LINE_BYTES * 3)), max_size=12
    ),
    tail=st.binary(max_size=50),
)
def test_split_lines_is_bytes_split(lengths: list[int], tail: bytes) -> None:
    """Short lines, long lines and any mix of them split exactly as ``bytes.split`` does (the fast path for long
    lines must not lose, merge or reorder anything)."""
    data = b"".join(bytes([65 + i % 26]) * n + b"\n" for i, n in enumerate(lengths)) + tail.replace(b"\n", b"")
    assert split_lines(data) == data.split(b"\n")


@given(data=st.binary(max_size=3 * SPLIT_LONG_LINE_BYTES))
def test_split_lines_of_any_bytes_is_bytes_split(data: bytes) -> None:
    assert split_lines(data) == data.split(b"\n")


def test_message_line_plain_text_is_written_as_is() -> None:
    assert message_line('{"a":"\u2028é"}') == '{"a":"\u2028é"}\n'.encode()


def test_message_line_turns_each_raw_newline_into_a_space() -> None:
    line = message_line('{\n  "a": [1,\r\n 2],\n"b": "x"\n}')
    assert line == b'{   "a": [1,   2], "b": "x" }\n'


def test_message_line_keeps_what_a_reencoding_would_lose() -> None:
    # issue 9 #14: 1e999 used to come out as Infinity, a duplicate key vanished, a huge integer became a string.
    big = "1" * 5000
    text = '{"id":1,\n"n":1e999,"d":1,"d":2,\r"big":' + big + "}"
    assert message_line(text) == ('{"id":1, "n":1e999,"d":1,"d":2, "big":' + big + "}\n").encode()


def test_message_line_deep_json_with_a_newline_has_no_recursion() -> None:
    text = "[" * 5000 + "\n" + "]" * 5000
    assert message_line(text) == ("[" * 5000 + " " + "]" * 5000 + "\n").encode()


def test_message_line_non_json_with_newline_becomes_a_json_string() -> None:
    line = message_line("not json\nat all")
    assert line == b'"not json\\nat all"\n'
    assert json.loads(line) == "not json\nat all"


utf8_text = st.text(alphabet=st.characters(codec="utf-8"))


@given(
    st.lists(
        st.one_of(
            st.text().map(lambda t: t.encode("utf-8", "surrogatepass")),
            st.sampled_from([b'{"a":\n1}', b"not json\r\n", b"[1,\r2]", b"", b"\n"]),
        ),
        min_size=1,
        max_size=8,
    ),
    st.booleans(),
)
def test_message_lines_are_the_message_line_of_each_text(texts: list[bytes], as_bytearray: bool) -> None:
    """Several messages at once come out exactly as one :func:`message_line` per message, in order."""
    given_texts: list[bytes | bytearray] = [bytearray(t) if as_bytearray else t for t in texts]
    expected = b"".join(message_line(bytes(t)) for t in texts)
    joined = bytes(message_lines(given_texts))  # a single bytearray is extended in place: call once
    assert joined == expected
    assert joined.count(b"\n") == len(texts)


@given(
    st.recursive(
        # Text from the server comes from a UTF-8 decode (wsproto): it never holds a lone surrogate.
        st.none() | st.booleans() | st.integers() | utf8_text,
        lambda c: st.lists(c) | st.dictionaries(utf8_text, c),
    )
)
def test_message_line_is_always_exactly_one_line_holding_the_same_json(value: object) -> None:
    text = json.dumps(value, indent=1, ensure_ascii=False)
    line = message_line(text)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == value


def test_line_pieces_end_at_line_ends() -> None:
    data = b"aaaa\nbb\ncccccccccc\nd\n"
    assert [bytes(p) for p in line_pieces(data, 6)] == [b"aaaa\n", b"bb\n", b"cccccccccc\n", b"d\n"]
    assert [bytes(p) for p in line_pieces(data, 100)] == [data]
    assert [bytes(p) for p in line_pieces(b"ab\ncd", 3)] == [b"ab\n", b"cd"]
    assert list(line_pieces(b"", 3)) == []


@given(
    lines=st.lists(st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"") + b"\n"), max_size=30),
    size=st.integers(min_value=1, max_value=64),
)
def test_line_pieces_join_to_the_data_and_each_ends_a_line(lines: list[bytes], size: int) -> None:
    data = b"".join(lines)
    pieces = [bytes(p) for p in line_pieces(data, size)]
    assert b"".join(pieces) == data
    assert all(p.endswith(b"\n") for p in pieces)
