"""Remote app-servers (issue 5) on real peers: the real Codex app-server on ``ws://127.0.0.1:<port>`` behind a
capability token or a signed JWT, a TLS `websockets` server with `trustme` certificates for ``wss://``, and a
WebSocket client library speaking through ``--raw`` (and through the official ``codex app-server proxy``) to the
real control socket.

Facts about Codex 0.169.0's ``ws://`` listener these tests rely on (measured):

- ``--listen ws://IP:PORT`` needs no other flag on a loopback address; without ``--ws-auth`` it refuses to start on
  a non-loopback one. It answers ``GET /readyz`` with 200 once it listens.
- A missing or wrong bearer token is answered ``401 Unauthorized`` with a short text body (``missing websocket
  bearer token``, ``invalid websocket bearer token``); an ``Origin`` header gets ``403`` with an empty body.
- The token file and the shared-secret file are trimmed of surrounding whitespace. The secret must hold at least
  32 bytes, or the server does not start. A JWT needs ``exp``; a mismatched ``iss``/``aud`` or an ``exp`` an hour
  past gets 401 with a body naming the reason (one a few seconds past is still accepted: clock skew).
- Its 101 carries no ``x-codex-websocket-max-unfragmented-message-bytes`` header (the control socket's does).
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
import trio
import trustme
from click.testing import CliRunner
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

from proxy.cli import main

from .codex_server import CodexServer, socket_of
from .jsonrpc import JsonObject, initialize_message, result_of
from .proxy_process import (
    ROOT,
    Finished,
    ProxyProcess,
    close_and_finish,
    proxy_argv,
    proxy_env,
    run_proxy_cli,
    running_proxy,
)
from .remote_peers import TlsWebSocketsServer, WsCodexServer, converse_through, running_ws_codex_server, shape

#: Guards against hangs; never what a test measures (the machine is slow and shared).
TIMEOUT = 120
#: The variable the tests name with --remote-auth-token-env.
TOKEN_ENV = "CODEX_REMOTE_TOKEN"
PREFIX = "codex-appserver: "

codex = pytest.mark.codex


# -- JSONL helpers ------------------------------------------------------------------------------------------


def line(message: JsonObject) -> bytes:
    """One JSONL line with non-ASCII characters escaped (unlike :func:`.jsonrpc.line`, which writes them raw)."""
    return json.dumps(message, separators=(",", ":")).encode("utf-8") + b"\n"


def request(request_id: int, method: str, params: JsonObject | None = None) -> bytes:
    return line({"method": method, "id": request_id, "params": params if params is not None else {}})


def initialize(request_id: int = 1) -> bytes:
    return line(initialize_message(request_id, title="remote tests"))


INITIALIZED = line({"method": "initialized"})


def responses_of(done: Finished) -> dict[int, JsonObject]:
    """The responses on stdout by id; every other line is a notification (no server requests here)."""
    responses: dict[int, JsonObject] = {}
    for raw in done.stdout_lines:
        message = json.loads(raw)
        assert isinstance(message, dict)
        assert not ("method" in message and "id" in message), f"unexpected request from the server: {message}"
        if "id" in message:
            assert message["id"] not in responses, f"answered twice: {message['id']}"
            responses[message["id"]] = message
    return responses


def stderr_lines(done: Finished) -> list[str]:
    return done.stderr_text.splitlines()


def assert_one_error_line(done: Finished, expected: str) -> None:
    """stderr is exactly ``codex-appserver: <expected>`` and nothing went to stdout."""
    assert done.stdout == b""
    assert done.stderr_text == f"{PREFIX}{expected}\n"


def assert_secret_absent(secret: str, *texts: str | bytes) -> None:
    """*secret* (and, for a JWT, its signature alone) appears in none of *texts*."""
    pieces = [secret] + ([secret.rsplit(".", 1)[1]] if secret.count(".") == 2 else [])
    for text in texts:
        haystack = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
        for piece in pieces:
            assert piece not in haystack, "the token leaked"
        assert "Traceback" not in haystack


def assert_clean_stderr(done: Finished) -> None:
    """Every stderr line is one of ours (no traceback, no stray output)."""
    lines = stderr_lines(done)
    assert all(text.startswith(PREFIX) for text in lines), done.stderr_text
    assert "Traceback" not in done.stderr_text


async def run_with_token(args: list[str], token: str, stdin: bytes, trace: Path | None = None) -> Finished:
    """The proxy with *token* in :data:`TOKEN_ENV` (and ``-vv --trace`` when *trace* is given)."""
    extra = ["-vv", "--trace", str(trace)] if trace is not None else []
    return await run_proxy_cli(
        [*args, "--remote-auth-token-env", TOKEN_ENV, *extra], stdin, env={TOKEN_ENV: token}, timeout=TIMEOUT
    )


async def assert_refused_77(url: str, token: str, expected: str, trace: Path) -> Finished:
    """``--remote url`` with *token* exits 77 with the one line *expected*; so does a run with ``-vv --trace``, its
    line last on a clean stderr. Returns that verbose run."""
    done = await run_with_token(["--remote", url], token, initialize())

    assert done.status == 77
    assert_one_error_line(done, expected)

    verbose = await run_with_token(["--remote", url], token, initialize(), trace)
    assert verbose.status == 77
    assert stderr_lines(verbose)[-1] == PREFIX + expected
    assert_clean_stderr(verbose)
    return verbose


def conversation(cwd: Path) -> bytes:
    """initialize, initialized, thread/start (in *cwd*), thread/list."""
    return initialize(1) + INITIALIZED + request(2, "thread/start", {"cwd": str(cwd)}) + request(3, "thread/list")


def check_conversation(done: Finished, codex_home: Path, cwd: Path) -> None:
    assert done.status == 0, done.stderr_text
    responses = responses_of(done)
    assert set(responses) == {1, 2, 3}
    assert result_of(responses[1])["codexHome"] == str(codex_home)
    started = result_of(responses[2])
    assert isinstance(started["thread"]["id"], str)
    assert started["thread"]["id"]
    assert started["cwd"] == str(cwd)
    assert isinstance(result_of(responses[3])["data"], list)


def check_trace(trace: Path) -> str:
    """The trace file exists, holds JSON records with the connect and handshake events; returns its text."""
    text = trace.read_text(encoding="utf-8")
    records = [json.loads(raw) for raw in text.splitlines()]
    events = [record.get("event") for record in records]
    assert "connect" in events
    assert "handshake" in events
    assert any(record.get("dir") == "in" for record in records)
    return text


# -- the real app-server behind a capability token ----------------------------------------------------------


@dataclass
class CapabilityServer:
    ws: WsCodexServer
    token: str


@pytest.fixture(scope="module")
def capability_server(codex_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CapabilityServer]:
    """``codex app-server --listen ws://127.0.0.1:<port> --ws-auth capability-token --ws-token-file F``."""
    folder = tmp_path_factory.mktemp("cap")
    token = "cap-" + "7f3k9QzX2mWv" * 3
    token_file = folder / "token"
    token_file.write_text(token + "\n", encoding="utf-8")  # Codex trims the file's whitespace
    token_file.chmod(0o600)
    auth = ["--ws-auth", "capability-token", "--ws-token-file", str(token_file)]
    with running_ws_codex_server(codex_bin, folder / "home", auth) as ws:
        yield CapabilityServer(ws, token)


