"""Hypothesis: server byte streams after the 101 through the sans-I/O layer, as the relay runs it (issue 9).

wsproto (client side) -> :class:`~proxy.messages.MessageAssembler` -> :meth:`~proxy.session.Session.incoming`
-> :func:`~proxy.lines.message_line`, on streams that are valid (fragments, control frames between them, deep
nesting, raw LF/CR, non-JSON text), weird (UTF-8 split across frames, empty fragments) and random. Whatever the
stream: no exception, stdout gets whole lines only, every message completed before a close or an error comes
out exactly once, in order, and a protocol error ends with its close code.
"""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage
from wsproto.frame_protocol import CloseReason

from proxy.lines import message_line
from proxy.messages import MessageAssembler, TooBig, utf8_fragments
from proxy.session import Session

from .test_fragments import texts

CONTINUATION, TEXT, PING = 0x0, 0x1, 0x9


def frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """One unmasked server frame (RFC 6455 §5.2), payloads under 64 KiB."""
    first = (0x80 if fin else 0) | opcode
    size = len(payload)
    header = bytes([first, size]) if size < 126 else bytes([first, 126]) + size.to_bytes(2, "big")
    return header + payload


class Client:
    """The relay's read side without I/O: what it would write to stdout, and how the connection ended."""

    def __init__(self, max_size: int = 1 << 24) -> None:
        self.ws = Connection(ConnectionType.CLIENT)
        self.assembler = MessageAssembler(max_size)
        self.session = Session(until=frozenset({"done"}))
        self.stdout = bytearray()
        self.close_code: int | None = None
        self.too_big = False
        self.pings = 0

    def feed(self, data: bytes) -> None:
        if self.close_code is not None or self.too_big:
            return
        self.ws.receive_data(data)
        for event in self.ws.events():
            if isinstance(event, TextMessage):
                text = self.assembler.text(event.data, event.message_finished)
                if isinstance(text, TooBig):
                    self.too_big = True
                    return
                if text is not None:
                    self.session.incoming(text)
                    self.stdout += message_line(text)
            elif isinstance(event, BytesMessage):
                assert not isinstance(self.assembler.binary(event.data, event.message_finished), TooBig)
            elif isinstance(event, Ping):
                self.pings += 1
            elif isinstance(event, CloseConnection):
                self.close_code = int(event.code)
                return


def expected_line(message: str) -> bytes:
    """What stdout must get for *message*, when it is known to be JSON or known not to be."""
    if "\n" not in message and "\r" not in message:
        return message.encode() + b"\n"
    return message.replace("\n", " ").replace("\r", " ").encode() + b"\n"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet=st.characters(codec="utf-8"), max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(["id", "method", "k"]), inner),
    max_leaves=12,
)


@st.composite
def json_messages(draw: st.DrawFn) -> str:
    """Valid JSON text, with raw LF/CR as whitespace sometimes, deep sometimes."""
    kind = draw(st.sampled_from(["plain", "pretty", "deep", "envelope"]))
    if kind == "deep":
        depth = draw(st.integers(min_value=100, max_value=3000))
        space = draw(st.sampled_from(["", "\n", "\r\n", " "]))
        return '{"id":1,"result":' + ("[" + space) * depth + "]" * depth + "}"
    if kind == "envelope":
        id_ = draw(st.integers(min_value=0, max_value=3))
        return draw(
            st.sampled_from(
                [
                    f'{{"id":{id_},\n"result":{{"n":1e999,"n":2}}}}',
                    f'{{"id":{id_},"error":{{"code":-32001,\r"message":"Server overloaded; retry later."}}}}',
                    '{"method":"done","params":{}}',
                    '{"method":"x","params":{"s":"\u2028é😀"}}',
                ]
            )
        )
    text = json.dumps(draw(json_values), ensure_ascii=draw(st.booleans()), indent=1 if kind == "pretty" else None)
    return text.replace("\n", draw(st.sampled_from(["\n", "\r\n", "\r"])))


messages = st.one_of(json_messages(), texts)


@st.composite
def valid_streams(draw: st.DrawFn) -> tuple[bytes, list[str]]:
    """Messages in fragments (control frames between them, empty ones too), as the wire bytes."""
    server = Connection(ConnectionType.SERVER)
    sent = draw(st.lists(messages, min_size=1, max_size=6))
    wire = bytearray()
    for message in sent:
        limit = draw(st.integers(min_value=1, max_value=64))
        pieces = utf8_fragments(message, limit) if draw(st.booleans()) else [message]
        if draw(st.booleans()):
            pieces = ["", *pieces, ""]  # empty fragments are legal
        pieces = pieces or [""]
        for index, piece in enumerate(pieces):
            wire += server.send(TextMessage(data=piece, message_finished=index == len(pieces) - 1))
            if draw(st.integers(min_value=0, max_value=3)) == 0:
                wire += server.send(Ping(payload=b"p"))
            if draw(st.integers(min_value=0, max_value=7)) == 0:
                wire += server.send(BytesMessage(data=b"\x00\x01")) if index == len(pieces) - 1 else b""
    return bytes(wire), sent


