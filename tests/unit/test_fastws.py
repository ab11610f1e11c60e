"""proxy.fastws against wsproto itself: same events, errors, close codes and state for any bytes, both roles.

The streams are built from valid frames (whole, fragmented, with control frames between fragments, large and
small), frames wsproto rejects (bad opcode, reserved bits, wrong masking, non-minimal lengths, invalid UTF-8,
bad close codes) and random bytes, then cut at arbitrary read boundaries. Both connections get the same chunks
and must agree after every one.
"""

from __future__ import annotations

import itertools
import re
import struct
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wsproto.connection import Connection as WsprotoConnection
from wsproto.connection import ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Event, Ping, Pong, TextMessage
from wsproto.utilities import LocalProtocolError

from proxy import fastws, masking

ROLES = [ConnectionType.CLIENT, ConnectionType.SERVER]


def frame(
    first: int, payload: bytes, masked: bool, key: bytes = b"\x01\x02\x03\x04", length: int | None = None
) -> bytes:
    """A raw frame; *length* overrides the encoding of the length (127 forces 8 bytes, 126 forces 2)."""
    size = len(payload)
    bit = 0x80 if masked else 0
    if length == 127 or (length is None and size >= 0x10000):
        header = struct.pack("!BBQ", first, bit | 127, size)
    elif length == 126 or (length is None and size >= 126):
        header = struct.pack("!BBH", first, bit | 126, size)
    else:
        header = bytes((first, bit | size))
    if not masked:
        return header + payload
    return header + key + masking.mask(payload, key)


texts = st.text(max_size=40) | st.text(min_size=120, max_size=300) | st.just("é" * 40000)
blobs = st.binary(max_size=40) | st.binary(min_size=120, max_size=300)
keys = st.binary(min_size=4, max_size=4)


@st.composite
def pieces(draw: st.DrawFn, masked: bool) -> bytes:
    """One piece of a stream: mostly valid frames, sometimes something wsproto rejects."""
    key = draw(keys)
    kind = draw(
        st.sampled_from(
            ["text"] * 6
            + ["binary"] * 3
            + ["fragmented", "fragmented", "ping", "pong", "close", "bad_utf8", "rsv", "bad_opcode", "wrong_mask"]
            + ["non_minimal", "random", "empty", "fragmented_control", "lone_continuation", "open_fragment"]
            + ["fragmented_bad_utf8"]
        )
    )
    if kind == "text":
        return frame(0x81, draw(texts).encode(), masked, key)
    if kind == "binary":
        return frame(0x82, draw(blobs), masked, key)
    if kind == "empty":
        return frame(draw(st.sampled_from([0x81, 0x82])), b"", masked, key)
    if kind in ("fragmented", "fragmented_control"):
        data = draw(texts).encode()
        cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=3)))
        parts = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        out = b""
        for index, part in enumerate(parts):
            opcode = 0x1 if index == 0 else 0x0
            fin = 0x80 if index == len(parts) - 1 else 0
            out += frame(fin | opcode, part, masked, draw(keys))
            if kind == "fragmented_control" and index < len(parts) - 1:
                out += frame(draw(st.sampled_from([0x89, 0x8A])), draw(st.binary(max_size=20)), masked, key)
        return out
    if kind in ("ping", "pong"):
        return frame(0x89 if kind == "ping" else 0x8A, draw(st.binary(max_size=125)), masked, key)
    if kind == "close":
        code = draw(st.sampled_from([1000, 1001, 1002, 1005, 1006, 1011, 3000, 4999, 999, 1004, 2999, 5000]))
        reason = draw(st.sampled_from([b"", b"bye", "é".encode(), b"\xff"]))
        payload = draw(st.sampled_from([b"", b"\x03", struct.pack("!H", code) + reason]))
        return frame(0x88, payload, masked, key)
    if kind == "bad_utf8":
        good = draw(st.text(max_size=20)).encode()
        return frame(0x81, good + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xc0\xaf"])), masked, key)
    if kind == "rsv":
        return frame(draw(st.sampled_from([0xC1, 0xA2, 0x91, 0xC9])), draw(blobs), masked, key)
    if kind == "bad_opcode":
        return frame(0x80 | draw(st.sampled_from([3, 7, 0xB, 0xF])), draw(blobs), masked, key)
    if kind == "wrong_mask":
        return frame(0x81, draw(texts).encode(), not masked, key)
    if kind == "non_minimal":
        payload = draw(st.binary(max_size=200))
        return frame(
            draw(st.sampled_from([0x81, 0x82, 0x01])), payload, masked, key, length=draw(st.sampled_from([126, 127]))
        )
    if kind == "open_fragment":  # a message that never finishes: what follows must be a continuation
        return frame(draw(st.sampled_from([0x01, 0x02])), draw(blobs), masked, key)
    if kind == "fragmented_bad_utf8":  # wsproto finds it in a fragment; nothing after it may be parsed
        return frame(0x01, "é".encode()[:1], masked, key) + frame(0x80, b"A", masked, key)
    if kind == "lone_continuation":
        return frame(0x80, draw(blobs), masked, key)
    return draw(st.binary(min_size=1, max_size=30))


@st.composite
def streams(draw: st.DrawFn) -> tuple[ConnectionType, bytes, list[int], list[bool], bool]:
    role = draw(st.sampled_from(ROLES))
    data = b"".join(draw(st.lists(pieces(masked=role is ConnectionType.SERVER), max_size=12)))
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=12)))
    drains = draw(st.lists(st.booleans(), min_size=len(cuts) + 1, max_size=len(cuts) + 1))
    return role, data, cuts, drains, draw(st.booleans())


