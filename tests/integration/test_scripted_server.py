"""The proxy as a subprocess against a scripted WebSocket server: exact bytes, order, faults, exit statuses.

Each test gives the server a handler (its side of the conversation) and runs ``python -m proxy proxy``;
it asserts what the server received, what reached stdout byte for byte, the exit status and the stderr line.
Frames for the fault cases are written out by hand (:func:`frame`): that is test data.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import trio
from wsproto.events import CloseConnection, Pong, TextMessage

from proxy import __version__

from .proxy_process import ROOT, Finished, finish, finished, proxy_argv, proxy_env, run_proxy_cli, running_proxy
from .scripted_server import Handler, ScriptedConnection, ScriptedServer, open_scripted_server

#: Guards against hangs; never what a test measures.
GUARD = 30

PREFIX = "codex-appserver: "

# RFC 6455 §5.2 opcodes.
CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def frame(opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0, mask: bytes | None = None) -> bytes:
    """One WebSocket frame, byte by byte (RFC 6455 §5.2); *rsv* is the 3 reserved bits as a number 0-7."""
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    mask_bit = 0x80 if mask is not None else 0
    length = len(payload)
    if length < 126:
        header = bytes([first, mask_bit | length])
    elif length < 1 << 16:
        header = bytes([first, mask_bit | 126]) + length.to_bytes(2, "big")
    else:
        header = bytes([first, mask_bit | 127]) + length.to_bytes(8, "big")
    if mask is not None:
        payload = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
        header += mask
    return header + payload


def jsonl(*messages: object) -> bytes:
    """Compact JSON lines, LF-terminated."""
    return b"".join(json.dumps(m, separators=(",", ":")).encode() + b"\n" for m in messages)


def compact(message: object) -> str:
    return json.dumps(message, separators=(",", ":"))


def sock_args(server: ScriptedServer | Path, *extra: str) -> list[str]:
    path = server.path if isinstance(server, ScriptedServer) else server
    return ["--sock", str(path), *extra]


def no_traceback(stderr: bytes | str) -> str:
    text = stderr.decode("utf-8", "replace") if isinstance(stderr, bytes) else stderr
    assert "Traceback" not in text, text
    return text


def one_line(stderr: bytes | str) -> str:
    """The single ``codex-appserver: ...`` line on stderr, without prefix and LF; fails on anything else."""
    text = no_traceback(stderr)
    assert text.endswith("\n") and text.count("\n") == 1, f"expected exactly one stderr line, got {text!r}"
    assert text.startswith(PREFIX), text
    return text[len(PREFIX) : -1]


def stderr_lines(stderr: bytes | str) -> list[str]:
    """Every stderr line without prefix; each must have it."""
    text = no_traceback(stderr)
    assert not text or text.endswith("\n"), text
    lines = text.splitlines()
    for line in lines:
        assert line.startswith(PREFIX), line
    return [line[len(PREFIX) :] for line in lines]


def whole_lines(stdout: bytes) -> None:
    assert not stdout or stdout.endswith(b"\n"), f"partial line on stdout: {stdout[-80:]!r}"


async def accept_and_close(conn: ScriptedConnection) -> None:
    """Accept, take messages until the proxy closes."""
    await conn.accept()
    while await conn.receive_message() is not None:
        pass


async def pong_then_answer(conn: ScriptedConnection, pongs: list[bytes]) -> None:
    """After a ping: take the pong (its payload goes to *pongs*), answer request 1, expect the proxy's 1000."""
    event = await conn.receive_event()
    assert isinstance(event, Pong), event
    pongs.append(bytes(event.payload))
    await conn.send_text('{"id":1,"result":{}}')
    assert await conn.receive_close() == 1000


def receiving_into(received: list[str | bytes]) -> Handler:
    """A handler that accepts, keeps every message in *received* until the proxy closes, and expects 1000."""

    async def handler(conn: ScriptedConnection) -> None:
        await conn.accept()
        while (message := await conn.receive_message()) is not None:
            received.append(message)
        assert conn.received_close_code == 1000

    return handler


async def run_scripted(
    tmp_path: Path, handler: Handler, *args: str, stdin: bytes = b""
) -> tuple[Finished, ScriptedServer]:
    """One proxy run against a scripted server running *handler* (``--sock`` to it, then *args*), *stdin* fed at
    once and closed; returns when the proxy has exited and the handler is done."""
    with trio.fail_after(GUARD):
        async with open_scripted_server(tmp_path, handler) as server:
            result = await run_proxy_cli(sock_args(server, *args), stdin=stdin)
            await server.wait_handled()
    return result, server


