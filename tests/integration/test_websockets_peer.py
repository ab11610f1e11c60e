"""The proxy against a second WebSocket implementation: a `websockets` (asyncio) server on a Unix socket.

The proxy runs as a subprocess with pipes; the server runs in a thread (see :mod:`.websockets_peer`) and records
what it received, frame by frame, and the close code the proxy sent.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Iterator

import pytest
import trio
from websockets.asyncio.server import ServerConnection

from .proxy_process import ProxyProcess, run_proxy_cli, running_proxy
from .websockets_peer import MAX_UNFRAGMENTED_HEADER, FrameInfo, PeerLog, PeerPool, echo

MiB = 1024 * 1024

#: Guards against hangs; never what a test measures.
GUARD = 60
#: How long the proxy may take to exit after a signal or a broken stdout pipe.
PROMPT = 10

#: One character of each UTF-8 width, plus the separators Codex sends raw (U+2028, U+2029).
UNIT = "aé€😀\u2028x\u2029"


@pytest.fixture
def peers() -> Iterator[PeerPool]:
    pool = PeerPool()
    try:
        yield pool
    finally:
        errors = pool.close()
    assert not errors, "the websockets peer recorded errors:\n" + "\n".join(errors)


async def finish(proxy: ProxyProcess) -> tuple[int, bytes]:
    """Wait for the proxy to exit while reading the rest of its stdout; return (status, rest)."""
    rest = b""

    async def read() -> None:
        nonlocal rest
        rest = await proxy.read_rest()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read)
        status = await proxy.wait()
    return status, rest


def compact(value: object) -> bytes:
    """*value* as one JSON line (no LF), non-ASCII characters raw."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def big_text(size: int) -> str:
    """About *size* bytes of UTF-8 in characters of 1 to 4 bytes, so that any cut may fall inside one."""
    unit_bytes = len(UNIT.encode("utf-8"))
    return UNIT * (size // unit_bytes)


def assert_same(actual: bytes | str, expected: bytes | str, what: str) -> None:
    """Compare two (possibly huge) payloads and describe the first difference without printing them whole."""
    if actual == expected:
        return
    at = next(
        (i for i, (a, b) in enumerate(zip(actual, expected, strict=False)) if a != b), min(len(actual), len(expected))
    )
    raise AssertionError(
        f"{what} differs: {len(actual)} vs {len(expected)} long, first difference at {at}: "
        f"{actual[max(0, at - 20) : at + 20]!r} vs {expected[max(0, at - 20) : at + 20]!r}"
    )


def first_message_frames(frames: list[FrameInfo]) -> list[FrameInfo]:
    """The frames of the first data message: its TEXT (or BINARY) frame and the CONT frames up to FIN."""
    data = [frame for frame in frames if frame.opcode in ("TEXT", "BINARY", "CONT")]
    assert data, "no data frames recorded"
    end = next(i for i, frame in enumerate(data) if frame.fin)
    return data[: end + 1]


# -- 1. one-shot echo ----------------------------------------------------------------------------------------


def note_line(n: int) -> bytes:
    """Notification number *n* (no id: not waited for), in a few spellings, all kept byte for byte."""
    params = {"n": n, "text": UNIT * (n % 5), "nested": {"list": [n, n / 4, None, True]}}
    if n % 3 == 0:
        return json.dumps({"method": "test/note", "params": params}).encode("ascii")  # spaces, \u escapes
    return compact({"method": "test/note", "params": params})


async def test_one_shot_echo_returns_every_line_in_order(peers: PeerPool) -> None:
    peer = peers.start(echo)
    lines = [note_line(n) for n in range(1000)]
    # Echoes of notifications are not responses: a final request makes the proxy wait until every echo is back.
    barrier = b'{"method":"test/barrier","id":"last"}'

    done = await run_proxy_cli(["--sock", peer.path], b"\n".join([*lines, barrier]) + b"\n", timeout=GUARD)

    assert done.status == 0, done.stderr_text
    assert done.stderr_text == ""
    assert done.stdout_lines == [*lines, b'{"id":"last","result":{}}']
    await peer.log.wait_for_close()
    assert peer.log.messages == [line.decode("utf-8") for line in [*lines, barrier]]
    assert peer.log.close_codes == [1000]
    assert all(frame.fin for frame in peer.log.frames_in), "small messages must not be fragmented"


async def test_one_shot_requests_all_answered_before_close(peers: PeerPool) -> None:
    peer = peers.start(echo)
    requests = [compact({"method": "test/request", "id": n, "params": {"text": UNIT}}) for n in range(1000)]

    done = await run_proxy_cli(["--sock", peer.path], b"\n".join(requests) + b"\n", timeout=GUARD)

    assert done.status == 0, done.stderr_text
    assert done.stderr_text == ""
    assert done.stdout_lines == [compact({"id": n, "result": {}}) for n in range(1000)]
    await peer.log.wait_for_close()
    assert len(peer.log.messages) == 1000
    assert peer.log.close_codes == [1000]


# -- 2. interactive echo, byte-exact ---------------------------------------------------------------------


INTERACTIVE_LINES = [
    b'{"method":"test/note","params":{"text":"plain"}}',
    compact({"method": "test/note", "params": {"text": "line\u2028separator\u2029paragraph"}}),
    compact({"method": "test/note", "params": {"text": "emoji 😀👍🏽🏳️‍🌈 and é, €"}}),
    rb'{"method":"test/note","params":{"text":"say \"hi\", a \\ backslash, a \/ slash, a tab \t"}}',
    # A lone surrogate escape (\ud800) is refused since issue 9 #13: Codex's parser drops it.
    rb'{"method":"test/note","params":{"text":"escaped \u2028 and \ud83d\ude00, a pair"}}',
    b'{ "method" : "test/note" , "params" : [ 1 , 2.50 , 1e3 , -0 , null ] }',
    b'"a bare JSON string"',
    b"42",
]


async def test_interactive_echo_is_byte_exact(peers: PeerPool) -> None:
    peer = peers.start(echo)
    with trio.fail_after(GUARD):
        async with running_proxy(["--sock", peer.path], reap_timeout=PROMPT) as proxy:
            for line in INTERACTIVE_LINES:
                await proxy.send(line + b"\n")
                assert await proxy.read_line() == line
            await proxy.close_stdin()
            status, rest = await finish(proxy)
    assert status == 0, proxy.stderr_text
    assert rest == b""
    assert proxy.stderr_text == ""
    await peer.log.wait_for_close()
    assert peer.log.messages == [line.decode("utf-8") for line in INTERACTIVE_LINES]
    assert peer.log.close_codes == [1000]


# -- 3. large messages -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "limit"),
    [
        pytest.param([(MAX_UNFRAGMENTED_HEADER, str(MiB))], MiB, id="advertised-1MiB"),
        pytest.param([], 16 * MiB, id="default-16MiB"),
    ],
)
async def test_large_message_to_server_is_fragmented_and_intact(
    peers: PeerPool, headers: list[tuple[str, str]], limit: int
) -> None:
    peer = peers.start(echo, max_size=None, headers=headers)
    line = compact({"method": "test/big", "id": 1, "params": {"data": big_text(20 * MiB)}})
    assert len(line) > 20 * MiB - 64

    done = await run_proxy_cli(["--sock", peer.path], line + b"\n", timeout=GUARD)

    assert done.status == 0, done.stderr_text
    assert done.stderr_text == ""
    assert done.stdout_lines == [b'{"id":1,"result":{}}']
    await peer.log.wait_for_close()
    messages = peer.log.messages
    assert len(messages) == 1
    assert_same(messages[0].encode("utf-8"), line, "the message the server received")
    frames = first_message_frames(peer.log.frames_in)
    sizes = [frame.size for frame in frames]
    assert len(frames) >= 2, f"not fragmented: {sizes}"
    assert [frame.opcode for frame in frames] == ["TEXT"] + ["CONT"] * (len(frames) - 1)
    assert max(sizes) <= limit, f"a frame over the {limit}-byte limit: {sizes}"
    assert sum(sizes) == len(line)


