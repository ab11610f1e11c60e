"""``proxy --reconnect`` against a scripted server that drops the connection and takes the reconnect.

The server plays Codex's part as measured on 0.169.0: after a drop, a new connection that replays ``initialize``
and ``initialized`` and calls ``thread/resume`` gets the rest of the live turn, and the pending approval is re-sent
with the same id. The client (the proxy as a subprocess, its stdio) must see one session: the request in flight at
the drop answered with the documented error, the approval once, its answer delivered, the rest of the turn, the
messages it wrote meanwhile sent after the replay and in order, and never a reply to the proxy's own requests.
Also: which endings are reconnected, the "is closing" retry, a refused replay, the hold bound, a reconnect that
never succeeds (``proxy`` exits 1; ``serve`` closes that client with 1012).
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import trio
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from proxy.continuity import CONNECTION_LOST, CONNECTION_LOST_MESSAGE, HOLD_LIMIT_BYTES, NOT_RESTORED, REPLAY_ID_PREFIX

from .bridge_process import run_bridge_cli, running_bridge
from .jsonrpc import initialize_message
from .proxy_process import Finished, ProxyProcess, finish, finished, run_proxy_cli, running_proxy
from .scripted_server import ScriptedConnection, ScriptedServer, open_scripted_server
from .test_scripted_server import GUARD, compact, jsonl, sock_args, stderr_lines
from .websockets_peer import PeerLog, PeerPool

JsonObject = dict[str, Any]

THREAD = "thr_1"
TURN = "turn_1"
INITIALIZE = initialize_message(1)
APPROVAL = {
    "method": "item/commandExecution/requestApproval",
    "id": 0,
    "params": {"threadId": THREAD, "turnId": TURN, "itemId": "call_1", "command": "echo caf\u00e9"},
}
ANSWER = {"id": 0, "result": {"decision": "accept"}}


def delta(text: str) -> JsonObject:
    return {"method": "item/agentMessage/delta", "params": {"threadId": THREAD, "turnId": TURN, "delta": text}}


async def receive_json(conn: ScriptedConnection) -> JsonObject:
    message = json.loads(await conn.receive_text())
    assert isinstance(message, dict)
    return message


async def read_json(proxy: ProxyProcess) -> JsonObject:
    message = json.loads(await proxy.read_line())
    assert isinstance(message, dict)
    return message


async def opening(conn: ScriptedConnection) -> None:
    """The client's own session: initialize, initialized, thread/start, turn/start (ids 1, 2, 3)."""
    await conn.accept()
    assert await receive_json(conn) == INITIALIZE
    await conn.send_text(compact({"id": 1, "result": {"userAgent": "scripted/0"}}))
    assert await receive_json(conn) == {"method": "initialized"}
    assert (await receive_json(conn))["method"] == "thread/start"
    await conn.send_text(compact({"id": 2, "result": {"thread": {"id": THREAD}}}))
    assert (await receive_json(conn))["method"] == "turn/start"
    await conn.send_text(compact({"id": 3, "result": {"turn": {"id": TURN, "status": "inProgress"}}}))


async def replayed(conn: ScriptedConnection) -> None:
    """The proxy's replay on a new connection: initialize with the client's params under a replay id, then
    initialized and thread/resume for the thread, answered."""
    await conn.accept()
    replay = await receive_json(conn)
    assert replay["method"] == "initialize" and replay["params"] == INITIALIZE["params"]
    assert isinstance(replay["id"], str) and replay["id"].startswith(REPLAY_ID_PREFIX)
    await conn.send_text(compact({"id": replay["id"], "result": {"userAgent": "scripted/0"}}))
    assert await receive_json(conn) == {"method": "initialized"}
    resume = await receive_json(conn)
    assert resume["method"] == "thread/resume"
    assert resume["params"] == {"threadId": THREAD, "excludeTurns": True}
    assert resume["id"].startswith(REPLAY_ID_PREFIX) and resume["id"] != replay["id"]
    await conn.send_text(compact({"id": resume["id"], "result": {"thread": {"id": THREAD}}}))


CLIENT_OPENING = jsonl(
    INITIALIZE,
    {"method": "initialized"},
    {"method": "thread/start", "id": 2, "params": {"cwd": "/w"}},
    {"method": "turn/start", "id": 3, "params": {"threadId": THREAD, "input": []}},
)


