"""proxy.framing on its own: the sending half of the fast path (the differential tests against wsproto that
cover it through :class:`proxy.fastws.Connection` are in test_fastws.py)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from wsproto.connection import Connection, ConnectionType
from wsproto.events import TextMessage

from proxy.framing import MASK_BATCH_BYTES, TEXT, Framer, header


def server_reads(data: bytes) -> list[object]:
    peer = Connection(ConnectionType.SERVER)
    peer.receive_data(data)
    return list(peer.events())


def test_one_call_with_more_frames_than_a_key_batch_gives_each_its_own_key() -> None:
    count = MASK_BATCH_BYTES // 4 * 3  # three batches' worth of keys, in one call
    data = Framer(masked=True).texts(["x"] * count)
    frames = [data[at : at + 7] for at in range(0, len(data), 7)]  # 2 header bytes, 4 key bytes, "x"
    assert len(frames) == count
    assert len({frame[2:6] for frame in frames}) > count - 10  # 32 random bits each
    assert server_reads(data) == [TextMessage(data="x")] * count


@given(st.integers(min_value=0, max_value=1 << 20), st.sampled_from([0, 0x80]))
def test_headers_use_the_minimal_length_encoding(size: int, mask_bit: int) -> None:
    head = header(TEXT, size, mask_bit)
    assert head[0] == TEXT
    assert head[1] & 0x80 == mask_bit
    if size < 126:
        assert head[1] & 0x7F == size and len(head) == 2
    elif size < 0x10000:
        assert head[1] & 0x7F == 126 and int.from_bytes(head[2:], "big") == size
    else:
        assert head[1] & 0x7F == 127 and int.from_bytes(head[2:], "big") == size


def test_a_server_frames_byte_for_byte_like_wsproto() -> None:
    reference = Connection(ConnectionType.SERVER)
    texts = ["", "a" * 125, "é" * 63, "b" * 126, "c" * 70000]
    assert Framer(masked=False).texts(texts) == b"".join(reference.send(TextMessage(data=t)) for t in texts)