async def run_scripted_stdin_open(tmp_path: Path, handler: Handler, stdin: bytes) -> tuple[Finished, ScriptedServer]:
    """As :func:`run_scripted`, but stdin stays open after *stdin*: only the server can end the session."""
    with trio.fail_after(GUARD):
        async with (
            open_scripted_server(tmp_path, handler) as server,
            running_proxy(sock_args(server)) as proxy,
        ):
            await proxy.send(stdin)
            ended = await finish(proxy)
            await server.wait_handled()
    return finished(proxy, ended), server


async def run_fine_then_raw(tmp_path: Path, raw: bytes) -> tuple[Finished, ScriptedServer, list[int | None]]:
    """The server answers the request ``go`` with a good message, then *raw* bytes, and records the close code the
    proxy sends; returns the run, the server and that code."""
    codes: list[int | None] = []

    async def handler(conn: ScriptedConnection) -> None:
        await conn.accept()
        assert await conn.receive_text() == '{"method":"go","id":1}'
        await conn.send_text('{"method":"fine"}')
        await conn.send_raw(raw)
        codes.append(await conn.receive_close())

    result, server = await run_scripted(tmp_path, handler, stdin=b'{"method":"go","id":1}\n')
    return result, server, codes


# -- the opening handshake -----------------------------------------------------------------------------


async def test_handshake_request_is_exact_without_origin(tmp_path: Path) -> None:
    seen: list[ScriptedConnection] = []

    async def handler(conn: ScriptedConnection) -> None:
        seen.append(conn)
        await accept_and_close(conn)

    result, _ = await run_scripted(tmp_path, handler, stdin=b"")
    assert result.status == 0, result.stderr_text
    assert result.stderr == b""
    [conn] = seen
    request = conn.request
    key = request.header("sec-websocket-key")
    assert key is not None
    assert len(base64.b64decode(key, validate=True)) == 16
    assert request.method == b"GET"
    assert request.target == b"/"
    assert request.http_version == b"1.1"
    assert request.headers == (
        (b"Host", b"localhost"),
        (b"Upgrade", b"websocket"),
        (b"Connection", b"Upgrade"),
        (b"Sec-WebSocket-Key", key),
        (b"Sec-WebSocket-Version", b"13"),
        (b"User-Agent", f"codex-appserver-proxy/{__version__}".encode()),
    )
    assert request.header("origin") is None
    assert request.raw == (
        b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n"
        b"User-Agent: codex-appserver-proxy/" + __version__.encode() + b"\r\n\r\n"
    )
    assert conn.received_close_code == 1000


async def test_frames_in_the_same_write_as_the_101_reach_stdout(tmp_path: Path) -> None:
    first = compact({"method": "hello", "params": {"n": 1}})
    second = compact({"method": "hello", "params": {"n": 2, "t": "é"}})

    async def handler(conn: ScriptedConnection) -> None:
        await conn.accept(
            extra_headers=[("x-codex-websocket-max-unfragmented-message-bytes", "16777216")],
            trailing=frame(TEXT, first.encode()) + frame(TEXT, second.encode()),
        )
        assert await conn.receive_text() == compact({"method": "go", "id": 1})
        await conn.send_text(compact({"id": 1, "result": {}}))
        assert await conn.receive_close() == 1000

    result, _ = await run_scripted(tmp_path, handler, stdin=jsonl({"method": "go", "id": 1}))
    assert result.status == 0, result.stderr_text
    assert result.stdout == (first + "\n" + second + "\n" + '{"id":1,"result":{}}\n').encode()
    assert result.stderr == b""


async def test_advertised_frame_limit_fragments_long_lines(tmp_path: Path) -> None:
    line = compact({"method": "big", "params": {"text": "x€" * 100}})  # 300+ bytes of UTF-8
    frames: list[int] = []

    async def handler(conn: ScriptedConnection) -> None:
        await conn.accept(extra_headers=[("x-codex-websocket-max-unfragmented-message-bytes", "64")])
        parts: list[str] = []
        size = 0
        while True:
            event = await conn.receive_event()
            assert isinstance(event, TextMessage), event
            parts.append(event.data)
            size += len(event.data.encode())
            if event.frame_finished:
                frames.append(size)
                size = 0
            if event.message_finished:
                break
        assert "".join(parts) == line
        assert await conn.receive_close() == 1000

    result, _ = await run_scripted(tmp_path, handler, stdin=line.encode() + b"\n")
    assert result.status == 0, result.stderr_text
    assert len(frames) >= len(line.encode()) // 64
    assert max(frames) <= 64


