"""``proxy --reconnect`` against the real Codex app-server (pinned 0.169.0), turns run by the offline mock model.

- **A dropped connection, the server still running**: a cuttable pipe between the proxy and the control socket
  cuts the connection while a turn waits for a command approval. Measured on 0.169.0: the turn goes on, and
  ``thread/resume`` on the new connection re-sends the approval with the same id. Through one proxy process the
  client sees the approval once, answers it after the reconnect, and the command runs and the turn completes.
- **A restarted server**: the app-server is killed by pid (SIGKILL to its process group) while the approval waits
  and started again with the same ``CODEX_HOME``. Measured on 0.169.0: ``thread/resume`` works (the thread has a
  rollout), the killed turn is not re-run and its approval is not re-sent (``thread/read`` shows that turn
  ``interrupted``), and the new server numbers its requests from 0 again. Through the same proxy process the
  client's answer to the lost approval is never given to the new server's request 0, and its next ``turn/start``
  on the same thread works, approval included.
- **serve --reconnect**: the same kill and restart under a bridge client (``websockets``): its WebSocket stays
  open and its session goes on.
- **--remote**: Codex's own ``ws://`` listener behind a capability token, killed and restarted on the same port:
  the proxy reconnects with the same token and the client's next request is answered.
"""

from __future__ import annotations

import json
import signal
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
from websockets.sync.client import ClientConnection, connect

from proxy.continuity import NOT_RESTORED, REPLAY_ID_PREFIX

from .bridge_process import running_bridge
from .codex_server import STARTUP_TIMEOUT, CodexServer, start_codex_server
from .jsonrpc import INITIALIZED, JsonObject, initialize, initialize_message, line, request
from .mock_responses import FunctionCall, Message, MockResponses
from .proxy_process import ProxyProcess, finish, finished, running_proxy
from .remote_peers import WsCodexServer, running_ws_codex_server
from .scripted_server import short_temp_dir
from .test_turns import (
    ECHO_COMMAND,
    ECHO_OUTPUT,
    HELLO,
    HELLO_PROMPT,
    RUN_CALL,
    RUN_DONE,
    RUN_PROMPT,
    completed_turns,
    hello_turn,
    is_server_request,
    notifications,
    read_until,
    response_to,
    turn_start,
)

pytestmark = pytest.mark.codex

#: Guards against hangs; never what is measured (a restart of the app-server takes seconds on a loaded machine).
TIMEOUT = 180

AGAIN_PROMPT = "Run the command again."
AGAIN_CALL = FunctionCall("exec_command", {"cmd": ECHO_COMMAND}, call_id="call_again")
AGAIN_DONE = Message(("Ran ", "it ", "again."))


# -- a pipe that can be cut ----------------------------------------------------------------------------------


class CuttablePipe:
    """A Unix socket that relays each connection to the app-server's control socket until :meth:`cut`."""

    def __init__(self, path: Path, target: Path) -> None:
        self.path = path
        self.target = target
        self.accepted = 0
        self._scopes: list[trio.CancelScope] = []

    async def serve(self, listener: trio.SocketListener, *, task_status: trio.TaskStatus[None]) -> None:
        async with trio.open_nursery() as nursery:
            task_status.started()
            while True:
                client = await listener.accept()
                self.accepted += 1
                nursery.start_soon(self._relay, client)

    async def _relay(self, client: trio.SocketStream) -> None:
        async with client, await trio.open_unix_socket(str(self.target.resolve())) as server:
            with trio.CancelScope() as scope:
                self._scopes.append(scope)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_copy, client, server, nursery.cancel_scope)
                    nursery.start_soon(_copy, server, client, nursery.cancel_scope)

    def cut(self) -> None:
        """Close every connection relayed so far, both ways, without a close frame."""
        for scope in self._scopes:
            scope.cancel()
        self._scopes.clear()


async def _copy(source: trio.SocketStream, sink: trio.SocketStream, done: trio.CancelScope) -> None:
    while data := await source.receive_some(65536):
        await sink.send_all(data)
    done.cancel()


@asynccontextmanager
async def cuttable_pipe(folder: Path, target: Path) -> AsyncIterator[CuttablePipe]:
    directory, _ = short_temp_dir(folder)
    path = directory / "cut.sock"
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    await sock.bind(str(path))
    sock.listen(16)
    listener = trio.SocketListener(sock)
    pipe = CuttablePipe(path, target)
    try:
        async with listener, trio.open_nursery() as nursery:
            await nursery.start(pipe.serve, listener)
            try:
                yield pipe
            finally:
                nursery.cancel_scope.cancel()
    finally:
        path.unlink(missing_ok=True)


# -- fixtures ------------------------------------------------------------------------------------------------


