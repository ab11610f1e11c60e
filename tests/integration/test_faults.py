"""Never lose a message: the proxy as a subprocess against a scripted server, under load and faults.

A stdout reader that stalls while the server pushes a gigabyte (the proxy keeps reading the socket, spools to
disk, stays small, and delivers every byte in order), a spool limit, keepalive pings, overload retries, size
limits both ways, and malformed input the server may send. Helpers come from :mod:`.test_scripted_server` and
:mod:`.proxy_process`.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from pathlib import Path

import pytest
import trio
from wsproto.events import CloseConnection, Ping, Pong

from .proxy_process import finish, finished, running_proxy
from .scripted_server import ScriptedConnection, open_scripted_server
from .test_scripted_server import (
    CLOSE,
    CONTINUATION,
    GUARD,
    TEXT,
    compact,
    frame,
    jsonl,
    one_line,
    receiving_into,
    run_fine_then_raw,
    run_scripted,
    sock_args,
    stderr_lines,
)

MiB = 1024 * 1024

#: Guard against hangs for the gigabyte test (2 slow shared cores); never what it measures.
BIG_GUARD = 300


# -- messages with a sequence number, of a fixed size, cheap to build -----------------------------------------

HEAD = b'{"method":"test/spam","params":{"seq":'
MID = b',"pad":"'
TAIL = b'"}}'
SEQ_DIGITS = 5


class Spam:
    """Messages ``{"method":"test/spam","params":{"seq":NNNNN,"pad":"ppp..."}}`` of exactly *size* bytes."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.pad = b"p" * (size - len(HEAD) - SEQ_DIGITS - len(MID) - len(TAIL))

    def payload(self, seq: int) -> bytes:
        return HEAD + b"%05d" % seq + MID + self.pad + TAIL

    def frames(self, first: int, count: int) -> bytes:
        """Messages *first* .. *first+count-1*, each one unmasked text frame, in one piece."""
        return b"".join(frame(TEXT, self.payload(seq)) for seq in range(first, first + count))

    def check_line(self, line: bytes | bytearray, seq: int) -> None:
        """*line* (LF included) must be message *seq*, byte for byte."""
        assert len(line) == self.size + 1, f"line {seq} is {len(line)} bytes, not {self.size + 1}"
        newline = line.find(b"\n")
        assert newline == self.size, f"line {seq} has a LF at {newline}"
        got = bytes(line[len(HEAD) : len(HEAD) + SEQ_DIGITS])
        assert got == b"%05d" % seq, f"line {seq} carries seq {got!r}: lost or reordered"
        assert line == self.payload(seq) + b"\n", f"line {seq} differs from what was sent"


# -- /proc helpers ----------------------------------------------------------------------------------------