async def test_big_lines_are_framed_as_the_socket_takes_them_and_never_interleave(tmp_path: Path) -> None:
    """Lines of 3 MiB over a 64 KiB frame limit, with small ones between them, all in one stdin write, then EOF.

    The proxy frames a big line a fragment at a time as the socket drains (never all its frames at once); the
    lines after it wait: the server gets every message whole, in order (wsproto refuses interleaved fragments),
    the last big one before the close frame."""
    big = [compact({"method": "big", "params": {"i": i, "text": "x€" * (1024 * 1024)}}) for i in range(3)]
    messages = [big[0], compact({"method": "small", "params": {}}), big[1], big[2], compact({"method": "end"})]
    received: list[str | bytes] = []

    async def handler(conn: ScriptedConnection) -> None:
        await conn.accept(extra_headers=[("x-codex-websocket-max-unfragmented-message-bytes", "65536")])
        received.extend(await conn.receive_messages(len(messages)))
        assert await conn.receive_close() == 1000

    result, _ = await run_scripted(tmp_path, handler, stdin="".join(m + "\n" for m in messages).encode())
    assert result.status == 0, result.stderr_text
    assert received == messages
    assert result.stderr == b""


# -- order ----------------------------------------------------------------------------------------------


async def test_thousand_stdin_lines_arrive_in_order(tmp_path: Path) -> None:
    messages = [{"method": "note", "params": {"i": i, "pad": "p" * (i % 97)}} for i in range(1000)]
    received: list[str | bytes] = []

    async def handler(conn: ScriptedConnection) -> None:
        await conn.accept()
        received.extend(await conn.receive_messages(1000))
        assert await conn.receive_close() == 1000

    result, _ = await run_scripted(tmp_path, handler, stdin=jsonl(*messages))
    assert result.status == 0, result.stderr_text
    assert received == [compact(m) for m in messages]
    assert result.stdout == b""
    assert result.stderr == b""


async def test_thousand_server_messages_reach_stdout_in_order(tmp_path: Path) -> None:
    messages = [compact({"method": "item/delta", "params": {"i": i, "d": "ü" * (i % 61)}}) for i in range(1000)]

    async def handler(conn: ScriptedConnection) -> None:
        await conn.accept()
        assert await conn.receive_text() == '{"method":"go","id":7}'
        for index, message in enumerate(messages):
            await conn.send_text(message, fragments=1 + index % 3)
        await conn.send_text('{"id":7,"result":{}}')
        assert await conn.receive_close() == 1000

    result, _ = await run_scripted(tmp_path, handler, stdin=b'{"method":"go","id":7}\n')
    assert result.status == 0, result.stderr_text
    assert result.stdout == "".join(m + "\n" for m in [*messages, '{"id":7,"result":{}}']).encode()
    assert result.stderr == b""


# -- stdin rules ------------------------------------------------------------------------------------------


async def test_stdin_line_rules(tmp_path: Path) -> None:
    stdin = (
        b'{"method":"a"}\r\n'  # 1: CRLF: CR stripped
        b"\n"  # 2: blank
        b" \t  \n"  # 3: whitespace only
        b"\r\n"  # 4: CR only
        b"{bad json\n"  # 5
        b'{"method":"\xff"}\n'  # 6: invalid UTF-8
        b'{"method":"b","params":{"s":"\xe2\x80\xa8"}}\n'  # 7: raw U+2028 is no line break
        b'{"method":"c"}'  # 8: last line without LF
    )
    received: list[str | bytes] = []
    result, _ = await run_scripted(tmp_path, receiving_into(received), stdin=stdin)
    assert result.status == 0, result.stderr_text
    assert received == ['{"method":"a"}', '{"method":"b","params":{"s":"\u2028"}}', '{"method":"c"}']
    bad_json, bad_utf8 = stderr_lines(result.stderr)
    assert bad_json.startswith("stdin line 5 is not valid JSON (")
    assert bad_json.endswith("); not sent")
    assert bad_utf8.startswith("stdin line 6 is not valid UTF-8 (")
    assert bad_utf8.endswith("); not sent")
    assert result.stdout == b""