async def test_a_drop_mid_turn_is_invisible_and_the_approval_is_answered_on_the_new_connection(
    tmp_path: Path,
) -> None:
    """The connection drops while an approval waits and a request is in flight; the client answers the approval
    and sends a request while the proxy reconnects. The held answer goes out when the server re-sends the
    approval (which the client does not see again), then the held request; the turn finishes."""
    may_accept_again = trio.Event()
    second: list[JsonObject] = []

    async def handler(conn: ScriptedConnection) -> None:
        if conn is server.connections[0]:
            await opening(conn)
            await conn.send_text(compact(delta("Hel")))
            await conn.send_text(compact(APPROVAL))
            assert await receive_json(conn) == {"method": "thread/list", "id": 4, "params": {}}
            await conn.abort()  # no close frame: a crash, a restart, a cut tunnel
            return
        await may_accept_again.wait()
        await replayed(conn)
        await conn.send_text(compact(APPROVAL))  # Codex re-sends the pending approval after thread/resume
        second.extend([await receive_json(conn), await receive_json(conn)])  # the held request, then answer
        await conn.send_text(
            compact({"method": "serverRequest/resolved", "params": {"threadId": THREAD, "requestId": 0}})
        )
        await conn.send_text(compact(delta("lo")))
        await conn.send_text(
            compact({"method": "turn/completed", "params": {"threadId": THREAD, "turn": {"id": TURN}}})
        )
        await conn.send_text(compact({"id": 5, "result": {"data": []}}))
        assert await conn.receive_close() == 1000

    with trio.fail_after(GUARD):
        async with (
            open_scripted_server(tmp_path, handler) as server,
            running_proxy(sock_args(server, "--reconnect", "--notify-reconnect")) as proxy,
        ):
            await proxy.send(CLIENT_OPENING)
            seen = [await read_json(proxy) for _ in range(5)]
            assert [m.get("id") for m in seen[:3]] == [1, 2, 3]
            assert seen[3] == delta("Hel") and seen[4] == APPROVAL
            await proxy.send(jsonl({"method": "thread/list", "id": 4, "params": {}}))

            reconnecting = await read_json(proxy)
            assert reconnecting["method"] == "proxy/reconnecting"
            assert reconnecting["params"]["unansweredRequests"] == 1
            assert reconnecting["params"]["timeoutMs"] == 60000
            lost = await read_json(proxy)
            assert lost == {
                "id": 4,
                "error": {
                    "code": CONNECTION_LOST,
                    "message": CONNECTION_LOST_MESSAGE,
                    "data": {"method": "thread/list"},
                },
            }

            # While the proxy reconnects: the approval's answer and a new request, both held.
            await proxy.send(jsonl(ANSWER, {"method": "thread/list", "id": 5, "params": {}}))
            await trio.sleep(0.3)  # both lines are read by now; nothing can go out until the server accepts
            may_accept_again.set()

            rest = [await read_json(proxy) for _ in range(5)]
            await proxy.close_stdin()
            ended = await finish(proxy)
        await server.wait_handled(2)

    reconnected = rest[0]
    assert reconnected["method"] == "proxy/reconnected"
    assert reconnected["params"]["attempts"] >= 1
    assert reconnected["params"]["resumedThreads"] == [THREAD]
    assert reconnected["params"]["droppedThreads"] == []
    assert reconnected["params"]["notRestored"] == list(NOT_RESTORED)
    # The approval is not delivered a second time; the turn goes on; the held request is answered.
    assert rest[1:] == [
        {"method": "serverRequest/resolved", "params": {"threadId": THREAD, "requestId": 0}},
        delta("lo"),
        {"method": "turn/completed", "params": {"threadId": THREAD, "turn": {"id": TURN}}},
        {"id": 5, "result": {"data": []}},
    ]
    # Both held messages go out once, after the replay: the request once the session is restored, the answer once
    # the server has re-sent its request (before that it could belong to a server that is gone, whose id 0 is now
    # another request). Their order depends on when the proxy read them; the unit tests pin each case down.
    held = [{"method": "thread/list", "id": 5, "params": {}}, ANSWER]
    assert sorted(second, key=compact) == sorted(held, key=compact)

    result = finished(proxy, ended)
    assert result.status == 0, result.stderr_text
    assert result.stdout == b""
    lines = stderr_lines(result.stderr)
    assert len(lines) == 2, lines
    assert lines[0].startswith(f"lost the connection to the app-server at {server.path}")
    assert lines[0].endswith("reconnecting (--reconnect, up to 60 s)")
    assert lines[1] == f"reconnected to {server.path}; the session is restored (1 thread resumed)"


