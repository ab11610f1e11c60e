"""The spool file and the spooling outbox keep bytes in order within their limits (proxy.spool, proxy.outbox)."""

from __future__ import annotations

import os

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.errors import ExitStatus, LocalIOError
from proxy.outbox import Outbox
from proxy.spool import Spool


def test_spool_is_fifo_and_resets_when_empty(tmp_path: os.PathLike[str]) -> None:
    spool = Spool(limit=100, directory=str(tmp_path))
    spool.append(b"ab\n")
    spool.append(b"cdefg\n")
    assert len(spool) == 9
    assert spool.read(3) == b"ab\n"
    assert spool.read(100) == b"cdefg\n"
    assert len(spool) == 0 and spool.read(10) == b""
    spool.append(b"x" * 100)  # the limit counts what the file holds now, not all time
    assert spool.read(1000) == b"x" * 100
    spool.close()


def test_spool_file_is_unlinked(tmp_path: os.PathLike[str]) -> None:
    spool = Spool(limit=100, directory=str(tmp_path))
    spool.append(b"data")
    assert os.listdir(tmp_path) == []
    spool.close()


def test_spool_limit_is_a_clear_error(tmp_path: os.PathLike[str]) -> None:
    spool = Spool(limit=10, directory=str(tmp_path))
    spool.append(b"12345")
    with pytest.raises(LocalIOError) as caught:
        spool.append(b"123456")
    assert caught.value.status == ExitStatus.IOERR
    assert "spool is full (10 bytes, --spool-limit)" in caught.value.message


def test_spool_disk_failure_is_a_clear_error() -> None:
    spool = Spool(limit=10, directory="/nonexistent-dir-for-test")
    with pytest.raises(LocalIOError, match="cannot write the spool file in /nonexistent-dir-for-test"):
        spool.append(b"x")


async def drain(outbox: Outbox) -> bytes:
    out = bytearray()
    while len(outbox):
        out += await outbox.take()
        outbox.done()
    return bytes(out)


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(
        st.one_of(st.binary(min_size=1, max_size=50), st.integers(min_value=1, max_value=3)),
        max_size=60,
    )
)
def test_spooling_outbox_keeps_order_across_memory_and_disk(steps: list[bytes | int]) -> None:
    """Interleave puts (bytes) and takes (ints: how many) at random; output is input, in order."""

    async def main() -> None:
        outbox = Outbox(memory_limit=64, spool=Spool(limit=1 << 20))
        sent = bytearray()
        got = bytearray()
        for step in steps:
            if isinstance(step, bytes):
                outbox.put(step)
                sent += step
            else:
                for _ in range(step):
                    if len(outbox):
                        got += await outbox.take()
                        outbox.done()
        got += await drain(outbox)
        assert got == sent

    trio.run(main)


async def test_memory_stays_bounded_while_nothing_is_taken() -> None:
    spool = Spool(limit=1 << 30)
    outbox = Outbox(memory_limit=1000, spool=spool)
    for _ in range(1000):
        outbox.put(b"y" * 100)
    assert len(outbox._buffer) <= 1000
    assert len(spool) >= 100_000 - 1000
    assert len(await drain(outbox)) == 100_000


async def test_wait_below_gives_backpressure_and_close_releases() -> None:
    outbox = Outbox()
    outbox.put(b"x" * 10)
    with trio.move_on_after(0.05) as scope:
        await outbox.wait_below(5)
    assert scope.cancelled_caught
    data = await outbox.take()
    assert len(outbox) == 10  # still in flight
    outbox.done()
    await outbox.wait_below(5)
    assert data == b"x" * 10
    outbox.put(b"z")
    outbox.close()
    await outbox.wait_flushed()
    outbox.put(b"dropped")
    assert len(outbox) == 0


def test_spool_reads_whole_lines() -> None:
    spool = Spool(limit=1000)
    spool.append(b"one\ntwo\nthree\n")
    assert spool.read(9) == b"one\ntwo\n"  # cut after the last LF within 9 bytes
    assert spool.read(2) == b"three\n"  # a line longer than the size comes whole
    spool.append(b"tail without lf")
    assert spool.read(4) == b"tail without lf"  # nothing follows it: it comes anyway
    spool.close()