@pytest.mark.parametrize(
    ("bad", "reason"),
    [(b"[1, 2\n", "not valid JSON ("), (b"\xc3\x28\n", "not valid UTF-8 (")],
    ids=["json", "utf8"],
)
async def test_strict_stops_at_a_bad_line(tmp_path: Path, bad: bytes, reason: str) -> None:
    received: list[str | bytes] = []
    stdin = b'{"method":"a"}\n' + bad + b'{"method":"b"}\n'
    result, _ = await run_scripted(tmp_path, receiving_into(received), "--strict", stdin=stdin)
    assert result.status == 1
    line = one_line(result.stderr)
    assert line.startswith(f"stdin line 2 is {reason}")
    assert "--strict" in line
    assert received == ['{"method":"a"}']


# -- incoming messages ----------------------------------------------------------------------------------


async def test_fragmented_message_with_interleaved_ping_is_one_line(tmp_path: Path) -> None:
    text = compact({"method": "item/agentMessage/delta", "params": {"delta": "".join(f"<{i}>" for i in range(500))}})
    pongs: list[bytes] = []

    async def handler(conn: ScriptedConnection) -> None:
        await conn.accept()
        assert await conn.receive_text() == '{"method":"go","id":1}'
        pieces = [text[i : i + 37] for i in range(0, len(text), 37)]
        for index, piece in enumerate(pieces):
            await conn.send_event(TextMessage(data=piece, message_finished=index == len(pieces) - 1))
            if index == 10:
                await conn.ping(b"mid-message")
        await pong_then_answer(conn, pongs)

    result, _ = await run_scripted(tmp_path, handler, stdin=b'{"method":"go","id":1}\n')
    assert result.status == 0, result.stderr_text
    assert result.stdout == (text + "\n" + '{"id":1,"result":{}}\n').encode()
    assert pongs == [b"mid-message"]
    assert result.stderr == b""


async def test_character_split_across_fragments(tmp_path: Path) -> None:
    async def handler(conn: ScriptedConnection) -> None:
        await conn.accept()
        assert await conn.receive_text() == '{"method":"go","id":1}'
        euro = "€".encode()  # 3 bytes, cut after the first and the second
        await conn.send_raw(frame(TEXT, b'{"method":"n","params":"' + euro[:1], fin=False))
        await conn.send_raw(frame(CONTINUATION, euro[1:2], fin=False))
        await conn.send_raw(frame(CONTINUATION, euro[2:] + b'"}', fin=True))
        await conn.send_text('{"id":1,"result":null}')
        assert await conn.receive_close() == 1000

    result, _ = await run_scripted(tmp_path, handler, stdin=b'{"method":"go","id":1}\n')
    assert result.status == 0, result.stderr_text
    assert result.stdout == '{"method":"n","params":"€"}\n{"id":1,"result":null}\n'.encode()


async def test_line_separators_stay_raw_on_one_line(tmp_path: Path) -> None:
    text = '{"method":"n","params":{"t":"a\u2028b\u2029c\u0085d"}}'

    async def handler(conn: ScriptedConnection) -> None:
        await conn.accept()
        assert await conn.receive_text() == '{"method":"go","id":1}'
        await conn.send_text(text)
        await conn.send_text('{"id":1,"result":{}}')
        assert await conn.receive_close() == 1000

    result, _ = await run_scripted(tmp_path, handler, stdin=b'{"method":"go","id":1}\n')
    assert result.status == 0, result.stderr_text
    assert result.stdout == text.encode() + b"\n" + b'{"id":1,"result":{}}\n'
    assert b"\xe2\x80\xa8" in result.stdout
    assert result.stdout.count(b"\n") == 2


async def test_message_with_raw_newlines_becomes_one_line_newlines_as_spaces(tmp_path: Path) -> None:
    async def handler(conn: ScriptedConnection) -> None:
        await conn.accept()
        assert await conn.receive_text() == '{"method":"go","id":1}'
        await conn.send_text('{\n  "method": "n",\r\n  "params": {"a": [1, 2], "s": "x\\ny"}\n}')
        await conn.send_text('{"id":1,"result":{}}')
        assert await conn.receive_close() == 1000

    result, _ = await run_scripted(tmp_path, handler, stdin=b'{"method":"go","id":1}\n')
    assert result.status == 0, result.stderr_text
    # issue 9 #14: each raw CR or LF (JSON whitespace) becomes a space; nothing else changes.
    assert result.stdout == b'{   "method": "n",    "params": {"a": [1, 2], "s": "x\\ny"} }\n{"id":1,"result":{}}\n'