class Restartable:
    """An app-server whose process can be killed and started again with the same ``CODEX_HOME``."""

    def __init__(self, codex_bin: Path, codex_home: Path) -> None:
        self.codex_bin = codex_bin
        self.codex_home = codex_home
        self.starts = 0
        self.server = self._start()

    def _start(self) -> CodexServer:
        self.starts += 1
        log = self.codex_home.with_name(f"{self.codex_home.name}.{self.starts}.log")
        server = start_codex_server(self.codex_bin, self.codex_home, log)
        try:
            server.wait_until_ready()
        except BaseException:
            self.stop(server)
            raise
        return server

    @staticmethod
    def stop(server: CodexServer, signum: signal.Signals = signal.SIGTERM) -> None:
        server.stop(signum)
        server.remove_leftovers()

    def kill_and_restart(self) -> None:
        """SIGKILL the server's process group (a crash), then start a new server on the same ``CODEX_HOME``."""
        self.stop(self.server, signal.SIGKILL)
        self.server = self._start()


@pytest.fixture
def restartable(
    codex_bin: Path,
    mock_model: MockResponses,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Restartable]:
    codex_home = tmp_path_factory.mktemp("again")
    (codex_home / "config.toml").write_text(mock_model.config_toml(), encoding="utf-8")
    app = Restartable(codex_bin, codex_home)
    try:
        yield app
    finally:
        Restartable.stop(app.server)


# -- helpers -------------------------------------------------------------------------------------------------


def method_is(method: str) -> Callable[[JsonObject], bool]:
    return lambda message: message.get("method") == method


def no_replay_ids(messages: list[JsonObject]) -> None:
    for message in messages:
        assert not (isinstance(message.get("id"), str) and message["id"].startswith(REPLAY_ID_PREFIX)), message


async def approval_of(proxy: ProxyProcess, request_id: int, thread_id: str, prompt: str) -> list[JsonObject]:
    """Start a turn on *thread_id*; read up to its command approval request (the last message returned)."""
    await proxy.send(turn_start(request_id, thread_id, prompt))
    return await read_until(proxy, method_is("item/commandExecution/requestApproval"), requests_allowed=True)


def ran_command(messages: list[JsonObject]) -> bool:
    commands = [
        params["item"]
        for params in notifications(messages, "item/completed")
        if params["item"]["type"] == "commandExecution"
    ]
    return (
        len(commands) == 1 and commands[0]["status"] == "completed" and ECHO_OUTPUT in commands[0]["aggregatedOutput"]
    )


# -- the tests -----------------------------------------------------------------------------------------------


async def test_a_dropped_connection_mid_turn_goes_unnoticed(
    restartable: Restartable,
    mock_model: MockResponses,
    workdir: Path,
    tmp_path: Path,
) -> None:
    mock_model.script(HELLO_PROMPT, HELLO)
    mock_model.script(RUN_PROMPT, RUN_CALL, RUN_DONE)
    server = restartable.server

    with trio.fail_after(TIMEOUT):
        async with (
            cuttable_pipe(tmp_path, server.socket_path) as pipe,
            running_proxy(["--sock", str(pipe.path), "--reconnect", "--notify-reconnect"]) as proxy,
        ):
            thread_id, _ = await hello_turn(proxy, server, workdir, "untrusted")
            before = await approval_of(proxy, 4, thread_id, RUN_PROMPT)
            approval = before[-1]
            assert approval["params"]["itemId"] == RUN_CALL.call_id

            pipe.cut()
            after = await read_until(proxy, method_is("proxy/reconnected"))
            # Codex greets every new connection with configWarning and remoteControl/status/changed: those come
            # again, between the proxy's two notifications.
            ours = [m for m in after if m["method"].startswith("proxy/")]
            assert [m["method"] for m in ours] == ["proxy/reconnecting", "proxy/reconnected"]
            assert ours[0]["params"]["unansweredRequests"] == 0
            assert ours[1]["params"]["resumedThreads"] == [thread_id]
            assert ours[1]["params"]["notRestored"] == list(NOT_RESTORED)

            await proxy.send(line({"id": approval["id"], "result": {"decision": "accept"}}))
            rest = await read_until(
                proxy, lambda m: m.get("method") == "turn/completed" and m["params"]["threadId"] == thread_id
            )
            await proxy.close_stdin()
            ended = await finish(proxy)

    assert pipe.accepted == 2
    result = finished(proxy, ended)
    assert result.status == 0, result.stderr_text
    messages = before + after + rest
    no_replay_ids(messages)
    assert [m for m in messages if is_server_request(m)] == [approval]  # seen once, not again after the resume
    assert [p["requestId"] for p in notifications(rest, "serverRequest/resolved")] == [approval["id"]]
    assert ran_command(rest)
    (completed,) = completed_turns(rest, thread_id)
    assert completed["id"] == response_to(before, 4)["turn"]["id"]
    assert completed["status"] == "completed"
    assert [r.step for r in mock_model.requests_for(RUN_PROMPT)] == [0, 1]  # the turn was not started twice