@codex
async def test_capability_token_end_to_end(capability_server: CapabilityServer, tmp_path: Path) -> None:
    cwd = tmp_path / "work"
    cwd.mkdir()
    trace = tmp_path / "trace.jsonl"
    token = capability_server.token

    done = await run_with_token(["--remote", capability_server.ws.url], token, conversation(cwd), trace)

    check_conversation(done, capability_server.ws.server.codex_home, cwd)
    assert_clean_stderr(done)
    assert f"{PREFIX}connected to {capability_server.ws.url}/" in stderr_lines(done)  # -vv did log
    assert_secret_absent(token, done.stderr, done.stdout, check_trace(trace))


@codex
async def test_capability_wrong_token_exits_77(capability_server: CapabilityServer, tmp_path: Path) -> None:
    url = capability_server.ws.url
    wrong = capability_server.token[:-1] + "X"
    expected = f"{url}/: the server refused the opening handshake with 401 Unauthorized: invalid websocket bearer token"
    trace = tmp_path / "trace.jsonl"

    verbose = await assert_refused_77(url, wrong, expected, trace)

    trace_text = trace.read_text(encoding="utf-8") if trace.exists() else ""
    for secret in (wrong, capability_server.token):
        assert_secret_absent(secret, verbose.stderr, verbose.stdout, trace_text)


