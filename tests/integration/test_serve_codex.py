"""``codex-appserver serve`` in front of the real Codex app-server (pinned version), its model replaced by the
offline mock of :mod:`tests.integration.mock_responses`:

- a `websockets` client runs a whole session through the bridge: initialize (the daemon's ``codexHome``), a
  thread, a turn that streams deltas, a command approval it answers, ``turn/completed``;
- one live session, two clients: a ``codex-appserver proxy`` client on the control socket resumes the thread a
  bridge client drives, and receives the same deltas; the approval answered by the bridge client is resolved for
  both;
- TLS with a trustme CA, the host name checked, with the `websockets` client and with ``proxy --remote wss://``;
- the daemon stopping: clients closed with 1012, ``/readyz`` 503, a new client 503.
"""

from __future__ import annotations

import json
import queue
import secrets
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trustme
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from .bridge_process import BridgeProcess, http_request, running_bridge
from .codex_server import CodexServer
from .jsonrpc import JsonObject, initialize_message
from .mock_responses import Message, MockResponses
from .proxy_process import ROOT, proxy_argv, proxy_env
from .test_turns import ECHO_OUTPUT, HELLO, HELLO_PROMPT, RUN_CALL, RUN_DONE, RUN_PROMPT

pytestmark = pytest.mark.codex

TOKEN = secrets.token_urlsafe(32)
#: Guards against hangs only.
TIMEOUT = 120.0


def bridge_env(server: CodexServer) -> dict[str, str]:
    return {**server.env, "BRIDGE_TOKEN": TOKEN}


# -- a JSON-RPC session over any client ------------------------------------------------------------------


class Session:
    """A JSON-RPC client session: *send* one message, *receive* the next (None at the end)."""

    def __init__(self, send: Callable[[str], None], receive: Callable[[float], str | None]) -> None:
        self._send = send
        self._receive = receive
        self.seen: list[JsonObject] = []

    def send(self, message: JsonObject) -> None:
        self._send(json.dumps(message))

    def read_until(self, done: Callable[[JsonObject], bool], timeout: float = TIMEOUT) -> list[JsonObject]:
        """Messages up to and including the first one *done* accepts."""
        deadline = time.monotonic() + timeout
        messages: list[JsonObject] = []
        while True:
            text = self._receive(max(0.01, deadline - time.monotonic()))
            assert text is not None, f"the session ended; last messages: {messages[-3:]}"
            message = json.loads(text)
            messages.append(message)
            self.seen.append(message)
            if done(message):
                return messages

    def call(self, request_id: int, method: str, params: JsonObject) -> JsonObject:
        self.send({"method": method, "id": request_id, "params": params})
        response = self.read_until(lambda m: m.get("id") == request_id and "method" not in m)[-1]
        assert "result" in response, response
        result: JsonObject = response["result"]
        return result

    def start(self, name: str) -> JsonObject:
        result = self.call(1, "initialize", initialize_message(1, name)["params"])
        self.send({"method": "initialized"})
        return result


def ws_session(ws: ClientConnection) -> Session:
    def receive(timeout: float) -> str | None:
        try:
            message = ws.recv(timeout=timeout)
        except ConnectionClosed:
            return None
        assert isinstance(message, str)
        return message

    return Session(ws.send, receive)