async def test_an_approval_answered_after_the_reconnect_goes_through_and_is_seen_once(tmp_path: Path) -> None:
    """Without --notify-reconnect the client sees nothing of the proxy's own: only the rest of the turn."""

    async def handler(conn: ScriptedConnection) -> None:
        if conn is server.connections[0]:
            await opening(conn)
            await conn.send_text(compact(APPROVAL))
            await conn.abort()
            return
        await replayed(conn)
        await conn.send_text(compact(APPROVAL))
        await conn.send_text(compact(delta("after")))
        assert await receive_json(conn) == ANSWER
        await conn.send_text(
            compact({"method": "turn/completed", "params": {"threadId": THREAD, "turn": {"id": TURN}}})
        )
        assert await conn.receive_close() == 1000

    with trio.fail_after(GUARD):
        async with (
            open_scripted_server(tmp_path, handler) as server,
            running_proxy(sock_args(server, "--reconnect")) as proxy,
        ):
            await proxy.send(CLIENT_OPENING)
            seen = [await read_json(proxy) for _ in range(4)]
            assert seen[3] == APPROVAL
            assert await read_json(proxy) == delta("after")  # after the reconnect; no approval in between
            await proxy.send(jsonl(ANSWER))
            assert (await read_json(proxy))["method"] == "turn/completed"
            await proxy.close_stdin()
            ended = await finish(proxy)
        await server.wait_handled(2)

    result = finished(proxy, ended)
    assert result.status == 0, result.stderr_text
    assert result.stdout == b""


async def test_a_reconnect_that_never_succeeds_ends_as_a_lost_connection(tmp_path: Path) -> None:
    """The server goes away for good: after --reconnect-timeout the proxy exits 1, as without --reconnect, and
    says how long it tried; a client that asked is told so too."""
    timeout = 2.0
    unlinked = trio.Event()
    dropped = trio.Event()

    async def handler(conn: ScriptedConnection) -> None:
        await conn.accept()
        assert await receive_json(conn) == INITIALIZE
        await conn.send_text(compact({"id": 1, "result": {}}))
        await unlinked.wait()  # drop only once nothing listens: a first attempt must not reach this server
        await conn.abort()
        dropped.set()

    with trio.fail_after(GUARD):
        async with open_scripted_server(tmp_path, handler) as server:
            path = server.path
            async with running_proxy(
                sock_args(server, "--reconnect", "--reconnect-timeout", str(timeout), "--notify-reconnect")
            ) as proxy:
                await proxy.send(jsonl(INITIALIZE))
                assert (await read_json(proxy))["id"] == 1
                server.path.unlink()  # nothing listens any more: every attempt is refused
                unlinked.set()
                await dropped.wait()
                lost_at = time.monotonic()
                notes = [await read_json(proxy), await read_json(proxy)]
                ended = await finish(proxy)
                elapsed = time.monotonic() - lost_at

    result = finished(proxy, ended)
    assert result.status == 1
    assert timeout - 0.2 <= elapsed < timeout + 10, elapsed  # the upper bound only guards a slow machine
    assert notes[0]["method"] == "proxy/reconnecting"
    failed = notes[1]
    assert failed["method"] == "proxy/reconnectFailed"
    attempts = failed["params"]["attempts"]
    assert attempts >= 1  # about 5 in 2 s; fewer on a loaded machine
    assert f"no app-server is listening at {path}" in failed["params"]["reason"]
    assert timeout * 1000 <= failed["params"]["durationMs"] < (timeout + 5) * 1000
    lines = stderr_lines(result.stderr)
    assert len(lines) == 2, lines
    assert lines[0].endswith(f"reconnecting (--reconnect, up to {timeout:g} s)")
    assert lines[1].startswith(f"lost the connection to the app-server at {path}")
    plural = "s" if attempts != 1 else ""
    assert f"gave up reconnecting after {attempts} attempt{plural} in {timeout:g} s" in lines[1]
    assert lines[1].endswith("see --reconnect-timeout")