@codex
async def test_capability_no_token_exits_77(capability_server: CapabilityServer) -> None:
    url = capability_server.ws.url

    done = await run_proxy_cli(["--remote", url], initialize(), timeout=TIMEOUT)

    assert done.status == 77
    assert_one_error_line(
        done, f"{url}/: the server refused the opening handshake with 401 Unauthorized: missing websocket bearer token"
    )


@codex
@pytest.mark.parametrize(
    "suffix",
    [
        pytest.param("\n", id="trailing-LF"),
        pytest.param("\r", id="trailing-CR"),  # `export T="$(cat F)"` on a file with CRLF line ends
        pytest.param("\nX-Injected: 1", id="header-injection"),
        pytest.param("\u00e9", id="non-ASCII"),
    ],
)
async def test_malformed_token_is_neither_echoed_nor_a_traceback(
    capability_server: CapabilityServer, tmp_path: Path, suffix: str
) -> None:
    """A token that cannot go into a header value (control characters, non-ASCII) is refused with one line naming
    the variable, not the token: exit 2 (usage) or 77 (refused by our own rules). Stripping surrounding
    whitespace and succeeding (exit 0) is fine too, as Codex trims its token file."""
    token = capability_server.token + suffix
    trace = tmp_path / "trace.jsonl"

    done = await run_with_token(["--remote", capability_server.ws.url], token, initialize(), trace)

    assert_secret_absent(capability_server.token, done.stderr)
    assert_clean_stderr(done)
    if done.status == 0 and suffix.strip() == "":
        assert result_of(responses_of(done)[1])["codexHome"] == str(capability_server.ws.server.codex_home)
    else:
        assert done.status in (2, 77), done.stderr_text
        assert done.stdout == b""
        assert len(stderr_lines(done)) == 1
        assert TOKEN_ENV in done.stderr_text
    assert_secret_absent(capability_server.token, trace.read_text(encoding="utf-8") if trace.exists() else "")


# -- the token rule for plain ws:// ---------------------------------------------------------------------------

REFUSAL = (
    "refusing to send a bearer token to example.invalid over plain ws://, where anyone on the path can read it; "
    "use wss:// or an SSH tunnel to a loopback port (ssh -L)"
)


async def test_token_over_plain_ws_to_non_loopback_is_refused_at_once(tmp_path: Path) -> None:
    token = "never-sent-" + "q8Rz" * 8
    trace = tmp_path / "trace.jsonl"

    started = time.monotonic()
    done = await run_with_token(["--remote", "ws://example.invalid:4500"], token, initialize(), trace)
    elapsed = time.monotonic() - started

    assert done.status == 77
    assert_one_error_line(done, REFUSAL)
    assert not trace.exists()  # refused before the run began: no trace file, no connect event
    assert_secret_absent(token, done.stderr)
    assert elapsed < 30, f"took {elapsed:.1f} s: did it try to resolve or connect?"