def peak_rss_kib(pid: int) -> int | None:
    """The process's peak resident set size (``VmHWM``) in KiB; None once it is gone or a zombie."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return None


def open_files_under(pid: int, folder: Path) -> list[tuple[str, int]]:
    """(link text, size in bytes) of each file the process holds open under *folder*."""
    found: list[tuple[str, int]] = []
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(fd_dir / fd)
            size = os.stat(fd_dir / fd).st_size  # follows the magic link, deleted or not
        except OSError:
            continue
        if target.startswith(f"{folder}/"):
            found.append((target, size))
    return found


# -- 1. a stalled stdout reader while the server pushes 1 GiB ---------------------------------------------------


async def read_spam(stdout: trio.abc.ReceiveStream, spam: Spam, count: int) -> str:
    """Read *count* spam lines from *stdout*, checking each; return the SHA-256 of the bytes read."""
    digest = hashlib.sha256()
    pending = bytearray()
    line_size = spam.size + 1
    total = count * line_size
    got = 0
    seq = 0
    while got < total:
        chunk = await stdout.receive_some(min(MiB, total - got))
        assert chunk, f"stdout ended after {got} of {total} bytes ({seq} whole lines)"
        got += len(chunk)
        digest.update(chunk)
        pending += chunk
        while len(pending) >= line_size:
            spam.check_line(pending[:line_size], seq)
            del pending[:line_size]
            seq += 1
    assert not pending
    return digest.hexdigest()


async def test_stalled_reader_gigabyte_is_spooled_in_order_with_bounded_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server sends 1 GiB as fast as it can while nobody reads stdout.

    The server finishing its sends proves the proxy kept reading the socket; the proxy's peak RSS under 64 MiB
    proves the backlog went to disk (a spool file in $TMPDIR, deleted from the start); then every message comes
    out on stdout, in order, byte for byte.
    """
    spam = Spam(64 * 1024 - 1)  # 64 KiB per stdout line
    count = 16 * 1024  # 1 GiB
    batch = 16  # messages per write: 1 MiB
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    monkeypatch.setenv("TMPDIR", str(spool_dir))
    sent_digest: list[str] = []
    all_sent = trio.Event()
    codes: list[int | None] = []
    peak: list[int] = [0]

    async def handler(conn: ScriptedConnection) -> None:
        await conn.accept()
        digest = hashlib.sha256()
        for first in range(0, count, batch):
            data = spam.frames(first, batch)
            for seq in range(first, first + batch):
                digest.update(spam.payload(seq) + b"\n")
            await conn.send_raw(data)
        sent_digest.append(digest.hexdigest())
        all_sent.set()
        codes.append(await conn.receive_close())  # answers keepalive pings meanwhile

    async def sample_rss(pid: int) -> None:
        while (rss := peak_rss_kib(pid)) is not None:
            peak[0] = max(peak[0], rss)
            await trio.sleep(0.2)

    with trio.fail_after(BIG_GUARD):
        async with (
            open_scripted_server(tmp_path, handler) as server,
            running_proxy(sock_args(server)) as proxy,
            trio.open_nursery() as nursery,
        ):
            pid = proxy.process.pid
            nursery.start_soon(sample_rss, pid)
            # Nobody reads stdout until the server has sent all of it.
            await all_sent.wait()
            spool = open_files_under(pid, spool_dir)
            assert len(spool) == 1, f"expected one spool file open in $TMPDIR, got {spool}"
            link, size = spool[0]
            assert link.endswith(" (deleted)"), f"the spool file has a name: {link}"
            assert size >= 512 * MiB, f"only {size} bytes spooled to disk"
            assert proxy.process.stdout is not None
            read_digest = await read_spam(proxy.process.stdout, spam, count)
            peak[0] = max(peak[0], peak_rss_kib(pid) or 0)
            await proxy.close_stdin()
            ended = await finish(proxy)
            await server.wait_handled()
            nursery.cancel_scope.cancel()
    result = finished(proxy, ended)
    print(f"proxy peak RSS (VmHWM) while relaying 1 GiB to a stalled reader: {peak[0]} KiB")
    assert result.status == 0, result.stderr_text
    assert result.stdout == b""  # nothing after the last spam line
    assert result.stderr == b""
    assert [read_digest] == sent_digest
    assert codes == [1000]
    assert 0 < peak[0] < 64 * 1024, f"peak RSS {peak[0]} KiB"
    assert os.listdir(spool_dir) == []