async def test_binary_message_goes_to_stderr_not_stdout(tmp_path: Path) -> None:
    async def handler(conn: ScriptedConnection) -> None:
        await conn.accept()
        assert await conn.receive_text() == '{"method":"go","id":1}'
        await conn.send_binary(b"\x00\x01binary\xfe\xff" * 10, fragments=3)  # 100 bytes
        await conn.send_text('{"id":1,"result":{}}')
        assert await conn.receive_close() == 1000

    result, _ = await run_scripted(tmp_path, handler, stdin=b'{"method":"go","id":1}\n')
    assert result.status == 0, result.stderr_text
    assert result.stdout == b'{"id":1,"result":{}}\n'
    line = one_line(result.stderr)
    assert "binary message" in line
    assert "100 bytes" in line


@pytest.mark.parametrize("payload", [b"", b"hello-123", bytes(range(125))], ids=["empty", "short", "max"])
async def test_ping_is_answered_with_the_same_payload(tmp_path: Path, payload: bytes) -> None:
    pongs: list[bytes] = []

    async def handler(conn: ScriptedConnection) -> None:
        await conn.accept()
        assert await conn.receive_text() == '{"method":"go","id":1}'
        await conn.ping(payload)
        await pong_then_answer(conn, pongs)

    result, _ = await run_scripted(tmp_path, handler, stdin=b'{"method":"go","id":1}\n')
    assert result.status == 0, result.stderr_text
    assert pongs == [payload]
    assert result.stdout == b'{"id":1,"result":{}}\n'


# -- drain at stdin EOF -----------------------------------------------------------------------------------


async def test_drain_waits_for_every_response_in_any_order(tmp_path: Path) -> None:
    requests: list[dict[str, str | int]] = [
        {"method": "a", "id": 1},
        {"method": "b", "id": "x"},
        {"method": "c", "id": 2},
        {"method": "d", "id": "1"},  # a string "1" is not the number 1
    ]
    responses = [{"id": r["id"], "result": {"m": r["method"]}} for r in reversed(requests)]
    all_received = trio.Event()
    stdin_closed = trio.Event()
    closed_early: list[int | None] = []

    async def handler(conn: ScriptedConnection) -> None:
        await conn.accept()
        assert await conn.receive_messages(4) == [compact(r) for r in requests]
        all_received.set()
        await stdin_closed.wait()
        await trio.sleep(0.2)  # the proxy is draining now
        await conn.send_text(compact({"method": "progress", "params": {}}))
        for response in responses[:-1]:
            await conn.send_text(compact(response))
        with trio.move_on_after(0.5):  # one response is still owed: the proxy must not close yet
            closed_early.append(await conn.receive_close())
        await conn.send_text(compact(responses[-1]))
        assert await conn.receive_close() == 1000

    with trio.fail_after(GUARD):
        async with (
            open_scripted_server(tmp_path, handler) as server,
            running_proxy(sock_args(server, "--drain-timeout", "20")) as proxy,
        ):
            await proxy.send(jsonl(*requests))
            await all_received.wait()
            await proxy.close_stdin()
            stdin_closed.set()
            ended = await finish(proxy)
            await server.wait_handled()
    result = finished(proxy, ended)
    assert closed_early == []
    assert result.status == 0, result.stderr_text
    assert result.stdout == jsonl({"method": "progress", "params": {}}, *responses)
    assert result.stderr == b""


async def test_drain_timeout_names_the_missing_responses(tmp_path: Path) -> None:
    async def handler(conn: ScriptedConnection) -> None:
        await conn.accept()
        assert await conn.receive_messages(2) == ['{"method":"a","id":1}', '{"method":"b","id":"1"}']
        await conn.send_text('{"id":1,"result":{}}')  # never answers "1"
        assert await conn.receive_close() == 1000

    stdin = b'{"method":"a","id":1}\n{"method":"b","id":"1"}\n'
    result, _ = await run_scripted(tmp_path, handler, "--drain-timeout", "1", stdin=stdin)
    assert result.status == 1
    assert result.stdout == b'{"id":1,"result":{}}\n'
    line = one_line(result.stderr)
    assert "drain timeout" in line
    assert "1 response still missing" in line