async def resume_only(conn: ScriptedConnection, answer: JsonObject | None = None) -> JsonObject:
    """Accept, answer the replayed initialize; return the replayed thread/resume after ``initialized``."""
    await conn.accept()
    replay = await receive_json(conn)
    await conn.send_text(compact({"id": replay["id"], "result": {}}))
    assert await receive_json(conn) == {"method": "initialized"}
    return await receive_json(conn)


async def test_close_1012_from_the_server_is_reconnected_1000_is_not(tmp_path: Path) -> None:
    """1012 (service restart) and 1001 (going away) mean "come back"; 1000 is the server ending the session."""

    async def handler(conn: ScriptedConnection) -> None:
        index = server.connections.index(conn)
        if index == 0:
            await opening(conn)
            await conn.send_close(1012, "restarting")
            assert await conn.receive_close() == 1012  # the proxy echoes the code (RFC 6455 §5.5.1)
            return
        resume = await resume_only(conn)
        await conn.send_text(compact({"id": resume["id"], "result": {"thread": {"id": THREAD}}}))
        await conn.send_text(compact(delta("still here")))
        await conn.send_close(1000)
        assert await conn.receive_close() == 1000

    with trio.fail_after(GUARD):
        async with (
            open_scripted_server(tmp_path, handler) as server,
            running_proxy(sock_args(server, "--reconnect")) as proxy,
        ):
            await proxy.send(CLIENT_OPENING)
            ended = await finish(proxy)
        await server.wait_handled(2)

    result = finished(proxy, ended)
    assert result.status == 0, result.stderr_text
    lines = result.stdout_lines
    assert [json.loads(raw).get("id") for raw in lines[:3]] == [1, 2, 3]
    assert [json.loads(raw) for raw in lines[3:]] == [delta("still here")]
    messages = stderr_lines(result.stderr)
    assert messages[0].endswith("closed the connection (1012 restarting); reconnecting (--reconnect, up to 60 s)")
    assert messages[-1].endswith("closed the connection (1000)")


async def test_a_closing_thread_is_resumed_again(tmp_path: Path) -> None:
    """Codex answers thread/resume with -32600 "thread ... is closing" while it unloads the thread; the proxy
    sends it again after a backoff, as Codex's TUI does, and only then sends what the client wrote meanwhile."""
    resumes: list[JsonObject] = []
    reconnected = trio.Event()

    async def handler(conn: ScriptedConnection) -> None:
        if conn is server.connections[0]:
            await opening(conn)
            await conn.abort()
            return
        reconnected.set()
        resume = await resume_only(conn)
        resumes.append(resume)
        closing = f"thread {THREAD} is closing; retry thread/resume after the thread is closed"
        await conn.send_text(compact({"id": resume["id"], "error": {"code": -32600, "message": closing}}))
        again = await receive_json(conn)
        resumes.append(again)
        await conn.send_text(compact({"id": again["id"], "result": {"thread": {"id": THREAD}}}))
        assert await receive_json(conn) == {"method": "thread/list", "id": 9, "params": {}}
        await conn.send_text(compact({"id": 9, "result": {"data": []}}))
        assert await conn.receive_close() == 1000

    with trio.fail_after(GUARD):
        async with (
            open_scripted_server(tmp_path, handler) as server,
            running_proxy(sock_args(server, "--reconnect")) as proxy,
        ):
            await proxy.send(CLIENT_OPENING)
            for _ in range(3):
                await read_json(proxy)
            # Written once the proxy has seen the first connection go (it is reconnecting): a line it read before
            # that went out on the lost connection and is answered -32099, which is right but not this test.
            await reconnected.wait()
            await proxy.send(jsonl({"method": "thread/list", "id": 9, "params": {}}))
            assert await read_json(proxy) == {"id": 9, "result": {"data": []}}
            await proxy.close_stdin()
            ended = await finish(proxy)
        await server.wait_handled(2)

    assert finished(proxy, ended).status == 0
    assert [r["params"] for r in resumes] == [{"threadId": THREAD, "excludeTurns": True}] * 2
    assert resumes[0]["id"] != resumes[1]["id"]


