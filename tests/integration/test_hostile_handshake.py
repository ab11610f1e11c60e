"""Hostile opening-handshake answers, against the CLI as a subprocess (issue 9 #6, #17, #18).

A scripted server on loopback TCP (so that ``--remote`` sends the token) answers with refusals whose body never
ends, a frame-limit header holding a non-ASCII digit, and the bearer token echoed everywhere it could go: a 401
body, a 403 reason phrase, a header line h11 quotes in its error, a 101 header written to ``--trace``, a close
reason logged at ``-v``. The token must reach neither stderr nor the trace file.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.handshake import MAX_UNFRAGMENTED_HEADER

from .proxy_process import Finished, run_proxy_cli
from .scripted_server import Handler, ScriptedConnection, ScriptedServer
from .test_scripted_server import GUARD, one_line, run_scripted, stderr_lines

TOKEN = "tok-" + "Zq9x" * 8
TOKEN_ENV = "HOSTILE_TOKEN"


@asynccontextmanager
async def tcp_scripted_server(handler: Handler) -> AsyncIterator[tuple[ScriptedServer, str]]:
    """The scripted server on 127.0.0.1 (a free port); yields it and its ``ws://`` URL."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    listener = listeners[0]
    port = listener.socket.getsockname()[1]
    server = ScriptedServer(Path("/nonexistent"), handler)
    async with listener, trio.open_nursery() as nursery:
        await nursery.start(server.serve, listener)
        try:
            yield server, f"ws://127.0.0.1:{port}/rpc"
        finally:
            nursery.cancel_scope.cancel()


async def run_remote(handler: Handler, *args: str, stdin: bytes = b"", tmp_path: Path | None = None) -> Finished:
    with trio.fail_after(GUARD):
        async with tcp_scripted_server(handler) as (server, url):
            result = await run_proxy_cli(
                ["--remote", url, "--remote-auth-token-env", TOKEN_ENV, *args], stdin=stdin, env={TOKEN_ENV: TOKEN}
            )
            for connection in server.connections:
                with trio.move_on_after(5):
                    await connection.handled.wait()
    return result


def assert_no_token(*texts: str | bytes) -> None:
    for text in texts:
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        assert TOKEN not in text, text
        assert TOKEN[:12] not in text, text


async def send_head(conn: ScriptedConnection, head: bytes) -> None:
    """Write *head* as the whole answer so far and keep the connection open (a body that never ends) until the
    proxy leaves."""
    await conn.send_raw(head)
    await conn.wait_eof()


# -- #17: the status line decides ---------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "exit_status"), [(401, 77), (403, 77), (500, 76)])
async def test_refusal_whose_body_never_ends(tmp_path: Path, status: int, exit_status: int) -> None:
    """issue 9 #17: the proxy waited for the body until --connect-timeout and exited 69."""

    async def handler(conn: ScriptedConnection) -> None:
        await send_head(conn, b"HTTP/1.1 %d Nope\r\nContent-Length: 100000\r\n\r\nnot all of it" % status)

    result, _ = await run_scripted(tmp_path, handler, "--connect-timeout", "8")
    assert result.status == exit_status, result.stderr_text
    line = one_line(result.stderr)
    assert f"refused the opening handshake with {status} Nope: not all of it" in line, line


# -- #6: a frame-limit header with a non-ASCII digit -----------------------------------------------------------


@pytest.mark.parametrize("value", [b"\xb2", b"1\xb2", b"9" * 5000])
async def test_frame_limit_header_with_non_ascii_digit_means_the_default(tmp_path: Path, value: bytes) -> None:
    """issue 9 #6: ``int("²")`` raised a ValueError traceback."""
    line = '{"method":"go","id":1}'

    async def handler(conn: ScriptedConnection) -> None:
        header: Any = (MAX_UNFRAGMENTED_HEADER, value)  # h11 takes bytes values as they are
        await conn.accept(extra_headers=[header])
        assert await conn.receive_text() == line
        await conn.send_text('{"id":1,"result":{}}')
        assert await conn.receive_close() == 1000

    result, _ = await run_scripted(tmp_path, handler, stdin=line.encode() + b"\n")
    assert result.status == 0, result.stderr_text
    assert result.stdout == b'{"id":1,"result":{}}\n'
    assert result.stderr == b""


# -- #18: a server that echoes the token everywhere ----------------------------------------------------------


def token_of(conn: ScriptedConnection) -> str:
    value = conn.request.header("authorization")
    assert value == f"Bearer {TOKEN}".encode(), value
    return value.decode()