def test_token_refusal_resolves_and_connects_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process, with every way to resolve or connect replaced by a recorder: none is used."""
    calls: list[str] = []

    def recorder(name: str) -> Any:
        def called(*args: object, **kwargs: object) -> Any:
            calls.append(name)
            raise OSError(f"{name} must not be called")

        return called

    monkeypatch.setattr(trio, "open_tcp_stream", recorder("trio.open_tcp_stream"))
    monkeypatch.setattr(trio.socket, "getaddrinfo", recorder("trio.socket.getaddrinfo"))
    monkeypatch.setattr(socket, "getaddrinfo", recorder("socket.getaddrinfo"))
    monkeypatch.setattr(socket, "create_connection", recorder("socket.create_connection"))
    token = "never-sent-" + "w2Pn" * 8

    result = CliRunner().invoke(
        main,
        ["proxy", "--remote", "ws://example.invalid:4500/codex", "--remote-auth-token-env", TOKEN_ENV, "-vv"],
        env={TOKEN_ENV: token},
        input=initialize(),
    )

    assert result.exit_code == 77, result.output
    assert calls == []
    assert result.stderr == f"{PREFIX}{REFUSAL}\n"
    assert token not in result.output


# -- the real app-server behind signed JWTs -----------------------------------------------------------------


@dataclass
class JwtServer:
    ws: WsCodexServer
    secret: str
    issuer: str
    audience: str

    def token(self, **overrides: Any) -> str:
        """An HS256 JWT valid for ten minutes, with *overrides* applied to its claims (None removes one); the
        override ``key`` signs with another secret."""
        key = overrides.pop("key", self.secret)
        claims: dict[str, Any] = {"exp": int(time.time()) + 600, "iss": self.issuer, "aud": self.audience}
        claims.update(overrides)
        return jwt.encode({k: v for k, v in claims.items() if v is not None}, key, algorithm="HS256")


@pytest.fixture(scope="module")
def jwt_server(codex_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[JwtServer]:
    """``codex app-server --listen ws://127.0.0.1:<port> --ws-auth signed-bearer-token --ws-shared-secret-file F
    --ws-issuer I --ws-audience A``; Codex wants a secret of at least 32 bytes."""
    folder = tmp_path_factory.mktemp("jwt")
    secret = "s3cr3t-" + "Hn4TgB8vLq2Z" * 4  # 55 bytes
    secret_file = folder / "secret"
    secret_file.write_text(secret, encoding="utf-8")
    secret_file.chmod(0o600)
    issuer, audience = "codex-appserver-proxy-tests", "codex-app-server"
    auth = ["--ws-auth", "signed-bearer-token", "--ws-shared-secret-file", str(secret_file)]
    auth += ["--ws-issuer", issuer, "--ws-audience", audience]
    with running_ws_codex_server(codex_bin, folder / "home", auth) as ws:
        yield JwtServer(ws, secret, issuer, audience)


@codex
async def test_jwt_end_to_end(jwt_server: JwtServer, tmp_path: Path) -> None:
    cwd = tmp_path / "work"
    cwd.mkdir()
    trace = tmp_path / "trace.jsonl"
    token = jwt_server.token()

    done = await run_with_token(["--remote", jwt_server.ws.url], token, conversation(cwd), trace)

    check_conversation(done, jwt_server.ws.server.codex_home, cwd)
    assert_clean_stderr(done)
    assert_secret_absent(token, done.stderr, done.stdout, check_trace(trace))
    assert_secret_absent(jwt_server.secret, done.stderr, done.stdout, check_trace(trace))


@codex
@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        pytest.param({"exp": int(time.time()) - 3600}, "expired websocket jwt", id="expired"),
        pytest.param({"aud": "someone-else"}, "websocket jwt audience mismatch", id="wrong-audience"),
        pytest.param({"iss": "someone-else"}, "websocket jwt issuer mismatch", id="wrong-issuer"),
        pytest.param({"key": "another-secret-of-enough-length-0123456789"}, "invalid websocket jwt", id="wrong-key"),
    ],
)
async def test_jwt_refused_exits_77(jwt_server: JwtServer, tmp_path: Path, claims: JsonObject, reason: str) -> None:
    url = jwt_server.ws.url
    token = jwt_server.token(**claims)
    expected = f"{url}/: the server refused the opening handshake with 401 Unauthorized: {reason}"
    trace = tmp_path / "trace.jsonl"

    verbose = await assert_refused_77(url, token, expected, trace)

    assert_secret_absent(token, verbose.stderr, trace.read_text(encoding="utf-8") if trace.exists() else "")


# -- wss:// against a TLS websockets server --------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_pem(ca: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture
def tls_server(ca: trustme.CA) -> Iterator[TlsWebSocketsServer]:
    """The echo server with a certificate for ``localhost`` and ``127.0.0.1``."""
    server = TlsWebSocketsServer(ca.issue_cert("localhost", "127.0.0.1"))
    try:
        server.start()
        yield server
    finally:
        server.stop()
    assert not server.log.errors, server.log.errors


ECHO_INPUT = (
    request(1, "one")
    + line({"method": "note", "params": {"text": "caf\u00e9 \u2028 \U0001f600"}})
    + request(2, "two", {"n": [1, 2, 3]})
    + request(3, "three")
)


async def test_wss_with_cacert_verifies_sends_sni_and_relays(tls_server: TlsWebSocketsServer, ca_pem: Path) -> None:
    port = tls_server.port
    url = f"wss://localhost:{port}/codex/ws?v=1"
    token = "wss-token-" + "Zr5" * 10

    done = await run_with_token(["--remote", url, "--cacert", str(ca_pem), "-v"], token, ECHO_INPUT)

    assert done.status == 0, done.stderr_text
    assert set(responses_of(done)) == {1, 2, 3}
    assert all(result_of(response) == {} for response in responses_of(done).values())
    assert tls_server.log.messages == [raw.decode("utf-8") for raw in ECHO_INPUT.splitlines()]
    assert tls_server.sni_names == ["localhost"]
    [seen] = tls_server.requests
    assert seen.path == "/codex/ws?v=1"
    assert seen.get_all("Host") == [f"localhost:{port}"]
    assert seen.get_all("Origin") == []
    assert seen.get_all("Authorization") == [f"Bearer {token}"]
    assert_clean_stderr(done)
    assert_secret_absent(token, done.stderr)


async def test_wss_to_an_ip_literal_checks_the_ip_in_the_certificate(
    tls_server: TlsWebSocketsServer, ca_pem: Path
) -> None:
    port = tls_server.port

    done = await run_proxy_cli(
        ["--remote", f"wss://127.0.0.1:{port}", "--cacert", str(ca_pem)], request(1, "one"), timeout=TIMEOUT
    )

    assert done.status == 0, done.stderr_text
    assert set(responses_of(done)) == {1}
    [seen] = tls_server.requests
    assert seen.get_all("Host") == [f"127.0.0.1:{port}"]
    assert "127.0.0.1" not in tls_server.sni_names  # RFC 6066: SNI never carries an IP address


async def test_wss_without_cacert_fails_verification_76(tls_server: TlsWebSocketsServer) -> None:
    port = tls_server.port
    token = "wss-token-" + "Kd7" * 10

    done = await run_with_token(["--remote", f"wss://localhost:{port}"], token, initialize())

    assert done.status == 76
    assert done.stdout == b""
    [message] = stderr_lines(done)
    assert message.startswith(f"{PREFIX}TLS certificate verification failed for wss://localhost:{port}/: ")
    assert "--cacert" in message
    assert tls_server.requests == []  # nothing, and so no token, was sent
    assert_secret_absent(token, done.stderr)


async def test_wss_hostname_mismatch_76(ca: trustme.CA, ca_pem: Path) -> None:
    with TlsWebSocketsServer(ca.issue_cert("other.test")) as server:
        port = server.port
        token = "wss-token-" + "Hm2" * 10

        done = await run_with_token(["--remote", f"wss://localhost:{port}", "--cacert", str(ca_pem)], token, b"")

        assert done.status == 76
        assert done.stdout == b""
        [message] = stderr_lines(done)
        assert message.startswith(f"{PREFIX}TLS certificate verification failed for wss://localhost:{port}/: ")
        assert "Hostname mismatch" in message
        assert "'localhost'" in message
        assert server.requests == []
        assert server.sni_names == ["localhost"]
        assert_secret_absent(token, done.stderr)


# -- --raw: a WebSocket client through the proxy to the real control socket --------------------------------


@codex
async def test_raw_websocket_client_has_the_same_conversation_as_through_the_official_proxy(
    codex_server: CodexServer, codex_bin: Path
) -> None:
    """`websockets`' client speaks through ``proxy --raw`` and through ``codex app-server proxy``, each given one end
    of a socket pair as stdin and stdout: the same handshake, the same answers, and both exit 0 at the end."""
    env = proxy_env(codex_server.env)
    with trio.fail_after(TIMEOUT):
        ours = await trio.to_thread.run_sync(converse_through, proxy_argv("--raw"), env, ROOT, 60.0)
        official = await trio.to_thread.run_sync(
            converse_through, [str(codex_bin), "app-server", "proxy"], env, codex_server.codex_home, 60.0
        )

    for seen in (ours, official):
        assert seen.status == 0, seen.stderr
        assert seen.handshake_status == 101
        assert seen.handshake_headers["x-codex-websocket-max-unfragmented-message-bytes"] == "16777216"
        assert set(seen.responses) == {1, 2}
        assert result_of(seen.responses[1])["codexHome"] == str(codex_server.codex_home)
        assert isinstance(result_of(seen.responses[2])["data"], list)
    assert ours.stderr == ""
    assert set(ours.handshake_headers) == set(official.handshake_headers)
    assert result_of(ours.responses[1]) == result_of(official.responses[1])
    assert shape(ours.responses[2]) == shape(official.responses[2])
    assert sorted(set(ours.notifications)) == sorted(set(official.notifications))


class SansIoClient:
    """`websockets`' sans-I/O client: the bytes to send for the opening handshake and text frames, and what the
    bytes coming back hold (the handshake response, then the messages)."""

    def __init__(self) -> None:
        self.protocol = ClientProtocol(parse_uri("ws://localhost/"))
        self.protocol.send_request(self.protocol.connect())
        self.handshake = b"".join(self.protocol.data_to_send())
        self.response: Response | None = None
        self.messages: list[JsonObject] = []

    @staticmethod
    def text_frame(message: JsonObject) -> bytes:
        """A masked text frame, as a client sends it."""
        return Frame(Opcode.TEXT, json.dumps(message).encode("utf-8")).serialize(mask=True)

    def receive(self, data: bytes | bytearray) -> None:
        """Feed bytes from the peer (b"": the peer closed)."""
        if data:
            self.protocol.receive_data(data)
        else:
            self.protocol.receive_eof()
        for event in self.protocol.events_received():
            if isinstance(event, Response):
                self.response = event
            elif isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                self.messages.append(json.loads(bytes(event.data)))

    def answer_to(self, request_id: int) -> JsonObject | None:
        return next((m for m in self.messages if m.get("id") == request_id and "method" not in m), None)


@codex
@pytest.mark.parametrize("which", ["ours", "official"])
async def test_raw_stdin_eof_half_closes_and_the_answer_still_arrives(
    codex_server: CodexServer, codex_bin: Path, which: str
) -> None:
    """stdin holds only the opening handshake and ends at once: the proxy passes the EOF on as a half-close, so the
    server still answers (101) and then closes, and the proxy exits 0 with the answer on stdout. (Codex answers
    nothing when the handshake and a frame arrive in the same read, so no frame is sent here.)"""
    client = SansIoClient()
    argv = proxy_argv("--raw") if which == "ours" else [str(codex_bin), "app-server", "proxy"]

    with trio.fail_after(TIMEOUT):
        done = await trio.run_process(
            argv,
            stdin=client.handshake,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env=proxy_env(codex_server.env),
        )

    assert done.returncode == 0, done.stderr
    client.receive(done.stdout)
    client.receive(b"")
    assert client.response is not None, done.stdout
    assert client.response.status_code == 101
    assert client.response.headers["x-codex-websocket-max-unfragmented-message-bytes"] == "16777216"
    assert client.messages == []
    if which == "ours":
        assert done.stderr == b""


@codex
async def test_raw_conversation_then_stdin_eof_exits_0(codex_server: CodexServer) -> None:
    """Handshake, then initialize, through ``--raw`` on pipes, reading the answers as they come; then stdin EOF:
    the server sees the half-close and closes, and the proxy exits 0 with stdout ending there."""
    client = SansIoClient()

    async def receive_until(proxy: ProxyProcess, done: Callable[[], bool]) -> None:
        assert proxy.process.stdout is not None
        while not done():
            data = await proxy.process.stdout.receive_some(1 << 16)
            assert data, f"stdout ended early; stderr: {proxy.stderr_text}"
            client.receive(data)

    with trio.fail_after(TIMEOUT):
        async with running_proxy(["--raw"], env=codex_server.env) as proxy:
            await proxy.send(client.handshake)
            await receive_until(proxy, lambda: client.response is not None)
            assert client.response is not None
            assert client.response.status_code == 101
            await proxy.send(client.text_frame(json.loads(initialize(1))))
            await receive_until(proxy, lambda: client.answer_to(1) is not None)
            client.receive(await close_and_finish(proxy))  # to EOF: the server closed after our half-close
    answer = client.answer_to(1)
    assert answer is not None
    assert result_of(answer)["codexHome"] == str(codex_server.codex_home)
    assert proxy.stderr_text == ""


async def test_raw_missing_socket_exits_69(tmp_path: Path) -> None:
    sock = tmp_path / "missing.sock"

    done = await run_proxy_cli(["--raw", "--sock", str(sock)], b"GET / HTTP/1.1\r\n\r\n", timeout=TIMEOUT)

    assert done.status == 69
    assert_one_error_line(
        done,
        f"no app-server is listening at {sock}; "
        "start one with 'codex app-server --listen unix://' or 'codex app-server daemon start'",
    )


async def test_raw_missing_default_socket_exits_69(tmp_path_factory: pytest.TempPathFactory) -> None:
    codex_home = tmp_path_factory.mktemp("nohome")
    sock = socket_of(codex_home)

    done = await run_proxy_cli(["--raw"], b"", env={"CODEX_HOME": str(codex_home)}, timeout=TIMEOUT)

    assert done.status == 69
    assert_one_error_line(
        done,
        f"no app-server is listening at {sock}; "
        "start one with 'codex app-server --listen unix://' or 'codex app-server daemon start'",
    )
