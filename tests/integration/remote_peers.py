"""Peers for the remote-mode tests: the real Codex app-server on ``ws://127.0.0.1:<port>`` behind a token, a TLS
WebSocket echo server (`websockets`, certificates from `trustme`), and a WebSocket client (`websockets`' sync
client) that speaks through a byte proxy run as a subprocess.

Everything binds 127.0.0.1 or a Unix socket in a temporary folder, and everything started is stopped on the way
out, also when a test fails.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trustme
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response
from websockets.sync.client import connect

from .codex_server import STARTUP_TIMEOUT, CodexServer, CodexServerError, signal_group, start_codex_server
from .jsonrpc import JsonObject, initialize_message
from .websockets_peer import Handler, ThreadedServer, echo


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the kernel's pick for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# -- the real app-server on ws://127.0.0.1:<port> -----------------------------------------------------------


@dataclass
class WsCodexServer:
    """A running ``codex app-server --listen ws://127.0.0.1:<port>`` (``server`` stops it)."""

    server: CodexServer
    port: int

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def is_ready(self) -> bool:
        """True when ``GET /readyz`` answers 200 (the listener prints that URL when it starts)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
        try:
            connection.request("GET", "/readyz")
            return connection.getresponse().status == 200
        except OSError:
            return False
        finally:
            connection.close()

    def wait_until_ready(self, timeout: float) -> None:
        """Poll ``/readyz``. :raises CodexServerError: the server exited, or was not ready in *timeout* seconds."""
        self.server.poll_until(
            self.is_ready, timeout, exited_before=f"{self.url} was ready", not_ready=f"was not ready at {self.url}"
        )


@contextlib.contextmanager
def running_ws_codex_server(
    codex: Path, codex_home: Path, auth_args: Sequence[str], timeout: float = STARTUP_TIMEOUT
) -> Iterator[WsCodexServer]:
    """``codex app-server --listen ws://127.0.0.1:<free port> *auth_args`` with ``CODEX_HOME=codex_home`` (offline
    config), ready to take connections; stopped (its whole process group) on exit, whatever happened.

    A port taken between picking and binding it is retried with another one, twice.
    """
    for attempt in range(3):
        port = free_port()
        log_path = codex_home.with_name(f"{codex_home.name}-ws{port}.log")
        ws_server = WsCodexServer(
            start_codex_server(codex, codex_home, log_path, f"ws://127.0.0.1:{port}", auth_args), port
        )
        try:
            try:
                ws_server.wait_until_ready(timeout)
            except CodexServerError:
                if attempt < 2 and "in use" in ws_server.server.log_tail():
                    continue  # someone took the port: the finally below stops this one, then try another
                raise
            yield ws_server
            return
        finally:
            ws_server.server.stop()


# -- a TLS WebSocket server in a thread ---------------------------------------------------------------------


@dataclass(frozen=True)
class SeenRequest:
    """An opening handshake request as the server received it."""

    path: str
    headers: tuple[tuple[str, str], ...]

    def get_all(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]


@dataclass
class _TlsRecord:
    sni: list[str | None] = field(default_factory=list)
    requests: list[SeenRequest] = field(default_factory=list)


class TlsWebSocketsServer(ThreadedServer):
    """A `websockets` server on ``127.0.0.1:<port>`` with TLS (*cert*, e.g. from a :class:`trustme.CA`), run by
    *handler* in a thread with its own asyncio loop (see :class:`~.websockets_peer.ThreadedServer`).

    It records the SNI name of each TLS handshake (``None``: the client sent none) and each opening handshake
    request; messages and errors go to :attr:`log` as with :class:`~.websockets_peer.WebSocketsPeer`.
    """

    def __init__(self, cert: trustme.LeafCert, handler: Handler = echo) -> None:
        super().__init__(
            "the TLS websockets server",
            handler,
            thread_name="tls-websockets-server",
            logger_name="tls_websockets_server",
            log_level=logging.INFO,  # errors only: no frames
        )
        self.port = 0
        self._cert = cert
        self._lock = threading.Lock()
        self._record = _TlsRecord()

    @property
    def sni_names(self) -> list[str | None]:
        with self._lock:
            return list(self._record.sni)

    @property
    def requests(self) -> list[SeenRequest]:
        with self._lock:
            return list(self._record.requests)

    async def _open(self) -> Server:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._cert.configure_cert(context)
        context.sni_callback = self._sni_callback
        server: Server = await serve(
            self._serve,
            "127.0.0.1",
            0,
            ssl=context,
            compression=None,
            ping_interval=None,
            process_request=self._process_request,
            logger=self._logger,
        )
        self.port = next(iter(server.sockets)).getsockname()[1]
        return server

    def _sni_callback(self, ssl_object: ssl.SSLObject, server_name: str | None, context: ssl.SSLContext) -> None:
        with self._lock:
            self._record.sni.append(server_name)

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        seen = SeenRequest(request.path, tuple((str(k), str(v)) for k, v in request.headers.raw_items()))
        with self._lock:
            self._record.requests.append(seen)
        return None


# -- a WebSocket client speaking through a byte proxy -------------------------------------------------------


@dataclass
class RawConversation:
    """What a WebSocket client saw through a byte proxy (``--raw`` or ``codex app-server proxy``)."""

    status: int
    stderr: str
    handshake_status: int
    handshake_headers: dict[str, str]
    responses: dict[int, JsonObject]
    notifications: list[str]


def converse_through(argv: Sequence[str], env: Mapping[str, str], cwd: Path, timeout: float) -> RawConversation:
    """Run *argv* with one end of a socket pair as its stdin and stdout, and speak WebSocket on the other end
    with `websockets`' sync client: ``initialize``, ``initialized``, ``thread/list``, then a normal close.

    Blocking (run it in a thread from trio). The process runs in its own process group, killed if it is still
    running when this returns or raises.
    """
    ours, theirs = socket.socketpair()
    with tempfile.TemporaryFile() as stderr:
        try:
            process = subprocess.Popen(
                list(argv),
                stdin=theirs.fileno(),
                stdout=theirs.fileno(),
                stderr=stderr,
                env=dict(env),
                cwd=cwd,
                start_new_session=True,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        try:
            responses: dict[int, JsonObject] = {}
            notifications: list[str] = []

            def until_response(websocket: Any, request_id: int) -> None:
                while request_id not in responses:
                    message = json.loads(websocket.recv(timeout=timeout))
                    assert isinstance(message, dict)
                    assert not ("method" in message and "id" in message), f"unexpected server request: {message}"
                    if "method" in message:
                        notifications.append(message["method"])
                    else:
                        responses[message["id"]] = message

            with connect("ws://localhost/", sock=ours, open_timeout=timeout, close_timeout=2) as websocket:
                response = websocket.response
                assert response is not None
                websocket.send(json.dumps(initialize_message(1, title="raw mode")))
                until_response(websocket, 1)
                websocket.send(json.dumps({"method": "initialized"}))
                websocket.send(json.dumps({"method": "thread/list", "id": 2, "params": {}}))
                until_response(websocket, 2)
            status = process.wait(timeout)
            stderr.seek(0)
            return RawConversation(
                status=status,
                stderr=stderr.read().decode("utf-8", "replace"),
                handshake_status=response.status_code,
                handshake_headers={key.lower(): value for key, value in response.headers.raw_items()},
                responses=responses,
                notifications=notifications,
            )
        finally:
            ours.close()
            if process.poll() is None:
                signal_group(process.pid, signal.SIGKILL)
                process.wait()


def shape(value: object) -> object:
    """The structure of a JSON value: object keys with their values' shapes, a list's distinct element shapes,
    and the type name of anything else."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in sorted(value.items())}
    if isinstance(value, list):
        shapes: list[object] = []
        for item in value:
            if shape(item) not in shapes:
                shapes.append(shape(item))
        return shapes
    return type(value).__name__