def feed_in_chunks(client: Client, wire: bytes, cuts: list[int]) -> None:
    points = sorted({min(cut, len(wire)) for cut in cuts})
    for start, end in zip([0, *points], [*points, len(wire)], strict=True):
        client.feed(wire[start:end])


@settings(max_examples=200, deadline=None)
@given(stream=valid_streams(), cuts=st.lists(st.integers(min_value=0, max_value=20_000), max_size=30))
def test_valid_streams_give_every_message_once_in_order_as_one_line(
    stream: tuple[bytes, list[str]], cuts: list[int]
) -> None:
    wire, sent = stream
    client = Client()
    feed_in_chunks(client, wire, cuts)
    assert client.close_code is None and not client.too_big
    lines = bytes(client.stdout).split(b"\n")
    assert lines.pop() == b""  # whole lines only
    assert len(lines) == len(sent)
    for line, message in zip(lines, sent, strict=True):
        full = line + b"\n"
        if "\n" in message or "\r" in message:
            # JSON keeps its bytes (LF/CR as spaces); other text becomes one JSON string.
            assert full == expected_line(message) or json.loads(line) == message
        else:
            assert full == message.encode() + b"\n"


@settings(max_examples=100, deadline=None)
@given(stream=st.lists(json_messages(), min_size=1, max_size=4), limit=st.integers(min_value=1, max_value=16))
def test_json_with_raw_newlines_is_kept_byte_exact(stream: list[str], limit: int) -> None:
    server = Connection(ConnectionType.SERVER)
    wire = bytearray()
    for message in stream:
        pieces = utf8_fragments(message, limit)
        for index, piece in enumerate(pieces):
            wire += server.send(TextMessage(data=piece, message_finished=index == len(pieces) - 1))
    client = Client()
    client.feed(bytes(wire))
    assert bytes(client.stdout) == b"".join(expected_line(message) for message in stream)


@settings(max_examples=150, deadline=None)
@given(
    before=st.lists(texts, max_size=3),
    text=st.text(alphabet=st.characters(codec="utf-8", min_codepoint=0x80), min_size=1, max_size=8),
    split=st.integers(min_value=1, max_value=3),
    bad=st.sampled_from([b"\xff", b"\xc3(", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc3"]),
)
def test_utf8_split_across_frames_is_joined_and_bad_utf8_closes_1007(
    before: list[str], text: str, split: int, bad: bytes
) -> None:
    server = Connection(ConnectionType.SERVER)
    wire = b"".join(server.send(TextMessage(data=message)) for message in before)
    data = text.encode()
    cut = min(split, len(data) - 1) if len(data) > 1 else 0
    wire += frame(TEXT, data[:cut], fin=False) + frame(PING, b"x") + frame(CONTINUATION, data[cut:])
    wire += frame(TEXT, b"ok" + bad[:1], fin=False) + frame(CONTINUATION, bad[1:] + b"!")
    wire += frame(TEXT, b'"never delivered"')
    client = Client()
    for byte in range(0, len(wire), 7):
        client.feed(wire[byte : byte + 7])
    assert bytes(client.stdout) == b"".join(message_line(message) for message in [*before, text])
    assert client.close_code == CloseReason.INVALID_FRAME_PAYLOAD_DATA  # 1007


@settings(max_examples=300, deadline=None)
@given(prefix=valid_streams(), junk=st.binary(max_size=300), cuts=st.lists(st.integers(0, 5000), max_size=10))
def test_random_bytes_after_valid_messages_never_raise_and_keep_whole_lines(
    prefix: tuple[bytes, list[str]], junk: bytes, cuts: list[int]
) -> None:
    wire, sent = prefix
    client = Client()
    feed_in_chunks(client, wire + junk, cuts)
    out = bytes(client.stdout)
    assert out.endswith(b"\n")
    assert out.count(b"\n") >= len(sent)  # every message before the junk was delivered
    assert out.startswith(b"".join(message_line(message) for message in sent))  # once each, in order


def test_binary_and_too_big_results_are_not_lines() -> None:
    client = Client(max_size=300)
    server = Connection(ConnectionType.SERVER)
    client.feed(server.send(BytesMessage(data=b"\x00" * 10)))
    client.feed(b"".join(server.send(TextMessage(data="x", message_finished=False)) for _ in range(3)))
    assert client.too_big and client.stdout == b""