async def test_a_client_that_writes_everything_before_it_reads_is_never_stalled(tmp_path: Path) -> None:
    """16 MiB of requests written while stdout stays unread: their responses are owed to stdout, far more than
    the 2 MiB the proxy keeps in memory. Stdin gives stdout time to catch up (STDOUT_CATCH_UP_SECONDS), but
    never waits for it: the whole input is taken, then every response comes out in order and the proxy exits 0."""
    pad = "p" * (16 * 1024)
    count = 1024  # 16 MiB each way
    requests = b"".join(
        b'{"id":%d,"method":"test/echo","params":{"pad":"%s"}}\n' % (n, pad.encode()) for n in range(count)
    )
    responses = b"".join(b'{"id":%d,"result":{"pad":"%s"}}\n' % (n, pad.encode()) for n in range(count))

    async def answer(conn: ScriptedConnection) -> None:
        await conn.accept()
        while (message := await conn.receive_message()) is not None:
            assert isinstance(message, str)
            request = json.loads(message)
            await conn.send_text(compact({"id": request["id"], "result": request["params"]}))

    with trio.fail_after(GUARD):
        async with open_scripted_server(tmp_path, answer) as server, running_proxy(sock_args(server)) as proxy:
            await proxy.send(requests)  # returns once the proxy has read all of it
            await proxy.close_stdin()
            ended = await finish(proxy)
            await server.wait_handled()
    result = finished(proxy, ended)
    assert result.status == 0, result.stderr_text
    assert result.stdout == responses
    assert result.stderr == b""


# -- 2. --spool-limit ------------------------------------------------------------------------------------------