def as_wsproto(event: Event | fastws.Utf8Text) -> Event:
    """What wsproto says for a fast-path event: a :class:`~proxy.fastws.Utf8Text` is a whole TextMessage."""
    if isinstance(event, fastws.Utf8Text):
        return TextMessage(data=event.decode("utf-8"), frame_finished=True, message_finished=True)
    return event


def step(connection: WsprotoConnection | fastws.Connection, chunk: bytes | None, drain: bool) -> object:
    """Feed one chunk (and read the events): the outcome, an exception included, as a comparable value."""
    try:
        connection.receive_data(chunk)
    except LocalProtocolError as exc:
        return ("raised", type(exc), str(exc))
    events: list[Event] = [as_wsproto(event) for event in connection.events()] if drain else []
    return (events, connection.state)


class Reader:
    """What a relay makes of a connection's events: whole messages, control frames and closes, in order."""

    def __init__(self, connection: WsprotoConnection | fastws.Connection) -> None:
        self.connection = connection
        self.items: list[object] = []
        self.raised: tuple[object, ...] | None = None
        self._parts: list[str | bytes | bytearray] = []

    def step(self, chunk: bytes | None, drain: bool) -> None:
        try:
            self.connection.receive_data(chunk)
        except LocalProtocolError as exc:
            self.raised = (type(exc), str(exc))
            return
        for event in self.connection.events() if drain else ():
            event = as_wsproto(event)
            if isinstance(event, (TextMessage, BytesMessage)):
                self._parts.append(event.data)
                if event.message_finished:
                    data = "".join(self._parts) if isinstance(event, TextMessage) else b"".join(self._parts)  # type: ignore[arg-type]
                    self.items.append((type(event).__name__, data))
                    self._parts = []
            elif isinstance(event, CloseConnection) and event.reason:
                # wsproto's UTF-8 error names a position within the bytes it was given at once: where reads were
                # cut, not a property of the stream (a held frame reaches it whole)
                self.items.append(CloseConnection(event.code, re.sub(r"position \d+", "position N", event.reason)))
            else:
                self.items.append(event)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(streams())
def test_receiving_matches_wsproto_for_any_stream_and_reads(
    case: tuple[ConnectionType, bytes, list[int], list[bool], bool],
) -> None:
    """After every read the messages, control frames and closes so far are wsproto's, or the start of them while
    a simple frame is held (the rest come when it ends); the state once they agree; at EOF, all of them."""
    role, data, cuts, drains, eof = case
    reference = Reader(WsprotoConnection(role))
    readers = [Reader(fastws.Connection(role)), Reader(fastws.Connection(role, utf8_text=True))]
    bounds = [0, *cuts, len(data)]
    steps: list[tuple[bytes | None, bool]] = [
        (data[start:end], drain) for (start, end), drain in zip(itertools.pairwise(bounds), drains, strict=True)
    ]
    steps.append((None if eof else b"", True))
    for index, (chunk, drain) in enumerate(steps):
        reference.step(chunk, drain)
        for reader in readers:
            reader.step(chunk, drain)
            assert reader.items == reference.items[: len(reader.items)], f"step {index}"
            if reader.items == reference.items:
                assert reader.raised == reference.raised, f"step {index}"
                assert reader.connection.state is reference.connection.state, f"step {index}"
    if eof:
        for reader in readers:
            assert (reader.items, reader.raised) == (reference.items, reference.raised)
            assert reader.connection.state is reference.connection.state