async def serve_big_on_request(connection: ServerConnection, log: PeerLog, payload: str, fragment: int) -> None:
    """Answer each request with *payload* first (in frames of *fragment* characters; 0: one frame)."""
    async for message in connection:
        assert isinstance(message, str)
        log.received(message)
        if fragment:
            await connection.send([payload[i : i + fragment] for i in range(0, len(payload), fragment)])
        else:
            await connection.send(payload)
        response = json.loads(message)["id"]
        await connection.send(compact({"id": response, "result": {}}).decode("utf-8"))


@pytest.mark.parametrize("fragment", [pytest.param(0, id="one-frame"), pytest.param(MiB // 3, id="fragmented")])
async def test_large_message_from_server_is_one_line(peers: PeerPool, fragment: int) -> None:
    big = compact({"method": "test/big", "params": {"data": big_text(20 * MiB)}})

    async def handler(connection: ServerConnection, log: PeerLog) -> None:
        await serve_big_on_request(connection, log, big.decode("utf-8"), fragment)

    peer = peers.start(handler)
    done = await run_proxy_cli(["--sock", peer.path], b'{"method":"test/giveBig","id":7}\n', timeout=GUARD)

    assert done.status == 0, done.stderr_text
    assert done.stderr_text == ""
    lines = done.stdout_lines
    assert len(lines) == 2, f"{len(lines)} lines on stdout"
    first, second = lines
    assert_same(first, big, "the stdout line")
    assert second == b'{"id":7,"result":{}}'
    sent = first_message_frames(peer.log.frames_out)
    assert (len(sent) > 1) == bool(fragment), [frame.size for frame in sent]
    await peer.log.wait_for_close()
    assert peer.log.close_codes == [1000]


# -- 4. signals --------------------------------------------------------------------------------------------

HELLO = b'{"method":"test/hello"}'
BURST_REQUEST = b'{"method":"test/burst"}'
BURST = 256


def burst_line(n: int) -> bytes:
    """About 4 KB each: the burst (1 MiB) is more than a pipe holds, so stdout is still being written."""
    return compact({"method": "test/burst/item", "params": {"n": n, "pad": UNIT * 240}})


async def hello_then_burst(connection: ServerConnection, log: PeerLog) -> None:
    await connection.send(HELLO.decode("utf-8"))
    async for message in connection:
        assert isinstance(message, str)
        log.received(message)
        if message.encode("utf-8") == BURST_REQUEST:
            for n in range(BURST):
                await connection.send(burst_line(n).decode("utf-8"))
            log.event("burst sent")


@pytest.mark.parametrize(
    ("signum", "status"),
    [
        pytest.param(signal.SIGINT, 130, id="SIGINT"),
        pytest.param(signal.SIGTERM, 143, id="SIGTERM"),
        pytest.param(signal.SIGHUP, 129, id="SIGHUP"),
    ],
)
async def test_signal_closes_with_going_away(peers: PeerPool, signum: signal.Signals, status: int) -> None:
    peer = peers.start(hello_then_burst)
    with trio.fail_after(GUARD):
        # stdin stays open: the proxy is idle, not draining
        async with running_proxy(["--sock", peer.path], reap_timeout=PROMPT) as proxy:
            assert await proxy.read_line() == HELLO
            await proxy.send(BURST_REQUEST + b"\n")
            await peer.log.wait_for_event("burst sent")
            proxy.signal(signum)
            with trio.fail_after(PROMPT):
                exit_status, rest = await finish(proxy)
    assert exit_status == status, proxy.stderr_text
    assert rest.endswith(b"\n"), f"a partial line on stdout: {rest[-80:]!r}"
    received = rest.split(b"\n")[:-1]
    assert len(received) == BURST, f"{len(received)} of the {BURST} lines sent before the signal"
    assert received == [burst_line(n) for n in range(BURST)]
    assert proxy.stderr_text == ""
    await peer.log.wait_for_close()
    assert peer.log.close_codes == [1001]


# -- 5. stdout closed by its reader ------------------------------------------------------------------------


async def push_forever(connection: ServerConnection, log: PeerLog) -> None:
    """Send notifications continuously until the connection closes (ConnectionClosed ends the handler)."""
    n = 0
    while True:
        await connection.send(compact({"method": "test/tick", "params": {"n": n}}).decode("utf-8"))
        n += 1
        await asyncio.sleep(0.001)  # lets the loop read what the proxy sends (its close frame) in between


async def test_closed_stdout_exits_141_quietly(peers: PeerPool) -> None:
    peer = peers.start(push_forever)
    with trio.fail_after(GUARD):
        async with running_proxy(["--sock", peer.path], reap_timeout=PROMPT) as proxy:
            assert json.loads(await proxy.read_line())["method"] == "test/tick"
            assert proxy.process.stdout is not None
            await proxy.process.stdout.aclose()  # the reader goes away, as `head -1` would
            with trio.fail_after(PROMPT):
                status = await proxy.wait()
    assert status == 141, proxy.stderr_text
    assert proxy.stderr_text == ""
    await peer.log.wait_for_close()
    assert peer.log.close_codes == [1001]


# -- 6. the server closes ----------------------------------------------------------------------------------

BYE = b'{"method":"test/bye"}'


@pytest.mark.parametrize(
    ("code", "reason", "status"),
    [
        pytest.param(1000, "", 0, id="1000"),
        pytest.param(1001, "restarting", 0, id="1001"),
        pytest.param(1011, "internal error", 1, id="1011"),
    ],
)
async def test_server_close(peers: PeerPool, code: int, reason: str, status: int) -> None:
    async def say_bye_and_close(connection: ServerConnection, log: PeerLog) -> None:
        await connection.send(BYE.decode("utf-8"))
        await connection.close(code, reason)

    peer = peers.start(say_bye_and_close)
    with trio.fail_after(GUARD):
        # stdin stays open: the server's close alone ends the session
        async with running_proxy(["--sock", peer.path], reap_timeout=PROMPT) as proxy:
            assert await proxy.read_line() == BYE
            with trio.fail_after(PROMPT):
                exit_status, rest = await finish(proxy)
    assert exit_status == status, proxy.stderr_text
    assert rest == b""
    lines = proxy.stderr_text.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("codex-appserver: ")
    assert str(code) in lines[0]
    assert reason in lines[0]
    await peer.log.wait_for_close()
    assert peer.log.close_codes == [code]  # the proxy echoes the code in its close frame (RFC 6455 §5.5.1)