@pytest.mark.parametrize("where", ["401-body", "403-reason", "h11-error", "long-body-cut"])
async def test_token_echoed_in_a_refusal_never_reaches_stderr(where: str) -> None:
    async def handler(conn: ScriptedConnection) -> None:
        echoed = token_of(conn).encode()
        if where == "401-body":
            await conn.reject(401, b"you sent Authorization: " + echoed)
        elif where == "403-reason":
            await conn.send_raw(b"HTTP/1.1 403 Forbidden for " + echoed + b"\r\nContent-Length: 0\r\n\r\n")
        elif where == "h11-error":  # no colon: h11 refuses the line and quotes it
            await conn.send_raw(b"HTTP/1.1 401 No\r\nAuthorization " + echoed + b"\r\n\r\n")
        else:  # the token across the 4 KiB read bound, after whitespace that collapses
            await conn.reject(401, b" " * (4096 - 10) + echoed)

    result = await run_remote(handler, "-vv")
    assert result.status in (76, 77), result.stderr_text
    assert_no_token(result.stderr)
    lines = stderr_lines(result.stderr)
    assert "refused the opening handshake" in lines[-1] or "did not answer with HTTP" in lines[-1], lines


async def test_token_echoed_after_the_handshake_stays_out_of_trace_and_logs(tmp_path: Path) -> None:
    """The 101 echoes the token in a header (the trace records 101 headers), a message carries it (the trace
    records payloads), and the close reason holds it (logged at -v, in the ending line, in the trace)."""
    trace = tmp_path / "trace.jsonl"

    async def handler(conn: ScriptedConnection) -> None:
        echoed = token_of(conn)
        await conn.accept(extra_headers=[("X-Echo", echoed), ("X-Echo-Json", json.dumps({"t": echoed}))])
        assert await conn.receive_text() == '{"method":"go","id":1}'
        await conn.send_text(json.dumps({"method": "echo", "params": {"seen": echoed}}))  # request 1 stays owed
        await conn.send_close(4000, f"bad {TOKEN}")
        await conn.wait_eof()

    result = await run_remote(handler, "-vv", "--trace", str(trace), stdin=b'{"method":"go","id":1}\n')
    assert result.status == 1, result.stderr_text
    assert TOKEN in result.stdout.decode()  # stdout is the payload, given to the client as sent
    assert_no_token(result.stderr, trace.read_text(encoding="utf-8"))
    records = [json.loads(line) for line in trace.read_text(encoding="utf-8").splitlines()]
    assert any(record.get("event") == "handshake" for record in records)
    assert "[REDACTED]" in trace.read_text(encoding="utf-8")


# -- a few generated answers against the CLI ---------------------------------------------------------------

ECHO = st.sampled_from(["", TOKEN, f"Bearer {TOKEN}"])


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    status=st.sampled_from([200, 301, 400, 401, 403, 404, 500, 503]),
    reason=ECHO,
    body=ECHO,
    complete=st.booleans(),
)
def test_generated_refusals_end_in_their_status_without_the_token(
    status: int, reason: str, body: str, complete: bool
) -> None:
    async def handler(conn: ScriptedConnection) -> None:
        data = body.encode()
        length = len(data) + (0 if complete else 500)
        head = b"HTTP/1.1 %d R %s\r\nContent-Length: %d\r\n\r\n" % (status, reason.encode(), length)
        await send_head(conn, head + data)

    result = trio.run(run_remote, handler, "--connect-timeout", "8")
    assert result.status == (77 if status in (401, 403) else 76), result.stderr_text
    assert_no_token(result.stderr)
    assert f"with {status} R" in one_line(result.stderr)


# -- #8: --remote with a space, non-ASCII, control characters, port 0 ---------------------------------------


async def test_remote_path_with_space_and_non_ascii_is_percent_encoded_on_the_wire() -> None:
    """issue 9 #8: a space gave h11's LocalProtocolError traceback, ``é`` a UnicodeEncodeError."""
    targets: list[bytes] = []

    async def handler(conn: ScriptedConnection) -> None:
        targets.append(conn.request.target)
        await conn.accept()
        assert await conn.receive_close() == 1000

    with trio.fail_after(GUARD):
        async with tcp_scripted_server(handler) as (server, url):
            result = await run_proxy_cli(["--remote", url + "/a bé?q=x y"])
            await server.wait_handled()
    assert result.status == 0, result.stderr_text
    assert targets == [b"/rpc/a%20b%C3%A9?q=x%20y"]


@pytest.mark.parametrize("url", ["ws://127.0.0.1:4500/a\x01b", "ws://127.0.0.1:4500/?q=\x7f", "ws://127.0.0.1:0/"])
async def test_remote_control_character_or_port_0_is_a_usage_error(url: str) -> None:
    result = await run_proxy_cli(["--remote", url])
    assert result.status == 2, result.stderr_text
    assert "--remote" in one_line(result.stderr)