async def test_a_refused_replay_ends_the_session_at_once(tmp_path: Path) -> None:
    """A new connection that refuses the replayed initialize cannot restore the session: exit 1 without waiting
    for --reconnect-timeout, and the client's held request gets no answer from a session that is gone."""

    async def handler(conn: ScriptedConnection) -> None:
        if conn is server.connections[0]:
            await conn.accept()
            assert await receive_json(conn) == INITIALIZE
            await conn.send_text(compact({"id": 1, "result": {}}))
            await conn.abort()
            return
        await conn.accept()
        replay = await receive_json(conn)
        await conn.send_text(compact({"id": replay["id"], "error": {"code": -32600, "message": "Already initialized"}}))
        await conn.wait_eof()

    with trio.fail_after(GUARD):
        async with open_scripted_server(tmp_path, handler) as server:
            result = await run_proxy_cli_open(server)
        await server.wait_handled(2)

    assert result.status == 1
    lines = stderr_lines(result.stderr)
    assert lines[-1].startswith(f"lost the connection to the app-server at {server.path}")
    assert "gave up reconnecting after 1 attempt in 60 s" in lines[-1]
    assert "the app-server refused the replayed initialize (-32600 Already initialized)" in lines[-1]


async def run_proxy_cli_open(server: ScriptedServer) -> Finished:
    """The proxy with --reconnect, stdin an initialize and then left open until the proxy exits."""
    async with running_proxy(sock_args(server, "--reconnect")) as proxy:
        await proxy.send(jsonl(INITIALIZE))
        ended = await finish(proxy)
    return finished(proxy, ended)


async def test_a_server_that_stops_answering_pings_is_reconnected(tmp_path: Path) -> None:
    async def handler(conn: ScriptedConnection) -> None:
        if conn is server.connections[0]:
            await opening(conn)
            await trio.sleep_forever()  # reads nothing, so the proxy's pings go unanswered
        resume = await resume_only(conn)
        await conn.send_text(compact({"id": resume["id"], "result": {"thread": {"id": THREAD}}}))
        assert await receive_json(conn) == {"method": "thread/list", "id": 4, "params": {}}
        await conn.send_text(compact({"id": 4, "result": {"data": []}}))
        assert await conn.receive_close() == 1000

    with trio.fail_after(GUARD):
        async with (
            open_scripted_server(tmp_path, handler) as server,
            running_proxy(
                sock_args(
                    server, "--reconnect", "--notify-reconnect", "--ping-interval", "0.5", "--ping-timeout", "0.5"
                )
            ) as proxy,
        ):
            await proxy.send(CLIENT_OPENING)
            for _ in range(3):
                await read_json(proxy)
            assert (await read_json(proxy))["method"] == "proxy/reconnecting"
            assert (await read_json(proxy))["method"] == "proxy/reconnected"
            await proxy.send(jsonl({"method": "thread/list", "id": 4, "params": {}}))
            assert await read_json(proxy) == {"id": 4, "result": {"data": []}}
            await proxy.close_stdin()
            ended = await finish(proxy)
            assert len(server.connections) == 2
            await server.connections[1].handled.wait()

    result = finished(proxy, ended)
    assert result.status == 0, result.stderr_text
    assert "stopped answering: no pong within 0.5 s" in stderr_lines(result.stderr)[0]