async def test_a_restarted_app_server_keeps_the_session_going(
    restartable: Restartable,
    mock_model: MockResponses,
    workdir: Path,
    tmp_path: Path,
) -> None:
    mock_model.script(HELLO_PROMPT, HELLO)
    mock_model.script(RUN_PROMPT, RUN_CALL, RUN_DONE)
    mock_model.script(AGAIN_PROMPT, AGAIN_CALL, AGAIN_DONE)
    trace = tmp_path / "trace.jsonl"

    with trio.fail_after(TIMEOUT):
        async with running_proxy(
            ["--reconnect", "--notify-reconnect", "--trace", str(trace)], env=restartable.server.env
        ) as proxy:
            thread_id, _ = await hello_turn(proxy, restartable.server, workdir, "untrusted")
            before = await approval_of(proxy, 4, thread_id, RUN_PROMPT)
            lost_approval = before[-1]
            lost_turn = response_to(before, 4)["turn"]["id"]

            await trio.to_thread.run_sync(restartable.kill_and_restart)
            after = await read_until(proxy, method_is("proxy/reconnected"))
            reconnecting = [m for m in after if m.get("method") == "proxy/reconnecting"]
            assert len(reconnecting) == 1
            reconnected = after[-1]["params"]
            assert reconnected["resumedThreads"] == [thread_id]
            assert reconnected["attempts"] >= 1

            # The client answers the approval of the killed turn: the new server never gets that answer.
            await proxy.send(line({"id": lost_approval["id"], "result": {"decision": "decline"}}))
            # Its next turn on the same thread works; the new server's first request has id 0 again.
            again = await approval_of(proxy, 5, thread_id, AGAIN_PROMPT)
            new_approval = again[-1]
            assert new_approval["id"] == lost_approval["id"] == 0
            assert new_approval["params"]["turnId"] != lost_turn
            await proxy.send(line({"id": new_approval["id"], "result": {"decision": "accept"}}))
            rest = await read_until(
                proxy, lambda m: m.get("method") == "turn/completed" and m["params"]["threadId"] == thread_id
            )
            # What the restarted server kept of the killed turn.
            await proxy.send(
                line({"method": "thread/read", "id": 6, "params": {"threadId": thread_id, "includeTurns": True}})
            )
            read = await read_until(proxy, lambda m: m.get("id") == 6 and "method" not in m)
            await proxy.close_stdin()
            ended = await finish(proxy)

    result = finished(proxy, ended)
    assert result.status == 0, result.stderr_text
    messages = before + after + again + rest + read
    no_replay_ids(messages)
    assert [m for m in messages if is_server_request(m)] == [lost_approval, new_approval]
    assert ran_command(rest)
    (completed,) = completed_turns(rest, thread_id)
    assert completed["status"] == "completed"
    assert completed["id"] == response_to(again, 5)["turn"]["id"]
    turns = {turn["id"]: turn["status"] for turn in response_to(read, 6)["thread"]["turns"]}
    assert turns[lost_turn] == "interrupted"  # killed with the server, not re-run
    assert [r.step for r in mock_model.requests_for(RUN_PROMPT)] == [0]

    # The trace shows what went out: the answer to the lost approval never did; the new one did, once.
    records = [
        json.loads(raw) for raw in trace.read_text(encoding="utf-8").split("\n") if raw
    ]  # not splitlines: U+2028
    sent = [record["msg"] for record in records if record.get("dir") == "out" and "msg" in record]
    answers = [m for m in sent if isinstance(m, dict) and m.get("id") == 0 and "result" in m]
    assert answers == [{"id": 0, "result": {"decision": "accept"}}], answers