async def test_spool_limit_exits_74_with_whole_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 1 MiB spool and a stalled reader while the server pushes 32 MiB: exit 74, close 1001, whole lines."""
    spam = Spam(10_000)  # lines of 10001 bytes: a pipe's 64 KiB never ends on a line boundary
    count = 32 * MiB // spam.size
    batch = 50
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    monkeypatch.setenv("TMPDIR", str(spool_dir))
    codes: list[int | None] = []
    closed = trio.Event()  # the proxy's close frame arrived

    async def push(conn: ScriptedConnection) -> None:
        try:
            for first in range(0, count, batch):
                await conn.send_raw(spam.frames(first, min(batch, count - first)))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the proxy is gone

    async def handler(conn: ScriptedConnection) -> None:
        await conn.accept()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(push, conn)
            codes.append(await conn.receive_close())
            closed.set()
            nursery.cancel_scope.cancel()

    with trio.fail_after(GUARD):
        async with (
            open_scripted_server(tmp_path, handler) as server,
            running_proxy(sock_args(server, "--spool-limit", str(MiB), "--ping-interval", "0")) as proxy,
        ):
            # stdout stays unread while the proxy gives up: its close frame, then its exit. A proxy that waits
            # for the reader to finish a line first gets one after this window (which decides nothing).
            with trio.move_on_after(5):
                await closed.wait()
                await proxy.wait()
            ended = await finish(proxy)  # what it left on stdout, or all it still writes, to EOF
            await server.wait_handled()
    result = finished(proxy, ended)
    assert result.status == 74, result.stderr_text
    line = one_line(result.stderr)
    assert "spool is full (1048576 bytes, --spool-limit)" in line, line
    assert codes == [1001]
    lines = result.stdout_lines  # asserts stdout ends with a whole line
    for seq, text in enumerate(lines):
        spam.check_line(text + b"\n", seq)
    assert len(lines) < count
    assert os.listdir(spool_dir) == [], "the spool file outlived the proxy"


# -- 3. keepalive -------------------------------------------------------------------------------------------


async def test_keepalive_gives_up_on_a_silent_server(tmp_path: Path) -> None:
    """The server completes the handshake, then never reads nor answers: exit 1, "stopped answering"."""
    release = trio.Event()
    events: list[Ping | CloseConnection] = []

    async def handler(conn: ScriptedConnection) -> None:
        await conn.accept()
        await release.wait()  # read nothing until the proxy has exited
        while (event := await conn.receive_event()) is not None:
            assert isinstance(event, (Ping, CloseConnection)), event
            events.append(event)

    with trio.fail_after(GUARD):
        async with (
            open_scripted_server(tmp_path, handler) as server,
            running_proxy(sock_args(server, "--ping-interval", "0.5", "--ping-timeout", "0.5")) as proxy,
        ):
            ended = await finish(proxy)  # stdin stays open: only the keepalive can end this
            release.set()
            await server.wait_handled()
    result = finished(proxy, ended)
    assert result.status == 1, result.stderr_text
    assert result.stdout == b""
    line = one_line(result.stderr)
    assert "stopped answering" in line
    assert str(server.path) in line
    assert [type(event) for event in events] == [Ping, CloseConnection]
    assert isinstance(events[1], CloseConnection)
    assert events[1].code == 1001


@pytest.mark.parametrize("answer", ["one-pong", "two-pongs", "two-pongs-and-unsolicited"])
async def test_keepalive_stays_up_while_pings_are_answered(tmp_path: Path, answer: str) -> None:
    """Pings answered (once, twice, plus pongs nobody asked for): the proxy stays up and keeps pinging."""
    wanted = 4
    pings: list[bytes] = []
    enough = trio.Event()
    codes: list[int | None] = []

    async def handler(conn: ScriptedConnection) -> None:
        await conn.accept()
        if answer == "two-pongs-and-unsolicited":
            await conn.send_event(Pong(payload=b"unsolicited before any ping"))
        while (event := await conn.receive_event()) is not None:
            if isinstance(event, CloseConnection):
                codes.append(event.code)
                break
            assert isinstance(event, Ping), event
            pings.append(bytes(event.payload))
            for _ in range(1 if answer == "one-pong" else 2):
                await conn.send_event(event.response())
            if answer == "two-pongs-and-unsolicited":
                await conn.send_event(Pong(payload=b"unsolicited %d" % len(pings)))
            if len(pings) >= wanted:
                enough.set()

    with trio.fail_after(GUARD):
        async with (
            open_scripted_server(tmp_path, handler) as server,
            running_proxy(sock_args(server, "--ping-interval", "0.5", "--ping-timeout", "1.5")) as proxy,
        ):
            await enough.wait()  # at least 4 intervals of silence from the server's side
            assert proxy.process.poll() is None, "the proxy exited although its pings were answered"
            await proxy.close_stdin()
            ended = await finish(proxy)
            await server.wait_handled()
    result = finished(proxy, ended)
    assert result.status == 0, result.stderr_text
    assert result.stdout == b""
    assert result.stderr == b""
    assert len(pings) >= wanted
    assert codes == [1000]


async def test_ping_interval_zero_never_pings(tmp_path: Path) -> None:
    received: list[object] = []
    codes: list[int | None] = []

    async def handler(conn: ScriptedConnection) -> None:
        await conn.accept()
        while (event := await conn.receive_event()) is not None:
            if isinstance(event, CloseConnection):
                codes.append(event.code)
                break
            received.append(event)
            if isinstance(event, Ping):
                await conn.send_event(event.response())

    with trio.fail_after(GUARD):
        async with (
            open_scripted_server(tmp_path, handler) as server,
            running_proxy(sock_args(server, "--ping-interval", "0", "--ping-timeout", "0.1")) as proxy,
        ):
            await trio.sleep(2)  # an idle connection, watched for pings
            await proxy.close_stdin()
            ended = await finish(proxy)
            await server.wait_handled()
    result = finished(proxy, ended)
    assert result.status == 0, result.stderr_text
    assert received == []
    assert codes == [1000]
    assert result.stderr == b""


# -- 4. overload retry ------------------------------------------------------------------------------------------

OVERLOADED = {"id": 7, "error": {"code": -32001, "message": "Server overloaded; retry later."}}
SUCCESS = {"id": 7, "result": {"ok": True}}
OTHER_ERROR = {"id": 8, "error": {"code": -32603, "message": "Internal error"}}
#: Request 7, spelled with spaces and a raw non-ASCII character: a retry must resend it byte for byte.
REQUEST_7 = '{"method": "thread/start", "id": 7, "params": {"cwd": "/tmp/é"}}'
REQUEST_8 = '{"method":"thread/list","id":8}'
#: The documented minimum waits before retries 1, 2, 3: half of 50, 100, 200 ms.
MIN_BACKOFF = (0.025, 0.05, 0.1)


@pytest.mark.parametrize(
    ("args", "copies", "last_answer"),
    [([], 4, SUCCESS), (["--overload-retries", "2"], 3, OVERLOADED), (["--no-overload-retry"], 1, OVERLOADED)],
    ids=["default", "retries-2", "no-retry"],
)
async def test_overloaded_request_is_resent_with_backoff(
    tmp_path: Path, args: list[str], copies: int, last_answer: dict[str, object]
) -> None:
    """The server answers the first 3 copies of request 7 with -32001, the 4th with a result."""
    copies_7: list[tuple[float, str]] = []
    copies_8: list[str] = []
    codes: list[int | None] = []

    async def handler(conn: ScriptedConnection) -> None:
        await conn.accept()
        while (message := await conn.receive_message()) is not None:
            assert isinstance(message, str)
            if '"id":8' in message:
                copies_8.append(message)
                await conn.send_text(compact(OTHER_ERROR))
                continue
            copies_7.append((trio.current_time(), message))  # before the answer: a strict lower bound
            await conn.send_text(compact(OVERLOADED if len(copies_7) <= 3 else SUCCESS))
        codes.append(conn.received_close_code if conn.close_received else None)

    stdin = (REQUEST_8 + "\n" + REQUEST_7 + "\n").encode()
    result, _ = await run_scripted(tmp_path, handler, *args, stdin=stdin)
    assert result.status == 0, result.stderr_text
    assert result.stderr == b""
    assert copies_8 == [REQUEST_8]  # another error code: passed on, never resent
    assert [text for _, text in copies_7] == [REQUEST_7] * copies
    assert result.stdout == jsonl(OTHER_ERROR, last_answer)
    gaps = [later - earlier for (earlier, _), (later, _) in itertools.pairwise(copies_7)]
    for attempt, (gap, minimum) in enumerate(zip(gaps, MIN_BACKOFF[: len(gaps)], strict=True), start=1):
        assert gap >= minimum, f"retry {attempt} came {gap * 1000:.1f} ms after the error, under {minimum * 1000} ms"
    assert codes == [1000]


# -- 5. sizes ---------------------------------------------------------------------------------------------------


def note_of_size(size: int, char: str = "x") -> str:
    """A notification of exactly *size* bytes of UTF-8 (*char* is 1 or 2 bytes; *size* must fit)."""
    shell = '{"method":"n","params":{"t":""}}'
    fill = size - len(shell)
    width = len(char.encode())
    text = shell[:-3] + char * (fill // width) + "y" * (fill % width) + shell[-3:]
    assert len(text.encode()) == size
    return text


async def test_stdin_line_over_max_message_size_is_skipped(tmp_path: Path) -> None:
    exact = note_of_size(1000)
    lines = [
        '{"method":"a"}',
        exact,  # 2: at the limit: sent
        note_of_size(1001),  # 3: one byte over
        note_of_size(300_000),  # 4: over the limit across several reads of stdin
        '{"method":"b"}',
    ]
    received: list[str | bytes] = []
    stdin = "".join(line + "\n" for line in lines).encode()
    result, _ = await run_scripted(tmp_path, receiving_into(received), "--max-message-size", "1000", stdin=stdin)
    assert result.status == 0, result.stderr_text
    assert received == ['{"method":"a"}', exact, '{"method":"b"}']
    assert stderr_lines(result.stderr) == [
        "stdin line 3 is 1001 bytes, over --max-message-size (1000 bytes); not sent",
        "stdin line 4 is 300000 bytes, over --max-message-size (1000 bytes); not sent",
    ]
    assert result.stdout == b""


@pytest.mark.parametrize(
    ("big", "pieces"),
    [
        (note_of_size(100_001), 4),  # one byte over, noticed at the last fragment
        (note_of_size(300_000), 10),  # noticed early, the rest dropped as it arrives
        (note_of_size(120_000, "é"), 4),  # 60 000 characters, 120 000 bytes
    ],
    ids=["one-byte-over", "three-times-over", "multibyte"],
)
async def test_incoming_message_over_max_incoming_size_closes_1009(tmp_path: Path, big: str, pieces: int) -> None:
    first = '{"method":"before"}'
    exact = note_of_size(100_000, "é")  # at the limit: delivered
    codes: list[int | None] = []

    async def handler(conn: ScriptedConnection) -> None:
        await conn.accept()
        assert await conn.receive_text() == '{"method":"go","id":1}'
        await conn.send_text(first)
        await conn.send_text(exact, fragments=4)
        await conn.send_text(big, fragments=pieces)
        codes.append(await conn.receive_close())

    result, _ = await run_scripted(
        tmp_path, handler, "--max-incoming-size", "100000", stdin=b'{"method":"go","id":1}\n'
    )
    assert result.status == 1, result.stderr_text
    assert codes == [1009]
    assert result.stdout == (first + "\n" + exact + "\n").encode()
    line = one_line(result.stderr)
    assert "over --max-incoming-size (100000 bytes)" in line
    assert "1009" in line


# -- 6. bad input from the server -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        # E2 82 starts a 3-byte character; "(" in the next fragment breaks it
        frame(TEXT, b'{"method":"n","params":"\xe2\x82', fin=False) + frame(CONTINUATION, b'("}'),
        # the message ends inside a character
        frame(TEXT, b'{"method":"n","params":"', fin=False) + frame(CONTINUATION, b"x\xe2\x82"),
        # an encoded surrogate (U+D800) cut across fragments
        frame(TEXT, b'{"method":"n","params":"\xed', fin=False) + frame(CONTINUATION, b'\xa0\x80"}'),
        # an overlong "/" in the third fragment, after valid multi-byte text
        frame(TEXT, '{"method":"n","params":"é'.encode(), fin=False)
        + frame(CONTINUATION, "€".encode(), fin=False)
        + frame(CONTINUATION, b'\xc0\xaf"}'),
    ],
    ids=["broken-across-fragments", "truncated-at-end", "surrogate-across-fragments", "overlong-third-fragment"],
)
async def test_invalid_utf8_across_fragments_closes_1007(tmp_path: Path, bad: bytes) -> None:
    result, server, codes = await run_fine_then_raw(tmp_path, bad)
    assert result.status == 76, result.stderr_text
    assert codes == [1007]
    assert result.stdout == b'{"method":"fine"}\n'
    line = one_line(result.stderr)
    assert "1007" in line
    assert str(server.path) in line


@pytest.mark.parametrize(
    ("bad", "code"),
    [
        (frame(TEXT, b'{"method":', fin=False) + frame(TEXT, b'"n"}'), 1002),  # a new message inside one
        (frame(CLOSE, b"\x03"), 1002),  # a 1-byte close payload
        (frame(CLOSE, (1005).to_bytes(2, "big")), 1002),  # a code never sent on the wire
        (frame(CLOSE, (999).to_bytes(2, "big")), 1002),  # below the defined range
        (frame(CLOSE, (1000).to_bytes(2, "big") + b"bye \xff"), 1007),  # a reason that is not UTF-8
    ],
    ids=["text-inside-fragmented-text", "close-1-byte", "close-1005", "close-999", "close-reason-not-utf8"],
)
async def test_malformed_frames_close_with_the_right_code(tmp_path: Path, bad: bytes, code: int) -> None:
    result, server, codes = await run_fine_then_raw(tmp_path, bad)
    assert result.status == 76, result.stderr_text
    assert codes == [code]
    assert result.stdout == b'{"method":"fine"}\n'
    line = one_line(result.stderr)
    assert str(code) in line
    assert str(server.path) in line