@pytest.mark.parametrize(("first", "payload"), [(0x81, b"x" * 70000), (0x82, bytes(range(256)) * 300)])
def test_a_simple_frame_arriving_in_pieces_is_one_event_once_whole(first: int, payload: bytes) -> None:
    data = frame(first, payload, False)
    for utf8_text in (False, True):
        fast = fastws.Connection(ConnectionType.CLIENT, utf8_text=utf8_text)
        for start in range(0, len(data) - 1, 4096):
            fast.receive_data(data[start : min(start + 4096, len(data) - 1)])
            assert list(fast.events()) == []  # wsproto would hand out a piece per read
        fast.receive_data(data[-1:])
        assert [as_wsproto(event) for event in fast.events()] == [
            TextMessage(data=payload.decode()) if first == 0x81 else BytesMessage(data=payload)
        ]


def test_a_text_frame_with_utf8_beyond_ascii_streams_like_wsproto() -> None:
    """wsproto checks UTF-8 as it arrives: such a frame is not held, so an error shows at the same read."""
    data = frame(0x81, b"x" * 70000 + "é".encode() + b"y" * 1000 + b"\xff" + b"z" * 5000, False)
    reference = Reader(WsprotoConnection(ConnectionType.CLIENT))
    fast = Reader(fastws.Connection(ConnectionType.CLIENT, utf8_text=True))
    for start in range(0, len(data), 4096):
        chunk = data[start : start + 4096]
        reference.step(chunk, True)
        fast.step(chunk, True)
        assert fast.items == reference.items
        assert fast.connection.state is reference.connection.state
    assert [item.code for item in fast.items if isinstance(item, CloseConnection)] == [1007]


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(ROLES), st.lists(pieces(masked=True), max_size=4), st.binary(max_size=200))
def test_trailing_data_and_stopping_at_the_first_close(role: ConnectionType, items: list[bytes], tail: bytes) -> None:
    """Bytes from the handshake response, and a reader that stops at the first CloseConnection, as the relay does."""
    data = b"".join(items) + tail
    if role is ConnectionType.CLIENT:
        data = b"".join(frame(0x81, t.encode(), False) for t in ("a", "bc")) + data
    reference = WsprotoConnection(role, trailing_data=data)
    fast = fastws.Connection(role, trailing_data=data)
    for _ in range(3):
        got: list[Event] = []
        want: list[Event] = []
        for connection, out in ((fast, got), (reference, want)):
            for event in connection.events():
                out.append(as_wsproto(event))
                if isinstance(event, CloseConnection):
                    break
        assert got == want
        assert fast.state is reference.state


def test_a_frame_over_the_hold_limit_arriving_in_pieces_streams_like_wsproto() -> None:
    data = frame(0x81, ("x" * fastws.HOLD_FRAME_BYTES + "é").encode(), False) + frame(0x81, b"after", False)
    reference = WsprotoConnection(ConnectionType.CLIENT)
    fast = fastws.Connection(ConnectionType.CLIENT)
    for start in range(0, len(data), 65536):
        chunk = data[start : start + 65536]
        assert step(fast, chunk, True) == step(reference, chunk, True)


# -- sending -----------------------------------------------------------------------------------------------

messages = st.one_of(
    st.builds(TextMessage, data=texts),
    st.builds(BytesMessage, data=blobs | st.binary(min_size=0x10000, max_size=0x10010)),
    st.builds(TextMessage, data=st.binary(max_size=20)),  # bytes in a TextMessage: wsproto sends binary
)