async def test_remote_reconnect_sends_the_token_again_after_a_restart(codex_bin: Path, tmp_path: Path) -> None:
    """``--remote`` to Codex's own ``ws://`` listener behind a capability token: after a kill and a restart on the
    same port, the proxy reconnects with the same token, replays ``initialize`` and the client goes on."""
    token = "cap-" + "Rc9x2LmQ4vTz" * 3
    token_file = tmp_path / "token"
    token_file.write_text(token, encoding="utf-8")
    token_file.chmod(0o600)
    auth = ["--ws-auth", "capability-token", "--ws-token-file", str(token_file)]
    home = tmp_path / "home"
    args = ["--remote", "", "--remote-auth-token-env", "RECONNECT_TOKEN", "--reconnect", "--notify-reconnect"]

    with trio.fail_after(TIMEOUT):
        with running_ws_codex_server(codex_bin, home, auth) as ws:
            args[1] = ws.url
            restarted: WsCodexServer | None = None
            try:
                async with running_proxy(args, env={"RECONNECT_TOKEN": token}) as proxy:
                    await proxy.send(initialize(1) + INITIALIZED + request(2, "thread/list", {}))
                    first = await read_until(proxy, lambda m: m.get("id") == 2)
                    assert response_to(first, 1)["codexHome"] == str(home)

                    def restart() -> WsCodexServer:
                        Restartable.stop(ws.server, signal.SIGKILL)
                        log = home.with_name("home-restarted.log")
                        again = WsCodexServer(start_codex_server(codex_bin, home, log, ws.url, auth), ws.port)
                        again.wait_until_ready(STARTUP_TIMEOUT)
                        return again

                    restarted = await trio.to_thread.run_sync(restart)
                    after = await read_until(proxy, method_is("proxy/reconnected"))
                    assert after[-1]["params"]["resumedThreads"] == []
                    await proxy.send(request(3, "thread/list", {}))
                    response_to(await read_until(proxy, lambda m: m.get("id") == 3), 3)
                    await proxy.close_stdin()
                    ended = await finish(proxy)
            finally:
                if restarted is not None:
                    restarted.server.stop()

    result = finished(proxy, ended)
    assert result.status == 0, result.stderr_text
    assert token not in result.stderr_text
    no_replay_ids(first + after)


# -- serve --reconnect: a bridge client's WebSocket outlives the app-server ------------------------------------


class BridgeClient:
    """A ``websockets`` client of the bridge, reading JSON messages."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.seen: list[JsonObject] = []

    def send(self, message: JsonObject) -> None:
        self.ws.send(json.dumps(message))

    def until(self, done: Callable[[JsonObject], bool]) -> list[JsonObject]:
        messages: list[JsonObject] = []
        while True:
            message = json.loads(self.ws.recv(timeout=TIMEOUT))
            assert isinstance(message, dict)
            messages.append(message)
            self.seen.append(message)
            if done(message):
                return messages

    def call(self, request_id: int, method: str, params: JsonObject) -> JsonObject:
        self.send({"method": method, "id": request_id, "params": params})
        return response_to(self.until(lambda m: m.get("id") == request_id and "method" not in m), request_id)

    def turn_until_approval(self, request_id: int, thread_id: str, prompt: str) -> list[JsonObject]:
        self.send(json.loads(turn_start(request_id, thread_id, prompt)))
        return self.until(method_is("item/commandExecution/requestApproval"))


def test_serve_reconnect_keeps_the_bridge_clients_websocket_open_through_a_restart(
    restartable: Restartable,
    mock_model: MockResponses,
    workdir: Path,
) -> None:
    mock_model.script(HELLO_PROMPT, HELLO)
    mock_model.script(RUN_PROMPT, RUN_CALL, RUN_DONE)
    mock_model.script(AGAIN_PROMPT, AGAIN_CALL, AGAIN_DONE)
    socket_path = str(restartable.server.socket_path)

    with (
        running_bridge(["--sock", socket_path, "--reconnect", "--notify-reconnect"]) as bridge,
        connect(bridge.ws_url(), open_timeout=30, max_size=None) as ws,
    ):
        client = BridgeClient(ws)
        client.call(1, "initialize", initialize_message(1)["params"])
        client.send({"method": "initialized"})
        thread_id = client.call(2, "thread/start", {"cwd": str(workdir), "approvalPolicy": "untrusted"})["thread"]["id"]
        client.send(json.loads(turn_start(3, thread_id, HELLO_PROMPT)))
        client.until(lambda m: m.get("method") == "turn/completed")
        lost = client.turn_until_approval(4, thread_id, RUN_PROMPT)[-1]

        restartable.kill_and_restart()
        after = client.until(method_is("proxy/reconnected"))
        assert after[-1]["params"]["resumedThreads"] == [thread_id]

        client.send({"id": lost["id"], "result": {"decision": "decline"}})  # the killed turn's: never sent
        again = client.turn_until_approval(5, thread_id, AGAIN_PROMPT)[-1]
        assert again["id"] == 0 and again["params"]["turnId"] != lost["params"]["turnId"]
        client.send({"id": again["id"], "result": {"decision": "accept"}})
        rest = client.until(lambda m: m.get("method") == "turn/completed")
        assert ran_command(rest)
        assert completed_turns(rest, thread_id)[0]["status"] == "completed"
        no_replay_ids(client.seen)
        assert [m for m in client.seen if is_server_request(m)] == [lost, again]
        ws.close()
        assert bridge.count_lines(r"reconnected to .*; the session is restored \(1 thread resumed\)") == 1
