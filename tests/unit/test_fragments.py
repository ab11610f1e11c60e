"""Outgoing fragmentation (RFC 6455 §5.4): pieces within the byte limit, cut on characters, joined equal."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from wsproto.connection import Connection, ConnectionType
from wsproto.events import TextMessage

from proxy.messages import FRAGMENT_BYTES, fragments, text_fragments, utf8_fragments

texts = st.text(alphabet=st.characters(codec="utf-8"), max_size=200)


@given(text=texts, limit=st.integers(min_value=4, max_value=64))
def test_pieces_join_to_the_text_and_fit_the_limit(text: str, limit: int) -> None:
    pieces = utf8_fragments(text, limit)
    assert "".join(pieces) == text
    assert all(0 < len(piece.encode()) <= limit for piece in pieces)


@given(text=texts, limit=st.integers(min_value=4, max_value=64))
def test_wsproto_peer_reassembles_the_fragments(text: str, limit: int) -> None:
    client = Connection(ConnectionType.CLIENT)
    server = Connection(ConnectionType.SERVER)
    pieces = utf8_fragments(text, limit) or [""]
    wire = b"".join(
        client.send(TextMessage(data=piece, message_finished=i == len(pieces) - 1)) for i, piece in enumerate(pieces)
    )
    server.receive_data(wire)
    events = list(server.events())
    assert all(isinstance(e, TextMessage) for e in events)
    assert "".join(e.data for e in events if isinstance(e, TextMessage)) == text
    assert isinstance(events[-1], TextMessage) and events[-1].message_finished


def test_small_messages_are_one_frame_and_large_ones_cut() -> None:
    assert fragments("abc", 3) == ["abc"]
    assert fragments("", 3) == [""]
    assert fragments("abcd", 3) == ["abc", "d"]
    assert fragments("€€", 4) == ["€", "€"]  # 3 bytes each: never cut inside a character


@given(text=texts, limit=st.integers(min_value=1, max_value=8))
def test_a_limit_smaller_than_a_character_still_makes_progress(text: str, limit: int) -> None:
    # issue 9 #2: a 101 advertising 1..3 bytes used to loop forever on "é". A character longer than the limit is
    # its own fragment (at most 4 bytes); every other fragment fits.
    pieces = utf8_fragments(text, limit)
    assert "".join(pieces) == text
    for piece in pieces:
        size = len(piece.encode())
        assert 0 < size <= limit or len(piece) == 1


def test_tiny_limits_cut_between_characters() -> None:
    assert fragments("é", 1) == ["é"]
    assert fragments("aé😀b", 1) == ["a", "é", "😀", "b"]
    assert fragments("aé😀b", 3) == ["aé", "😀", "b"]
    assert fragments("aaé", 3) == ["aa", "é"]


def test_bytes_over_the_limit_go_in_pieces_of_at_most_a_mebibyte() -> None:
    line = ("é" * (1024 * 1024) + "x").encode()  # 2 MiB + 1 byte
    pieces = list(text_fragments(line, 16 * 1024 * 1024))
    assert pieces == [(line.decode(), True)]  # under the frame limit: one frame
    pieces = list(text_fragments(line, 1024 * 1024 + 7))
    assert "".join(piece for piece, _ in pieces) == line.decode()
    assert [last for _, last in pieces] == [False] * (len(pieces) - 1) + [True]
    assert all(len(piece.encode()) <= FRAGMENT_BYTES for piece, _ in pieces)