class ProxyClient:
    """``codex-appserver proxy`` on the control socket, as a subprocess with pipes; stdout read by a thread."""

    def __init__(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            proxy_argv(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=proxy_env(env),
            cwd=str(ROOT),
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.session = Session(self._send, self._receive)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line.decode("utf-8"))
        self._lines.put(None)

    def _send(self, text: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(text.encode("utf-8") + b"\n")
        self.process.stdin.flush()

    def _receive(self, timeout: float) -> str | None:
        return self._lines.get(timeout=timeout)

    def close(self) -> int:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            return self.process.wait(timeout=30)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            for pipe in (self.process.stdout, self.process.stderr):
                if pipe is not None:
                    pipe.close()


def bridge_client(bridge: BridgeProcess, **kwargs: Any) -> ClientConnection:
    kwargs.setdefault("additional_headers", [("Authorization", f"Bearer {TOKEN}")])
    kwargs.setdefault("open_timeout", 30)
    kwargs.setdefault("max_size", None)
    connection: ClientConnection = connect(kwargs.pop("url", bridge.ws_url()), **kwargs)
    return connection


def turn_start(request_id: int, thread_id: str, text: str) -> JsonObject:
    return {
        "method": "turn/start",
        "id": request_id,
        "params": {"threadId": thread_id, "input": [{"type": "text", "text": text}]},
    }


def ends_turn(thread_id: str) -> Callable[[JsonObject], bool]:
    return lambda m: m.get("method") == "turn/completed" and m["params"]["threadId"] == thread_id


def deltas(messages: list[JsonObject], turn_id: str) -> list[str]:
    return [
        m["params"]["delta"]
        for m in messages
        if m.get("method") == "item/agentMessage/delta" and m["params"]["turnId"] == turn_id
    ]


def turn_id_of(messages: list[JsonObject], request_id: int) -> str:
    (response,) = [m for m in messages if m.get("id") == request_id and "method" not in m]
    turn_id: str = response["result"]["turn"]["id"]
    return turn_id


def resolved(messages: list[JsonObject]) -> list[object]:
    return [m["params"]["requestId"] for m in messages if m.get("method") == "serverRequest/resolved"]


def read_to_close(ws: ClientConnection) -> tuple[int, str] | None:
    """Read until the connection closes; the close frame received (code, reason), None without one."""
    deadline = time.monotonic() + TIMEOUT
    try:
        while time.monotonic() < deadline:
            ws.recv(timeout=max(0.01, deadline - time.monotonic()))
    except ConnectionClosed:
        pass
    close = ws.protocol.close_rcvd
    return None if close is None else (int(close.code), close.reason)


def is_approval(message: JsonObject) -> bool:
    return message.get("method") == "item/commandExecution/requestApproval"


# -- the tests -----------------------------------------------------------------------------------------------


def test_a_bridge_client_runs_a_turn_and_answers_a_command_approval(
    turn_server: CodexServer, mock_model: MockResponses, workdir: Path
) -> None:
    mock_model.script(HELLO_PROMPT, HELLO)
    mock_model.script(RUN_PROMPT, RUN_CALL, RUN_DONE)
    with (
        running_bridge(["--token-env", "BRIDGE_TOKEN", "-vv"], env=bridge_env(turn_server)) as bridge,
        bridge_client(bridge) as ws,
    ):
        session = ws_session(ws)
        assert session.start("bridge-client")["codexHome"] == str(turn_server.codex_home)
        thread = session.call(2, "thread/start", {"cwd": str(workdir), "approvalPolicy": "untrusted"})
        thread_id = thread["thread"]["id"]

        session.send(turn_start(3, thread_id, HELLO_PROMPT))
        first = session.read_until(ends_turn(thread_id))
        assert deltas(first, turn_id_of(first, 3)) == list(HELLO.deltas)

        session.send(turn_start(4, thread_id, RUN_PROMPT))
        before = session.read_until(is_approval)
        approval = before[-1]
        assert approval["params"]["threadId"] == thread_id
        session.send({"id": approval["id"], "result": {"decision": "accept"}})
        after = session.read_until(ends_turn(thread_id))
        assert resolved(after) == [approval["id"]]
        assert deltas(before + after, turn_id_of(before, 4)) == list(RUN_DONE.deltas)
        commands = [
            m["params"]["item"]
            for m in after
            if m.get("method") == "item/completed" and m["params"]["item"]["type"] == "commandExecution"
        ]
        assert ECHO_OUTPUT in commands[0]["aggregatedOutput"]
        assert after[-1]["params"]["turn"]["status"] == "completed"
    # -vv logs each message's method and size, never a payload or the token.
    stderr = bridge.stderr_text
    assert "request turn/start id=4" in stderr
    assert TOKEN not in stderr
    assert HELLO_PROMPT not in stderr
    assert ECHO_OUTPUT not in stderr


def test_one_live_session_two_clients(turn_server: CodexServer, mock_model: MockResponses, workdir: Path) -> None:
    mock_model.script(HELLO_PROMPT, HELLO)
    mock_model.script(RUN_PROMPT, RUN_CALL, RUN_DONE)
    with (
        running_bridge(["--token-env", "BRIDGE_TOKEN"], env=bridge_env(turn_server)) as bridge,
        bridge_client(bridge) as ws,
    ):
        phone = ws_session(ws)
        phone.start("phone")
        thread_id = phone.call(2, "thread/start", {"cwd": str(workdir), "approvalPolicy": "untrusted"})["thread"]["id"]
        phone.send(turn_start(3, thread_id, HELLO_PROMPT))
        phone.read_until(ends_turn(thread_id))  # a first turn, so that the thread can be resumed

        terminal = ProxyClient(turn_server.env)
        try:
            terminal.session.start("terminal")
            resumed = terminal.session.call(2, "thread/resume", {"threadId": thread_id})
            assert resumed["thread"]["id"] == thread_id

            phone.send(turn_start(4, thread_id, RUN_PROMPT))
            phone_before = phone.read_until(is_approval)
            approval_id = phone_before[-1]["id"]
            phone.send({"id": approval_id, "result": {"decision": "accept"}})
            phone_after = phone.read_until(ends_turn(thread_id))
            terminal_turn = terminal.session.read_until(ends_turn(thread_id))

            turn_id = turn_id_of(phone_before, 4)
            assert deltas(phone_before + phone_after, turn_id) == list(RUN_DONE.deltas)
            assert deltas(terminal_turn, turn_id) == list(RUN_DONE.deltas)
            assert resolved(phone_after) == [approval_id]
            assert resolved(terminal_turn) == [approval_id]
        finally:
            assert terminal.close() == 0


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(CA certificate, server certificate chain, server key) for the name ``localhost`` only."""
    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    ca_pem, chain_pem, key_pem = tmp_path / "ca.pem", tmp_path / "chain.pem", tmp_path / "key.pem"
    ca.cert_pem.write_to_path(str(ca_pem))
    cert.private_key_pem.write_to_path(str(key_pem))
    chain_pem.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    return ca_pem, chain_pem, key_pem


def test_tls_with_a_private_ca_for_websockets_and_our_own_proxy(
    codex_server: CodexServer, tls_files: tuple[Path, Path, Path]
) -> None:
    ca_pem, chain_pem, key_pem = tls_files
    args = ["--token-env", "BRIDGE_TOKEN", "--tls-cert", str(chain_pem), "--tls-key", str(key_pem)]
    with running_bridge(args, env=bridge_env(codex_server)) as bridge:
        assert bridge.url == f"wss://127.0.0.1:{bridge.port}/ws"
        context = ssl.create_default_context(cafile=str(ca_pem))
        with bridge_client(bridge, url=f"wss://localhost:{bridge.port}/ws", ssl=context) as ws:
            assert ws_session(ws).start("tls")["codexHome"] == str(codex_server.codex_home)
        with pytest.raises(ssl.SSLCertVerificationError):  # the certificate names localhost, not 127.0.0.1
            bridge_client(bridge, url=f"wss://127.0.0.1:{bridge.port}/ws", ssl=context)

        proxy_args = ["--remote-auth-token-env", "BRIDGE_TOKEN", "--cacert", str(ca_pem)]
        request = json.dumps(initialize_message(1, "tls-proxy")).encode() + b"\n"
        done = subprocess.run(
            proxy_argv("--remote", f"wss://localhost:{bridge.port}/ws", *proxy_args),
            input=request,
            capture_output=True,
            env=proxy_env({"BRIDGE_TOKEN": TOKEN}),
            cwd=str(ROOT),
            timeout=TIMEOUT,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        (response,) = [m for m in map(json.loads, done.stdout.splitlines()) if m.get("id") == 1]
        assert response["result"]["codexHome"] == str(codex_server.codex_home)

        wrong_host = subprocess.run(
            proxy_argv("--remote", f"wss://127.0.0.1:{bridge.port}/ws", *proxy_args),
            input=request,
            capture_output=True,
            env=proxy_env({"BRIDGE_TOKEN": TOKEN}),
            cwd=str(ROOT),
            timeout=TIMEOUT,
            check=False,
        )
        assert wrong_host.returncode == 76
        assert b"TLS certificate verification failed" in wrong_host.stderr
    assert TOKEN not in bridge.stderr_text


def test_daemon_stopped_closes_clients_with_1012_and_new_clients_get_503(codex_server: CodexServer) -> None:
    with running_bridge(["--token-env", "BRIDGE_TOKEN"], env=bridge_env(codex_server)) as bridge:
        assert http_request(bridge.port, "/readyz")[::2] == (200, b"ready\n")
        with bridge_client(bridge) as ws:
            ws_session(ws).start("before the stop")
            codex_server.stop()
            assert read_to_close(ws) == (1012, "the app-server connection was lost")
        assert http_request(bridge.port, "/readyz")[0] == 503
        with pytest.raises(InvalidStatus) as refused:
            bridge_client(bridge)
        assert refused.value.response.status_code == 503
        assert http_request(bridge.port, "/healthz")[0] == 200


FLOOD_PROMPT = "Stream a long answer."
#: About 12 MB of deltas: far more than the kernel's socket buffers and the client queue below.
FLOOD = Message(tuple(f"{i:05d}" + "z" * 8000 for i in range(1500)))


def peak_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))


def test_a_client_that_stops_reading_while_the_daemon_streams_is_a_slow_consumer(
    turn_server: CodexServer, mock_model: MockResponses, workdir: Path
) -> None:
    mock_model.script(FLOOD_PROMPT, FLOOD)
    args = ["--token-env", "BRIDGE_TOKEN", "--client-queue-bytes", str(1024 * 1024)]
    with running_bridge(args, env=bridge_env(turn_server)) as bridge:
        with bridge_client(bridge, max_queue=1) as stalled, bridge_client(bridge) as lively:
            reader = ws_session(stalled)
            reader.start("stops reading")
            thread_id = reader.call(2, "thread/start", {"cwd": str(workdir), "approvalPolicy": "never"})["thread"]["id"]
            reader.send(turn_start(3, thread_id, FLOOD_PROMPT))  # and reads nothing more
            bridge.wait_for_line(r"the client is a slow consumer: \d+ bytes would wait for it", timeout=TIMEOUT)

            other = ws_session(lively)
            other.start("keeps reading")
            started = time.monotonic()
            for request_id in range(2, 7):
                assert "data" in other.call(request_id, "thread/list", {})
            assert time.monotonic() - started < 30  # not held up by the stalled client (a guard, not a benchmark)
            assert read_to_close(stalled) == (1008, "slow consumer")
        peak = peak_rss_kib(bridge.process.pid)
    print(f"bridge peak RSS (VmHWM) with a slow consumer of a 12 MB turn: {peak} KiB")
    assert peak < 150 * 1024, f"the bridge's peak RSS was {peak} KiB"
