"""The benchmark's byte checker (``benchmarks.clients.check_chunks``): whatever the chunking, the bytes sent
pass, and a wrong, missing or extra byte fails the run with a message saying where."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from benchmarks.clients import BenchFailure, check_chunks


def reader(chunks: list[bytes]) -> Callable[[], bytes]:
    it = iter(chunks)
    return lambda: next(it, b"")


def cut(data: bytes, at: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(a % (len(data) + 1) for a in at)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


@given(st.binary(min_size=1, max_size=2000), st.lists(st.integers(min_value=0), max_size=20))
def test_the_bytes_sent_pass_however_they_are_cut(data: bytes, at: list[int]) -> None:
    check_chunks(reader(cut(data, at)), data, "tool")


@given(
    st.binary(min_size=1, max_size=2000),
    st.lists(st.integers(min_value=0), max_size=20),
    st.integers(min_value=0),
    st.integers(min_value=1, max_value=255),
)
def test_one_changed_byte_fails_and_is_located(data: bytes, at: list[int], where: int, flip: int) -> None:
    where %= len(data)
    wrong = bytearray(data)
    wrong[where] ^= flip
    line = data.count(b"\n", 0, where) + 1
    with pytest.raises(BenchFailure, match=rf"^tool: byte {where} \(line {line}\) differs"):
        check_chunks(reader(cut(bytes(wrong), at)), data, "tool")


def test_missing_bytes_fail() -> None:
    with pytest.raises(BenchFailure, match=r"^tool: output ended after 3 of 4 bytes \(lost or held back\)$"):
        check_chunks(reader([b"ab\n"]), b"ab\nc", "tool")


def test_extra_bytes_fail() -> None:
    with pytest.raises(BenchFailure, match=r"^tool: 2 bytes more than were sent$"):
        check_chunks(reader([b"a\n", b"b\nc\n"]), b"a\nb\n", "tool")