def decoded(role: ConnectionType, data: bytes) -> list[Event]:
    """What the peer of a *role* connection makes of *data* (wsproto, whole)."""
    peer = WsprotoConnection(ConnectionType.SERVER if role is ConnectionType.CLIENT else ConnectionType.CLIENT)
    peer.receive_data(data)
    return list(peer.events())


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(ROLES), st.lists(messages | st.builds(Ping, payload=st.binary(max_size=125)), max_size=6))
def test_frames_it_sends_decode_like_wsprotos(role: ConnectionType, events: list[Event]) -> None:
    fast, reference = fastws.Connection(role), WsprotoConnection(role)
    sent = [fast.send(event) for event in events]
    expected = [reference.send(event) for event in events]
    assert decoded(role, b"".join(sent)) == decoded(role, b"".join(expected))
    for ours, theirs in zip(sent, expected, strict=True):
        if role is ConnectionType.SERVER:
            assert ours == theirs  # unmasked: byte for byte
            continue
        size = 2 + {126: 2, 127: 8}.get(theirs[1] & 0x7F, 0)
        assert ours[:size] == theirs[:size]  # FIN, opcode, mask bit, length: the same header
        assert ours[1] & 0x80
        assert masking.mask(ours[size + 4 :], ours[size : size + 4]) == masking.mask(
            theirs[size + 4 :], theirs[size : size + 4]
        )


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(ROLES),
    st.lists(texts | st.builds(TextMessage, data=texts, message_finished=st.booleans()) | messages, max_size=6),
    st.booleans(),
)
def test_send_utf8_frames_decode_like_wsprotos_text_messages(
    role: ConnectionType, items: list[str | Event], as_parts: bool
) -> None:
    """send_utf8(UTF-8 bytes) is send(TextMessage(str)), also between the fragments of another message; so are the
    two pieces of send_utf8_parts written one after the other."""
    fast, reference = fastws.Connection(role), WsprotoConnection(role)

    def send_utf8(data: bytes) -> bytes:
        return b"".join(fast.send_utf8_parts(data)) if as_parts else fast.send_utf8(data)

    sent, expected = [], []
    for item in items:
        if isinstance(item, str):
            try:
                expected.append(reference.send(TextMessage(data=item)))
            except LocalProtocolError as exc:  # a whole message inside a fragmented one: the same refusal
                with pytest.raises(LocalProtocolError, match=str(exc)):
                    send_utf8(item.encode())
                continue
            sent.append(send_utf8(item.encode()))
        else:
            try:
                expected.append(reference.send(item))
            except (LocalProtocolError, TypeError) as exc:
                with pytest.raises(type(exc)):
                    fast.send(item)
                continue
            sent.append(fast.send(item))
    assert decoded(role, b"".join(sent)) == decoded(role, b"".join(expected))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(ROLES),
    st.lists(texts | st.builds(TextMessage, data=texts, message_finished=st.booleans()), max_size=4),
    st.lists(st.lists(texts, max_size=8), max_size=4),
    st.booleans(),
)
def test_send_texts_decodes_like_wsprotos_text_messages_one_by_one(
    role: ConnectionType, before: list[str | TextMessage], batches: list[list[str]], as_utf8: bool
) -> None:
    """send_texts(batch) is send(TextMessage(text)) of each text, joined, whether the texts come as str or as
    UTF-8, also after a fragment of another message (wsproto refuses the same)."""
    fast, reference = fastws.Connection(role), WsprotoConnection(role)
    sent, expected = [], []
    for item in before:
        event = TextMessage(data=item) if isinstance(item, str) else item
        try:
            expected.append(reference.send(event))
        except LocalProtocolError:
            continue
        sent.append(fast.send(event))
    for batch in batches:
        try:
            expected.append(b"".join([reference.send(TextMessage(data=text)) for text in batch]))
        except LocalProtocolError as exc:  # a whole message inside a fragmented one
            with pytest.raises(LocalProtocolError, match=str(exc)):
                fast.send_texts([text.encode() if as_utf8 else text for text in batch])
            return
        sent.append(fast.send_texts([text.encode() if as_utf8 else text for text in batch]))
    assert decoded(role, b"".join(sent)) == decoded(role, b"".join(expected))
    if role is ConnectionType.SERVER:
        assert b"".join(sent) == b"".join(expected)  # unmasked: byte for byte


