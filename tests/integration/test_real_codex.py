"""End to end against the real Codex app-server: the proxy runs as a subprocess and finds the server through
``CODEX_HOME`` alone (no ``--sock``)."""

from __future__ import annotations

import base64
import json
import os
import random
import signal
from collections import Counter
from pathlib import Path

import pytest
import trio

from .codex_server import CodexServer, running_codex_server, socket_of
from .jsonrpc import INITIALIZED, JsonObject, initialize, parse_lines, request, result_of
from .proxy_process import ProxyProcess, close_and_finish, run_proxy_cli, running_proxy

pytestmark = pytest.mark.codex

MiB = 1024 * 1024
#: Guards against hangs; never what is measured (the machine is slow and shared).
TIMEOUT = 120


def is_response(message: JsonObject) -> bool:
    return "id" in message and "method" not in message and ("result" in message or "error" in message)


def responses_by_id(messages: list[JsonObject]) -> dict[tuple[type, int | str], JsonObject]:
    """The responses keyed by (type of id, id), checking each id was answered once and none is a server request."""
    server_requests = [m for m in messages if "method" in m and "id" in m]
    assert not server_requests, f"unexpected requests from the server: {server_requests}"
    responses = [m for m in messages if is_response(m)]
    counts = Counter((type(m["id"]), m["id"]) for m in responses)
    assert all(count == 1 for count in counts.values()), counts
    return {(type(m["id"]), m["id"]): m for m in responses}


async def read_response_line(proxy: ProxyProcess, request_id: int | str) -> tuple[bytes, JsonObject]:
    """Read stdout lines until the response to *request_id* (the only one outstanding); notifications on the way
    are skipped. Returns the line and its message."""
    while True:
        raw = await proxy.read_line()
        message = json.loads(raw)
        assert isinstance(message, dict)
        assert not ("method" in message and "id" in message), f"unexpected request from the server: {message}"
        if is_response(message):
            assert message["id"] == request_id, f"expected the response to {request_id!r}, got {message}"
            assert type(message["id"]) is type(request_id)
            return raw, message


async def read_response(proxy: ProxyProcess, request_id: int | str) -> JsonObject:
    return (await read_response_line(proxy, request_id))[1]


async def start_session(proxy: ProxyProcess, codex_home: Path) -> None:
    await proxy.send(initialize(1))
    result = result_of(await read_response(proxy, 1))
    assert result["codexHome"] == str(codex_home)
    await proxy.send(INITIALIZED)


async def test_one_shot_initialize_and_thread_start(codex_server: CodexServer, tmp_path: Path) -> None:
    cwd = tmp_path / "work"
    cwd.mkdir()
    stdin = initialize(1) + INITIALIZED + request(2, "thread/start", {"cwd": str(cwd)})

    done = await run_proxy_cli([], stdin, env=codex_server.env, timeout=TIMEOUT)

    assert done.status == 0, done.stderr_text
    assert done.stderr_text == ""
    messages = parse_lines(done.stdout_lines)
    responses = responses_by_id(messages)
    assert set(responses) == {(int, 1), (int, 2)}
    assert result_of(responses[(int, 1)])["codexHome"] == str(codex_server.codex_home)
    started = result_of(responses[(int, 2)])
    assert isinstance(started["thread"]["id"], str)
    assert started["thread"]["id"]
    assert started["cwd"] == str(cwd)
    assert all("method" in m for m in messages if not is_response(m))  # the rest are notifications


async def test_interactive_thread_start_read_list(codex_server: CodexServer, tmp_path: Path) -> None:
    with trio.fail_after(TIMEOUT):
        async with running_proxy([], env=codex_server.env) as proxy:
            await start_session(proxy, codex_server.codex_home)

            await proxy.send(request(2, "thread/start", {"cwd": str(tmp_path)}))
            thread_id = result_of(await read_response(proxy, 2))["thread"]["id"]
            assert isinstance(thread_id, str)
            assert thread_id

            await proxy.send(request(3, "thread/read", {"threadId": thread_id}))
            assert result_of(await read_response(proxy, 3))["thread"]["id"] == thread_id

            await proxy.send(request(4, "thread/list"))
            assert isinstance(result_of(await read_response(proxy, 4))["data"], list)

            rest = await close_and_finish(proxy)
            assert all(not is_response(m) for m in parse_lines(rest.split(b"\n")[:-1]))
        assert proxy.stderr_text == ""