async def test_nothing_outstanding_closes_at_once(tmp_path: Path) -> None:
    stdin = jsonl(
        {"method": "initialized"},  # a notification: no response owed
        {"id": 0, "result": {"decision": "accept"}},  # an answer to a server request: no response owed
        {"method": "x", "id": None},  # a null id is not a request id
    )

    async def handler(conn: ScriptedConnection) -> None:
        await conn.accept()
        assert len(await conn.receive_messages(3)) == 3
        assert await conn.receive_close() == 1000

    with trio.fail_after(GUARD):
        async with open_scripted_server(tmp_path, handler) as server:
            started = time.monotonic()
            result = await run_proxy_cli(sock_args(server, "--drain-timeout", "60"), stdin=stdin)
            await server.wait_handled()
            elapsed = time.monotonic() - started
    assert result.status == 0, result.stderr_text
    assert elapsed < 20, f"the proxy waited {elapsed:.1f} s with nothing outstanding"
    assert result.stderr == b""


# -- how the server ends the session ------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "status"), [(1000, 0), (1001, 0), (1011, 1)])
async def test_server_close_frame_while_stdin_is_open(tmp_path: Path, code: int, status: int) -> None:
    answers: list[int | None] = []

    async def handler(conn: ScriptedConnection) -> None:
        await conn.accept()
        assert await conn.receive_text() == '{"method":"a"}'
        await conn.send_text('{"method":"last"}')
        await conn.send_close(code, "bye now")
        answers.append(await conn.receive_close())

    result, server = await run_scripted_stdin_open(tmp_path, handler, b'{"method":"a"}\n')
    assert result.status == status
    assert answers == [code]  # the proxy echoed the close code
    assert result.stdout == b'{"method":"last"}\n'
    line = one_line(result.stderr)
    assert str(server.path) in line
    assert f"closed the connection ({code} bye now)" in line


async def test_connection_dropped_without_close_frame(tmp_path: Path) -> None:
    async def handler(conn: ScriptedConnection) -> None:
        await conn.accept()
        assert await conn.receive_text() == '{"method":"a","id":5}'
        await conn.send_text('{"method":"n"}')
        await conn.abort()

    result, server = await run_scripted_stdin_open(tmp_path, handler, b'{"method":"a","id":5}\n')
    assert result.status == 1
    assert result.stdout == b'{"method":"n"}\n'
    line = one_line(result.stderr)
    assert "lost the connection" in line
    assert str(server.path) in line
    assert "1 request unanswered" in line


@pytest.mark.parametrize(
    "cut",
    [
        # a frame header announcing 100 bytes, then 10 of them
        frame(TEXT, b'{"method":"partial","params":"' + b"x" * 69 + b'"}')[:12],
        # a whole first fragment, no continuation
        frame(TEXT, b'{"method":"partial",', fin=False),
        # a first fragment and a continuation cut short
        frame(TEXT, b'{"method":"partial",', fin=False) + frame(CONTINUATION, b'"params":{"a":1}}')[:8],
    ],
    ids=["mid-frame", "after-fragment", "mid-continuation"],
)
async def test_message_cut_by_a_dropped_connection_never_reaches_stdout(tmp_path: Path, cut: bytes) -> None:
    async def handler(conn: ScriptedConnection) -> None:
        await conn.accept()
        assert await conn.receive_text() == '{"method":"a","id":5}'
        await conn.send_text('{"method":"whole"}')
        await conn.send_raw(cut)
        await trio.sleep(0.2)  # let the proxy read the partial frame before the EOF
        await conn.abort()

    result, _ = await run_scripted_stdin_open(tmp_path, handler, b'{"method":"a","id":5}\n')
    assert result.status == 1
    whole_lines(result.stdout)
    assert result.stdout == b'{"method":"whole"}\n'
    line = one_line(result.stderr)
    assert "lost the connection" in line


# -- exit statuses ------------------------------------------------------------------------------------------


async def test_exit_69_socket_missing(tmp_path: Path) -> None:
    missing = tmp_path / "nothing-here.sock"
    with trio.fail_after(GUARD):
        result = await run_proxy_cli(sock_args(missing))
    assert result.status == 69
    line = one_line(result.stderr)
    assert str(missing) in line
    assert "codex app-server daemon start" in line
    assert result.stdout == b""


async def test_exit_69_connection_refused(tmp_path: Path) -> None:
    folder = Path(tempfile.mkdtemp(prefix="cap-", dir="/tmp"))
    try:
        stale = folder / "stale.sock"
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(stale))
        listener.close()  # the file stays; nobody listens
        with trio.fail_after(GUARD):
            result = await run_proxy_cli(sock_args(stale))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    assert result.status == 69
    line = one_line(result.stderr)
    assert str(stale) in line
    assert "refused" in line
    assert "codex app-server daemon start" in line