def test_send_texts_gives_every_frame_its_own_random_mask() -> None:
    fast = fastws.Connection(ConnectionType.CLIENT)
    batches = [fast.send_texts(["same"] * 7) for _ in range(500)]  # 3500 keys: crosses the batch refills
    frames = [batch[at : at + 10] for batch in batches for at in range(0, len(batch), 10)]
    keys = [data[2:6] for data in frames]
    assert len(keys) == 3500
    assert len(set(keys)) > 3490  # 32 random bits each: a repeat or two at most by chance
    assert all(decoded(ConnectionType.CLIENT, data) == [TextMessage(data="same")] for data in frames)


def test_send_texts_refuses_a_lone_surrogate_like_send() -> None:
    fast = fastws.Connection(ConnectionType.CLIENT)
    with pytest.raises(UnicodeEncodeError):
        fast.send(TextMessage(data="\ud800"))
    with pytest.raises(UnicodeEncodeError):
        fast.send_texts(["ok", "\ud800"])


def test_every_client_frame_gets_its_own_random_mask() -> None:
    fast = fastws.Connection(ConnectionType.CLIENT)
    frames = [fast.send(TextMessage(data="same")) for _ in range(3000)]  # crosses the 1024-key batch refills
    keys = [data[2:6] for data in frames]
    assert len(set(keys)) > 2990  # 32 random bits each: a repeat or two at most by chance
    assert all(decoded(ConnectionType.CLIENT, data) == [TextMessage(data="same")] for data in frames)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(ROLES), st.lists(st.text(max_size=30), min_size=2, max_size=4), st.binary(max_size=10))
def test_fragmented_sends_go_to_wsproto(role: ConnectionType, parts: list[str], ping: bytes) -> None:
    """A message sent in fragments, a ping between them, then a whole one: wsproto's frames and rules."""
    fast, reference = fastws.Connection(role), WsprotoConnection(role)
    sequence: list[Event] = [TextMessage(data=part, message_finished=False) for part in parts[:-1]]
    sequence += [Ping(payload=ping), TextMessage(data=parts[-1]), BytesMessage(data=b"whole"), Pong(payload=b"")]
    sent = b"".join(fast.send(event) for event in sequence)
    expected = b"".join(reference.send(event) for event in sequence)
    assert decoded(role, sent) == decoded(role, expected)
    fast.send(TextMessage(data="a", message_finished=False))
    with pytest.raises(TypeError):  # a binary fragment inside a text message, as wsproto says
        fast.send(BytesMessage(data=b"b"))


def test_send_after_close_raises_like_wsproto() -> None:
    for connection in (fastws.Connection(ConnectionType.CLIENT), WsprotoConnection(ConnectionType.CLIENT)):
        connection.send(CloseConnection(code=1000))
        assert connection.state is ConnectionState.LOCAL_CLOSING
        with pytest.raises(LocalProtocolError):
            connection.send(TextMessage(data="late"))


@pytest.mark.parametrize("mask", [masking.mask, masking.python_mask], ids=["mask", "python_mask"])
def test_mask_is_its_own_inverse_at_every_size(mask: Callable[[bytes, bytes], bytes | bytearray]) -> None:
    key = b"\x9a\x00\xff\x13"
    for size in (0, 1, 3, 4, 5, 125, 1024, 1025, 70000):
        payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
        masked = mask(payload, key)
        assert len(masked) == size
        assert all(masked[i] == payload[i] ^ key[i % 4] for i in range(size))
        assert mask(bytes(masked), key) == payload


def test_websockets_c_masking_is_used_when_websockets_is_installed() -> None:
    assert masking._C_MASK is not None  # the test extra installs websockets


def test_frames_masked_in_pure_python_decode_like_wsprotos(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(masking, "_C_MASK", None)  # as without websockets installed
    fast = fastws.Connection(ConnectionType.CLIENT)
    for size in (0, 5, 125, 126, 1024, 1025, 70000):
        message = TextMessage(data="é" * (size // 2) + "x" * (size % 2))
        assert decoded(ConnectionType.CLIENT, fast.send(message)) == [message]
    server = fastws.Connection(ConnectionType.SERVER)
    server.receive_data(frame(0x82, bytes(range(256)) * 9, masked=True, key=b"\x01\x80\xfe\x7f"))
    assert list(server.events()) == [BytesMessage(data=bytes(range(256)) * 9)]