async def test_string_and_integer_ids_answered_once_each(codex_server: CodexServer, tmp_path: Path) -> None:
    # 7 and "7" are different ids; 0 and "" are ids too. thread/start is slow, so answers overtake each other.
    batch: list[tuple[int | str, str, JsonObject]] = [
        ("start", "thread/start", {"cwd": str(tmp_path)}),
        (7, "thread/list", {}),
        ("7", "thread/list", {}),
        (0, "config/read", {}),
        ("", "thread/loaded/list", {}),
        (2**40, "thread/list", {"limit": 1}),
        ("ids-\u00e9\u2028", "config/read", {}),
        (-3, "thread/loaded/list", {}),
    ]
    stdin = initialize("init") + INITIALIZED + b"".join(request(i, method, params) for i, method, params in batch)

    done = await run_proxy_cli([], stdin, env=codex_server.env, timeout=TIMEOUT)

    assert done.status == 0, done.stderr_text
    assert done.stderr_text == ""
    responses = responses_by_id(parse_lines(done.stdout_lines))
    assert set(responses) == {(str, "init")} | {(type(i), i) for i, _, _ in batch}
    for key, response in responses.items():
        result_of(response)  # every one succeeded
        assert (type(response["id"]), response["id"]) == key
    assert isinstance(result_of(responses[(str, "start")])["thread"]["id"], str)


async def test_twenty_mib_write_then_read_back(codex_server: CodexServer, tmp_path: Path) -> None:
    """Codex drops frames over 16 MiB: a 20 MiB message only gets through fragmented (issue 3)."""
    data = random.Random(3).randbytes(15 * MiB)
    encoded = base64.b64encode(data).decode("ascii")
    assert len(encoded) == 20 * MiB
    path = tmp_path / "big.bin"

    with trio.fail_after(TIMEOUT):
        async with running_proxy([], env=codex_server.env) as proxy:
            await start_session(proxy, codex_server.codex_home)

            write = request(2, "fs/writeFile", {"path": str(path), "dataBase64": encoded})
            assert len(write) > 20 * MiB
            await proxy.send(write)
            assert result_of(await read_response(proxy, 2)) == {}
            assert path.read_bytes() == data

            await proxy.send(request(3, "fs/readFile", {"path": str(path)}))
            raw, response = await read_response_line(proxy, 3)  # one stdout line holds the whole response
            assert len(raw) > 20 * MiB
            assert result_of(response)["dataBase64"] == encoded

            await proxy.send(request(4, "thread/list"))
            assert isinstance(result_of(await read_response(proxy, 4))["data"], list)

            await close_and_finish(proxy)
        assert proxy.stderr_text == ""


START_HINT = "start one with 'codex app-server --listen unix://' or 'codex app-server daemon start'"


async def test_no_server_in_codex_home_exits_69(tmp_path_factory: pytest.TempPathFactory) -> None:
    codex_home = tmp_path_factory.mktemp("nohome")  # short: a socket path over 107 bytes gets another message

    done = await run_proxy_cli([], initialize(1), env={"CODEX_HOME": str(codex_home)}, timeout=TIMEOUT)

    assert done.status == 69
    assert done.stdout == b""
    assert done.stderr_text == f"codex-appserver: no app-server is listening at {socket_of(codex_home)}; {START_HINT}\n"