async def test_exit_69_connect_timeout(tmp_path: Path) -> None:
    async def handler(conn: ScriptedConnection) -> None:
        await trio.sleep_forever()  # read the request, never answer

    with trio.fail_after(GUARD):
        async with open_scripted_server(tmp_path, handler) as server:
            result = await run_proxy_cli(sock_args(server, "--connect-timeout", "1"), stdin=b'{"method":"a"}\n')
            assert len(server.connections) == 1
            assert server.connections[0].request.method == b"GET"  # the request came; the answer never did
    assert result.status == 69
    line = one_line(result.stderr)
    assert str(server.path) in line
    assert "1 s" in line


async def test_exit_2_usage_error(tmp_path: Path) -> None:
    with trio.fail_after(GUARD):
        result = await run_proxy_cli(["--no-such-option"])
    assert result.status == 2
    text = no_traceback(result.stderr)
    assert "No such option" in text  # click's own message (several lines: usage, hint, error)
    assert result.stdout == b""


async def test_exit_76_handshake_refused_with_body(tmp_path: Path) -> None:
    async def handler(conn: ScriptedConnection) -> None:
        await conn.reject(400, b"Bad upgrade request:\nmissing something important")

    result, server = await run_scripted(tmp_path, handler)
    assert result.status == 76
    line = one_line(result.stderr)
    assert str(server.path) in line
    assert "400" in line
    assert "Bad upgrade request" in line