async def test_held_lines_are_bounded_and_all_sent_in_order(tmp_path: Path) -> None:
    """While the proxy reconnects it holds what stdin brings up to 16 MiB, then stops reading stdin
    (backpressure); once the session is restored every line goes out, in order."""
    count, size = 20_000, 1024  # about 20 MiB: more than the proxy holds
    pad = "p" * (size - 60)
    lines = [compact({"method": "t/n", "params": {"seq": seq, "pad": pad}}).encode() + b"\n" for seq in range(count)]
    may_accept = trio.Event()
    received: list[int] = []

    async def handler(conn: ScriptedConnection) -> None:
        if conn is server.connections[0]:
            await conn.accept()
            assert await receive_json(conn) == INITIALIZE
            await conn.send_text(compact({"id": 1, "result": {}}))
            await conn.abort()
            return
        await may_accept.wait()
        await conn.accept()
        replay = await receive_json(conn)
        await conn.send_text(compact({"id": replay["id"], "result": {}}))
        while len(received) < count:
            received.append((await receive_json(conn))["params"]["seq"])
        assert await conn.receive_close() == 1000

    written = 0

    async def write_all(proxy: ProxyProcess) -> None:
        nonlocal written
        for index in range(0, count, 100):
            chunk = b"".join(lines[index : index + 100])
            await proxy.send(chunk)
            written += len(chunk)
        await proxy.close_stdin()

    with trio.fail_after(GUARD * 4):
        async with (
            open_scripted_server(tmp_path, handler) as server,
            running_proxy(sock_args(server, "--reconnect", "--connect-timeout", "60")) as proxy,
        ):
            await proxy.send(jsonl(INITIALIZE))
            assert (await read_json(proxy))["id"] == 1
            while len(server.connections) < 2:  # the first connection is gone and the proxy tries again
                await trio.sleep(0.05)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(write_all, proxy)
                while written < HOLD_LIMIT_BYTES:  # the proxy reads (and holds) up to its bound...
                    await trio.sleep(0.05)
                await trio.sleep(1)  # ...and no further: a second is ample to read the rest, were it not bounded
                assert written < count * size, written
                may_accept.set()
            ended = await finish(proxy)
        await server.wait_handled(2)

    assert finished(proxy, ended).status == 0
    assert received == list(range(count))


def read_until_closed(ws: ClientConnection) -> list[JsonObject]:
    """Every message until the bridge closes the connection."""
    messages: list[JsonObject] = []
    try:
        while True:
            messages.append(json.loads(ws.recv(timeout=GUARD)))
    except ConnectionClosed:
        return messages


# -- serve --reconnect ------------------------------------------------------------------------------------------


def test_serve_closes_a_client_with_1012_when_reconnecting_fails() -> None:
    """The daemon goes away for good: after --reconnect-timeout the bridge closes that client with 1012, as
    without --reconnect, having told it with proxy/reconnecting and proxy/reconnectFailed."""
    pool = PeerPool()
    unlinked = threading.Event()

    async def close_once_unlinked(connection: ServerConnection, log: PeerLog) -> None:
        # Drop only once nothing listens at the path: a fast first attempt must not reach this peer again.
        log.received(str(await connection.recv()))
        await connection.send('{"method":"last words"}')
        while not unlinked.is_set():
            await asyncio.sleep(0.01)
        connection.transport.abort()

    try:
        peer = pool.start(close_once_unlinked)
        args = ["--sock", peer.path, "--reconnect", "--reconnect-timeout", "1", "--notify-reconnect"]
        with (
            running_bridge(args) as bridge,
            connect(bridge.ws_url(), open_timeout=30, close_timeout=10) as ws,
        ):
            ws.send(compact(INITIALIZE))
            assert json.loads(ws.recv(timeout=GUARD)) == {"method": "last words"}
            os.unlink(peer.path)  # nothing listens there any more
            unlinked.set()
            notes = read_until_closed(ws)
            close = ws.protocol.close_rcvd
            assert close is not None
            assert (close.code, close.reason) == (1012, "the app-server connection was lost")
            bridge.wait_for_line(r"gave up reconnecting after \d+ attempts? in 1 s: no app-server is listening")
    finally:
        pool.close()

    reconnecting, lost, failed = notes
    assert reconnecting["method"] == "proxy/reconnecting"
    assert lost["id"] == 1 and lost["error"]["code"] == CONNECTION_LOST  # the initialize had no answer
    assert failed["method"] == "proxy/reconnectFailed"
    assert failed["params"]["durationMs"] >= 1000


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--notify-reconnect"], "--notify-reconnect needs --reconnect"),
        (["--reconnect-timeout", "5"], "--reconnect-timeout needs --reconnect"),
        (["--reconnect", "--raw"], "--reconnect cannot be combined with --raw"),
        (["--reconnect", "--reconnect-timeout", "0"], "Invalid value for '--reconnect-timeout'"),
    ],
)
async def test_reconnect_usage_errors_exit_2(tmp_path: Path, args: list[str], error: str) -> None:
    done = await run_proxy_cli(["--sock", str(tmp_path / "none.sock"), *args])
    assert done.status == 2
    assert error in done.stderr_text
    assert done.stdout == b""


def test_serve_reconnect_usage_error_exits_2() -> None:
    status, stderr = run_bridge_cli(["--notify-reconnect"])
    assert status == 2
    assert "--notify-reconnect needs --reconnect" in stderr