async def test_codex_home_too_deep_for_a_socket_path(codex_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The socket path in a deep CODEX_HOME is over the 107-byte sun_path limit, but it is a symlink to a short
    path in /tmp/codex-daemon-<uid>/, which is what the proxy connects to."""
    codex_home = tmp_path_factory.mktemp("deep")
    codex_home = codex_home / ("d" * max(1, 120 - len(str(socket_of(codex_home)))))
    with running_codex_server(codex_bin, codex_home) as server:
        assert len(bytes(server.socket_path)) > 107
        done = await run_proxy_cli([], initialize(1), env=server.env, timeout=TIMEOUT)

    assert done.status == 0, done.stderr_text
    assert done.stderr_text == ""
    responses = responses_by_id(parse_lines(done.stdout_lines))
    assert set(responses) == {(int, 1)}
    assert result_of(responses[(int, 1)])["codexHome"] == str(codex_home)


async def test_stopped_server_exits_69(codex_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """A server stopped with SIGTERM removes its socket: the same one-line 69 as when none ever ran."""
    codex_home = tmp_path_factory.mktemp("codex")
    with running_codex_server(codex_bin, codex_home) as server:
        server.stop(signal.SIGTERM)
        assert server.process.returncode == 0
        assert not os.path.lexists(server.socket_path)

        done = await run_proxy_cli([], initialize(1), env=server.env, timeout=TIMEOUT)

    assert done.status == 69
    assert done.stdout == b""
    assert done.stderr_text == f"codex-appserver: no app-server is listening at {socket_of(codex_home)}; {START_HINT}\n"


async def test_killed_server_exits_69(codex_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """A server killed with SIGKILL leaves its socket behind (connection refused); once /tmp is cleared of it, the
    symlink in CODEX_HOME dangles. Both are a one-line 69 that says so."""
    codex_home = tmp_path_factory.mktemp("codex")
    sock = socket_of(codex_home)
    with running_codex_server(codex_bin, codex_home) as server:
        server.stop(signal.SIGKILL)
        assert server.daemon_socket is not None
        assert server.daemon_socket.exists()

        stale = await run_proxy_cli([], initialize(1), env=server.env, timeout=TIMEOUT)

        assert stale.status == 69
        assert stale.stdout == b""
        assert stale.stderr_text == (
            f"codex-appserver: no app-server is listening at {sock} (connection refused: a stale socket file?); "
            f"{START_HINT}\n"
        )
    assert sock.is_symlink()
    assert not sock.exists()  # the leftovers in /tmp/codex-daemon-<uid>/ are gone

    dangling = await run_proxy_cli([], initialize(1), env={"CODEX_HOME": str(codex_home)}, timeout=TIMEOUT)

    assert dangling.status == 69
    assert dangling.stdout == b""
    assert dangling.stderr_text == (
        f"codex-appserver: no app-server is listening at {sock} (a link to {os.readlink(sock)}, which does not "
        f"exist); {START_HINT}\n"
    )


async def test_overload_retry_gets_every_pipelined_request_through(codex_server: CodexServer) -> None:
    """5,000 pipelined requests overflow Codex's 128-slot intake: with retries none of its -32001 errors reaches
    stdout and every request has its real response; with --no-overload-retry the errors come through."""
    count = 5000
    stdin = initialize("init") + INITIALIZED
    stdin += b"".join(request(i, "fs/getMetadata", {"path": "/"}) for i in range(count))
    env = {"CODEX_HOME": str(codex_server.codex_home)}

    with trio.fail_after(TIMEOUT):
        done = await run_proxy_cli(["--drain-timeout", "120"], stdin, env=env)
    assert done.status == 0, done.stderr_text
    answers = [m for m in parse_lines(done.stdout_lines) if is_response(m) and m["id"] != "init"]
    assert sorted(m["id"] for m in answers) == list(range(count))
    assert all("result" in m for m in answers), [m for m in answers if "error" in m][:3]

    with trio.fail_after(TIMEOUT):
        plain = await run_proxy_cli(["--drain-timeout", "120", "--no-overload-retry"], stdin, env=env)
    assert plain.status == 0, plain.stderr_text
    errors = [m for m in parse_lines(plain.stdout_lines) if is_response(m) and "error" in m]
    assert errors, "the intake never overflowed, so this test proves nothing"
    assert {m["error"]["code"] for m in errors} == {-32001}
