"""Reassembly of fragmented messages (proxy.messages), with wsproto on both ends of the wire."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, Ping, TextMessage

from proxy.messages import FRAGMENT_OVERHEAD, Binary, MessageAssembler, TooBig, utf8_fragments

messages = st.lists(st.text(alphabet=st.characters(codec="utf-8"), max_size=60), min_size=1, max_size=8)


def receive(wire: bytes, cuts: list[int], max_size: int = 1 << 20) -> list[str | TooBig | Binary]:
    """Feed *wire* to a client wsproto in chunks cut at *cuts*; collect what the assembler gives."""
    client = Connection(ConnectionType.CLIENT)
    assembler = MessageAssembler(max_size)
    out: list[str | TooBig | Binary] = []
    points = sorted({min(c, len(wire)) for c in cuts})
    for a, b in zip([0, *points], [*points, len(wire)], strict=True):
        client.receive_data(wire[a:b])
        for event in client.events():
            result: str | TooBig | Binary | None = None
            if isinstance(event, TextMessage):
                text = assembler.text(event.data, event.message_finished)
                result = text.decode() if isinstance(text, (bytes, bytearray)) else text
            elif isinstance(event, BytesMessage):
                result = assembler.binary(event.data, event.message_finished)
            if result is not None:
                out.append(result)
    return out


@settings(max_examples=300)
@given(
    texts=messages,
    limit=st.integers(min_value=4, max_value=40),
    cuts=st.lists(st.integers(min_value=0, max_value=3000), max_size=40),
    ping_every=st.integers(min_value=1, max_value=5),
)
def test_any_fragmentation_and_chunking_gives_the_same_messages(
    texts: list[str], limit: int, cuts: list[int], ping_every: int
) -> None:
    server = Connection(ConnectionType.SERVER)
    wire = bytearray()
    for text in texts:
        pieces = utf8_fragments(text, limit) or [""]
        for i, piece in enumerate(pieces):
            wire += server.send(TextMessage(data=piece, message_finished=i == len(pieces) - 1))
            if i % ping_every == 0:
                wire += server.send(Ping(payload=b"p"))  # control frames may come between fragments
    assert receive(bytes(wire), cuts) == texts


def test_too_big_is_reported_once_and_the_rest_dropped() -> None:
    server = Connection(ConnectionType.SERVER)
    wire = b"".join(server.send(TextMessage(data="x" * 10, message_finished=False)) for _ in range(5))
    wire += server.send(TextMessage(data="end", message_finished=True))
    wire += server.send(TextMessage(data="next"))
    # Small fragments count at least FRAGMENT_OVERHEAD bytes each: here the fourth passes the limit.
    limit = 3 * FRAGMENT_OVERHEAD + 25
    assert receive(wire, [], max_size=limit) == [TooBig(4 * FRAGMENT_OVERHEAD, 4), "next"]


def test_single_frame_over_the_limit_counts_utf8_bytes() -> None:
    assembler = MessageAssembler(max_size=10)
    assert assembler.text("ééééé", True) == "ééééé".encode()  # 10 bytes: at the limit
    assert assembler.text("éééééé", True) == TooBig(12)
    assert assembler.text("ok", True) == b"ok"  # a whole message: nothing left to drop


def test_binary_messages_give_their_size_only() -> None:
    server = Connection(ConnectionType.SERVER)
    wire = server.send(BytesMessage(data=b"\x00" * 7, message_finished=False))
    wire += server.send(BytesMessage(data=b"\x01" * 5))
    wire += server.send(TextMessage(data="after"))
    assert receive(wire, [3, 9]) == [Binary(12), "after"]


def test_partial_flag() -> None:
    assembler = MessageAssembler(1000)  # room for a few fragments and their overhead
    assert not assembler.partial
    assembler.text("ab", False)
    assert assembler.partial
    assembler.text("c", True)
    assert not assembler.partial


def test_empty_fragments_count_against_the_limit() -> None:
    # issue 9 #20: 2.5 million empty continuation frames used to add memory and never trip the limit.
    assembler = MessageAssembler(256 * 1024 * 1024)  # the --max-incoming-size default
    results = [assembler.text("", False) for _ in range(2_500_000)]
    too_big = [r for r in results if r is not None]
    assert len(too_big) == 1 and isinstance(too_big[0], TooBig)
    assert too_big[0].size > 256 * 1024 * 1024 and too_big[0].fragments > 2_000_000
    assert assembler.text("", True) is None  # the rest of that message is dropped
    assert assembler.text("next", True) == b"next"


def test_a_message_in_two_byte_fragments_passes_whole_under_the_default_limit() -> None:
    assembler = MessageAssembler(256 * 1024 * 1024)
    pieces = ["é"] * (512 * 1024)  # 1 MiB of UTF-8 in 2-byte fragments
    assert all(assembler.text(piece, False) is None for piece in pieces)
    assert assembler.text("", True) == "é".encode() * (512 * 1024)