@pytest.mark.parametrize(
    ("garbage", "close"),
    [
        (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", False),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(40), True),  # a TLS ClientHello, then EOF
        (b"HTTP/1.1 200 OK\r\nContent-Length: banana\r\n\r\n", False),
    ],
    ids=["ssh", "tls-then-eof", "bad-header"],
)
async def test_exit_76_not_http(tmp_path: Path, garbage: bytes, close: bool) -> None:
    async def handler(conn: ScriptedConnection) -> None:
        await conn.send_raw(garbage)
        if close:
            await conn.abort()
        else:
            await conn.wait_eof()

    result, server = await run_scripted(tmp_path, handler, "--connect-timeout", "20")
    assert result.status == 76, result.stderr_text
    line = one_line(result.stderr)
    assert str(server.path) in line


async def test_exit_76_bad_accept_token(tmp_path: Path) -> None:
    async def handler(conn: ScriptedConnection) -> None:
        await conn.accept(accept_token="dGhlIHNhbXBsZSBub25jZQ==")
        await conn.wait_eof()

    result, _ = await run_scripted(tmp_path, handler)
    assert result.status == 76
    line = one_line(result.stderr)
    assert "Sec-WebSocket-Accept" in line


async def test_exit_76_invalid_utf8_text_closes_with_1007(tmp_path: Path) -> None:
    result, _, codes = await run_fine_then_raw(tmp_path, frame(TEXT, b'{"method":"n","params":"\xff\xfe"}'))
    assert result.status == 76
    assert codes == [1007]
    assert result.stdout == b'{"method":"fine"}\n'
    line = one_line(result.stderr)
    assert "1007" in line


@pytest.mark.parametrize(
    "bad",
    [
        frame(TEXT, b'{"method":"n"}', mask=b"\x01\x02\x03\x04"),
        frame(TEXT, b'{"method":"n"}', rsv=4),
        frame(0x3, b"{}"),  # a reserved data opcode
        frame(0xB, b""),  # a reserved control opcode
        frame(CONTINUATION, b'{"method":"n"}'),
        frame(PING, b"", fin=False),  # a fragmented control frame
        frame(PING, b"p" * 126),  # a control frame over 125 bytes
    ],
    ids=["masked", "reserved-bits", "opcode-3", "opcode-11", "continuation-first", "fragmented-ping", "long-ping"],
)
async def test_exit_76_protocol_violation_closes_with_1002(tmp_path: Path, bad: bytes) -> None:
    codes: list[int | None] = []

    async def handler(conn: ScriptedConnection) -> None:
        await conn.accept()
        assert await conn.receive_text() == '{"method":"go","id":1}'
        await conn.send_raw(bad)
        codes.append(await conn.receive_close())

    result, server = await run_scripted(tmp_path, handler, stdin=b'{"method":"go","id":1}\n')
    assert result.status == 76
    assert codes == [1002]
    assert result.stdout == b""
    line = one_line(result.stderr)
    assert "1002" in line
    assert str(server.path) in line


@pytest.mark.parametrize("status", [401, 403])
async def test_exit_77_handshake_forbidden(tmp_path: Path, status: int) -> None:
    async def handler(conn: ScriptedConnection) -> None:
        await conn.reject(status, b"no entry")

    result, _ = await run_scripted(tmp_path, handler)
    assert result.status == 77
    line = one_line(result.stderr)
    assert str(status) in line
    assert "no entry" in line


@pytest.mark.parametrize("when", ["before-drain", "at-drain", "at-server-close"])
async def test_exit_74_stdout_write_fails(tmp_path: Path, when: str) -> None:
    """stdout is /dev/full (ENOSPC): exit 74, also when the failing write is the last line before the close."""
    codes: list[int | None] = []

    async def handler(conn: ScriptedConnection) -> None:
        await conn.accept()
        assert await conn.receive_text() == '{"method":"go","id":1}'
        if when == "before-drain":
            await conn.send_text('{"method":"note"}')  # the write fails; the request is still owed
        elif when == "at-drain":
            await conn.send_text('{"id":1,"result":{}}')  # drained: the proxy closes while the write fails
        else:  # a last line and a clean close frame in one write
            last = conn.ws.send(TextMessage(data='{"method":"last"}'))
            await conn.send_raw(last + conn.ws.send(CloseConnection(code=1000)))
        codes.append(await conn.receive_close())

    with trio.fail_after(GUARD), open("/dev/full", "wb") as full:
        async with open_scripted_server(tmp_path, handler) as server:
            done = await trio.run_process(
                proxy_argv(*sock_args(server)),
                stdin=b'{"method":"go","id":1}\n',
                stdout=full,
                capture_stderr=True,
                check=False,
                env=proxy_env(),
                cwd=str(ROOT),
            )
            await server.wait_handled()
    assert done.returncode == 74, done.stderr
    line = one_line(done.stderr)
    assert "stdout" in line
    assert os.strerror(28) in line  # ENOSPC
    # Before the drain the failure decides the close (1001); otherwise the 1000 may already be on its way.
    assert codes == [1001] if when == "before-drain" else codes in ([1000], [1001])


# -- permission denied: needs a user the kernel holds to file permissions ---------------------------------


SETPRIV = shutil.which("setpriv")
NOBODY = ["--reuid=65534", "--regid=65534", "--clear-groups"]


def nobody_can_run_the_proxy() -> str | None:
    """Why the permission test cannot run here, or None when it can."""
    if SETPRIV is None:
        return "setpriv (util-linux) is not installed"
    if os.geteuid() != 0:
        return "not running as root, so cannot switch to user nobody"
    check = subprocess.run(
        [SETPRIV, *NOBODY, *proxy_argv("--help")],
        capture_output=True,
        env=proxy_env(),
        cwd=str(ROOT),
        check=False,
    )
    if check.returncode != 0:
        return f"user nobody cannot run the proxy here: {check.stderr.decode(errors='replace')[-200:]}"
    return None


@pytest.mark.parametrize("where", ["folder", "socket"])
async def test_exit_77_permission_denied_on_the_socket(where: str) -> None:
    reason = nobody_can_run_the_proxy()
    if reason is not None:
        pytest.skip(reason)
    assert SETPRIV is not None
    folder = Path(tempfile.mkdtemp(prefix="cap-", dir="/tmp"))  # mode 0700, owned by root
    try:
        if where == "socket":
            folder.chmod(0o755)  # nobody may traverse the folder, but not open the socket

        async def handler(conn: ScriptedConnection) -> None:
            raise AssertionError("user nobody got through")

        with trio.fail_after(GUARD):
            async with open_scripted_server(folder, handler) as server:
                server.path.chmod(0o700)
                assert stat.S_IMODE(server.path.stat().st_mode) == 0o700
                done = await trio.run_process(
                    [SETPRIV, *NOBODY, *proxy_argv(*sock_args(server))],
                    stdin=b'{"method":"a"}\n',
                    capture_stdout=True,
                    capture_stderr=True,
                    check=False,
                    env=proxy_env(),
                    cwd=str(ROOT),
                )
                assert server.connections == []
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    assert done.returncode == 77, done.stderr
    line = one_line(done.stderr)
    assert "permission denied" in line
    assert str(server.path) in line
    assert done.stdout == b""
