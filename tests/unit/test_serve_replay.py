"""The replay log of a resumable session (proxy.serve.replay): counting, bounds, spooling, and the property that
matters: whatever the drop point and whatever N the client reports, the replay is exactly the missed suffix."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.errors import LocalIOError
from proxy.serve.replay import Appended, ReplayLog, RewindError
from proxy.spool import Spool
from proxy.upstream import Text


def make(memory: int, spool: int = 1 << 30) -> ReplayLog:
    return ReplayLog(memory, spool, lambda: Spool(spool))


def as_str(texts: list[Text]) -> list[str]:
    """Messages as str (the log gives back spooled ones as their UTF-8 bytes)."""
    return [text if isinstance(text, str) else bytes(text).decode("utf-8") for text in texts]


def take_all(log: ReplayLog, max_bytes: int = 1 << 20) -> list[str]:
    texts: list[str] = []
    while log.pending:
        batch = log.take(max_bytes)
        assert batch
        texts.extend(as_str(batch))
    return texts


def test_messages_are_counted_from_one_and_taken_in_order() -> None:
    log = make(1000)
    for text in ("a", "b", "c"):
        assert log.append(text) is Appended.KEPT
    assert (log.appended, log.first, log.cursor, log.pending) == (3, 1, 1, 3)
    assert log.take(1) == ["a"]  # at least one, even past max_bytes
    assert log.take(100) == ["b", "c"]
    assert log.take(100) == []
    assert log.pending == 0
    assert log.held == 3  # handed out, still held for a resume


def test_rewind_replays_the_suffix_and_forgets_what_was_received() -> None:
    log = make(1000)
    for index in range(1, 6):
        log.append(f"m{index}")
    assert take_all(log) == ["m1", "m2", "m3", "m4", "m5"]
    assert log.check_rewind(6) is RewindError.TOO_NEW
    assert log.check_rewind(2) is None
    log.rewind(2)
    assert (log.first, log.cursor) == (3, 3)
    assert take_all(log) == ["m3", "m4", "m5"]
    assert log.check_rewind(1) is RewindError.TOO_OLD
    log.rewind(5)
    assert log.held == 0
    assert log.memory_bytes == 0


def test_detached_overflow_goes_to_the_spool_and_comes_back_in_order() -> None:
    log = make(10)
    log.attached = False
    texts = ["0123456789", "x", "line\nfeed", "caf\u00e9 \u2028", "tail"]
    assert [log.append(text) for text in texts] == [Appended.KEPT] * 5
    assert log.memory_bytes == 10
    assert log.spooled_bytes > 0
    log.attached = True
    log.rewind(0)
    assert take_all(log, 3) == texts
    assert log.spooled_bytes == 0


def test_attached_memory_forgets_handed_out_messages_first_then_says_slow() -> None:
    log = make(10)
    assert log.append("aaaa") is Appended.KEPT
    assert log.take(100) == ["aaaa"]
    assert log.append("bbbbbb") is Appended.KEPT
    assert log.append("cccc") is Appended.KEPT  # "aaaa" (handed out) forgotten for room
    assert log.first == 2
    assert log.append("d") is Appended.SLOW  # kept, in the spool: nothing lost
    log.attached = False
    log.rewind(1)
    assert take_all(log) == ["bbbbbb", "cccc", "d"]


def test_a_backlog_being_replayed_is_not_a_slow_consumer() -> None:
    log = make(10)
    log.attached = False
    for index in range(5):
        log.append(f"{index:09d}")
    log.attached = True
    assert as_str(log.take(100)) == ["000000000"]
    assert log.append("more......") is Appended.KEPT  # queued behind the spooled backlog
    assert take_all(log) == [f"{index:09d}" for index in range(1, 5)] + ["more......"]


def test_a_big_message_read_back_is_not_a_slow_consumer_until_taken() -> None:
    log = make(10)
    log.attached = False
    log.append("0123456789abcdef")  # over the memory limit on its own: spooled
    log.attached = True
    assert as_str(log.take(100)) == ["0123456789abcdef"]  # read back, then taken
    log.rewind(0)
    assert log.cursor == 1
    assert log.append("x") is Appended.KEPT  # the backlog is not taken yet: queued behind it
    assert take_all(log) == ["0123456789abcdef", "x"]
    assert log.append("0123456789") is Appended.KEPT
    assert log.append("y") is Appended.SLOW  # caught up: memory full of untaken messages again


def test_one_message_larger_than_memory_goes_out_alone_when_nothing_else_waits() -> None:
    log = make(4)
    assert log.append("0123456789") is Appended.KEPT
    assert log.append("x") is Appended.SLOW  # the big one is still waiting
    log.attached = False
    log.rewind(0)
    log.attached = True
    assert take_all(log) == ["0123456789", "x"]


def test_past_the_spool_limit_the_log_overflows() -> None:
    log = make(5, spool=20)
    log.attached = False
    assert log.append("12345") is Appended.KEPT
    assert log.append("abcdefgh") is Appended.KEPT  # 10 bytes as a record
    assert log.append("abcdefgh") is Appended.KEPT  # 20
    assert log.append("a") is Appended.OVERFLOW
    assert log.appended == 3


def test_a_failing_disk_raises_local_io_error(tmp_path: pytest.TempPathFactory) -> None:
    log = ReplayLog(1, 1000, lambda: Spool(1000, directory="/nonexistent/dir"))
    log.attached = False
    with pytest.raises(LocalIOError):
        log.append("ab")


def test_close_forgets_everything() -> None:
    log = make(1)
    log.attached = False
    log.append("abc")
    log.close()
    assert log.memory_bytes == 0
    assert log.spooled_bytes == 0


# -- the property ------------------------------------------------------------------------------------------


@dataclass
class Client:
    """What the phone has: every message it received, in order."""

    received: list[str]


texts = st.text(alphabet=st.sampled_from('ab\n\u00e9\u2028{}"'), max_size=40)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("append"), texts),
        st.tuples(st.just("take"), st.integers(1, 120)),
        st.tuples(st.just("read"), st.integers(0, 10)),  # the client gets this many of the handed-out ones
        st.tuples(st.just("drop"), st.integers(0, 10)),  # lost in flight: how many of the unread it got first
        st.tuples(st.just("resume"), st.just(0)),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(ops=operations, memory=st.integers(1, 200), spool=st.integers(0, 400))
def test_any_drop_point_any_n_replays_exactly_the_missed_suffix(
    ops: list[tuple[str, object]], memory: int, spool: int
) -> None:
    log = make(memory, spool)
    appended: list[str] = []
    client = Client([])
    in_flight: list[str] = []  # handed out, not yet read by the client
    detached = False
    ended = False
    for op, arg in ops:
        if ended:
            break
        if op == "append":
            assert isinstance(arg, str)
            result = log.append(arg)
            if result is Appended.OVERFLOW:
                ended = True  # the session ends: nothing more to check
                break
            appended.append(arg)
            if result is Appended.SLOW:
                assert not detached
                detached = True  # closed as a slow consumer
                log.attached = False
                in_flight.clear()
        elif op == "take" and not detached:
            assert isinstance(arg, int)
            in_flight.extend(as_str(log.take(arg)))
        elif op == "read" and not detached:
            assert isinstance(arg, int)
            client.received.extend(in_flight[:arg])
            del in_flight[:arg]
        elif op == "drop" and not detached:
            assert isinstance(arg, int)
            client.received.extend(in_flight[:arg])
            in_flight.clear()
            detached = True
            log.attached = False
        elif op == "resume" and detached:
            first_before = log.first
            n = len(client.received)
            problem = log.check_rewind(n)
            if problem is not None:
                # Only messages handed out while attached are ever forgotten; never while detached.
                assert problem is RewindError.TOO_OLD
                assert n < first_before - 1
                return
            log.attached = True
            log.rewind(n)
            detached = False
        # Invariants: counts agree, and memory stays within its bound (plus one record read back).
        assert log.appended == len(appended)
        assert log.first - 1 <= log.cursor - 1 <= log.appended
        assert log.spooled_bytes <= spool
        assert log.memory_bytes <= memory + max((len(t.encode()) for t in appended), default=0)
    if not detached:
        client.received.extend(in_flight)
        client.received.extend(take_all(log))
        assert client.received == appended


@settings(max_examples=200, deadline=None)
@given(messages=st.lists(texts, max_size=30), cut=st.data())
def test_with_room_for_everything_a_resume_is_never_refused(messages: list[str], cut: st.DataObject) -> None:
    log = make(1 << 20)
    for text in messages:
        log.append(text)
    handed = as_str(log.take(cut.draw(st.integers(1, 2000))))
    got = cut.draw(st.integers(0, len(handed)))
    log.attached = False
    log.append("after")
    assert log.check_rewind(got) is None
    log.attached = True
    log.rewind(got)
    assert take_all(log) == [*messages[got:], "after"]


def test_messages_as_utf8_bytes_as_the_relay_passes_them() -> None:
    log = make(8)
    log.attached = False
    texts: list[bytes] = [b'{"a":1}', '{"b":"caf\u00e9"}'.encode(), b'{"c":"x\ny"}']
    for text in texts:
        assert log.append(text) is Appended.KEPT
    assert log.memory_bytes == 7
    log.attached = True
    log.rewind(0)
    assert take_all(log) == [text.decode() for text in texts]
