"""Helpers for the device tests: the ``serve devices`` commands as real subprocesses, `websockets` clients of the
bridge with a device token, JSON-RPC over them, ``POST /pair`` over TLS."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from .bridge_process import ROOT, BridgeProcess
from .jsonrpc import JsonObject, initialize_message
from .proxy_process import proxy_env

TIMEOUT = 60.0


def devices_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "proxy", "serve", "devices", *args]


def run_devices(args: list[str], env: Mapping[str, str], timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """``codex-appserver serve devices ARGS`` to its end: status, stdout, stderr (text)."""
    return subprocess.run(
        devices_argv(*args),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=proxy_env(env),
        cwd=str(ROOT),
        timeout=timeout,
        check=False,
    )


def add_device(name: str, env: Mapping[str, str], role: str = "full") -> str:
    """A new device's token (the one line ``devices add`` prints on stdout)."""
    done = run_devices(["add", name, "--role", role], env)
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    assert len(token) == 43, done.stdout
    return token


def client(
    bridge: BridgeProcess, token: str | None, ssl_context: ssl.SSLContext | None = None, path: str = "/ws"
) -> ClientConnection:
    headers = [("Authorization", f"Bearer {token}")] if token is not None else []
    return connect(
        bridge.ws_url(path),
        additional_headers=headers,
        open_timeout=TIMEOUT,
        close_timeout=10,
        max_size=None,
        ssl=ssl_context,
    )


class Peer:
    """A JSON-RPC peer over a `websockets` client: keeps every message it has read, in order."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.messages: list[JsonObject] = []

    def send(self, message: JsonObject) -> None:
        self.ws.send(json.dumps(message))

    def read_until(self, done: Callable[[JsonObject], bool], timeout: float = TIMEOUT) -> JsonObject:
        """Read messages up to the first for which *done* is true (earlier ones are kept too); return it."""
        for message in self.messages:
            if done(message) and not message.get("_seen"):
                message["_seen"] = True
                return message
        deadline = time.monotonic() + timeout
        while True:
            raw = self.ws.recv(timeout=max(0.01, deadline - time.monotonic()))
            message = json.loads(raw)
            assert isinstance(message, dict)
            self.messages.append(message)
            if done(message):
                message["_seen"] = True
                return message

    def call(self, request_id: int, method: str, params: JsonObject) -> JsonObject:
        """Send a request, return its whole response (result or error)."""
        self.send({"method": method, "id": request_id, "params": params})
        return self.read_until(lambda m: m.get("id") == request_id and "method" not in m)

    def result(self, request_id: int, method: str, params: JsonObject) -> Any:
        response = self.call(request_id, method, params)
        assert "error" not in response, response
        return response["result"]

    def initialize(self, name: str) -> JsonObject:
        message = initialize_message(1, name)
        self.send(message)
        response = self.read_until(lambda m: m.get("id") == 1 and "method" not in m)
        self.send({"method": "initialized"})
        result = response["result"]
        assert isinstance(result, dict)
        return result


def close_of(ws: ClientConnection, timeout: float = TIMEOUT) -> tuple[int | None, str | None]:
    """Read until the bridge closes; the close frame it sent (code, reason)."""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ws.recv(timeout=max(0.01, deadline - time.monotonic()))
    except (ConnectionClosed, TimeoutError):
        pass
    received = ws.protocol.close_rcvd
    return (None, None) if received is None else (int(received.code), received.reason)


def pinned_context(cert: Path) -> ssl.SSLContext:
    """A client context that trusts exactly the bridge's self-signed certificate (host name checked)."""
    return ssl.create_default_context(cafile=str(cert))


def peer_fingerprint(port: int) -> str:
    """The SHA-256 (hex) of the certificate a TLS server on 127.0.0.1:*port* presents, checked against nothing."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return hashlib.sha256(der).hexdigest()


def post_pair(port: int, body: bytes, context: ssl.SSLContext) -> tuple[int, bytes, str]:
    """``POST /pair`` over TLS: status, body, Content-Type."""
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=TIMEOUT * 3)
    try:
        connection.request("POST", "/pair", body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, response.read(), response.getheader("Content-Type") or ""
    finally:
        connection.close()


class JoinCommand:
    """``serve devices add NAME --join`` running: its stdout lines as they come, its stdin for the y/N answer."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._eof = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        buffer = b""
        while True:
            chunk = os.read(self.process.stdout.fileno(), 4096)
            with self._changed:
                if not chunk:
                    if buffer:
                        self.lines.append(buffer.decode())
                    self._eof = True
                    self._changed.notify_all()
                    return
                buffer += chunk
                # The y/N prompt has no newline: split on it too, so the test sees it.
                while True:
                    cut = min((i for i in (buffer.find(b"\n"), buffer.find(b"[y/N] ")) if i >= 0), default=-1)
                    if cut < 0:
                        break
                    size = 1 if buffer[cut : cut + 1] == b"\n" else len(b"[y/N] ")
                    self.lines.append(buffer[: cut + (0 if size == 1 else size)].decode().rstrip())
                    buffer = buffer[cut + size :]
                self._changed.notify_all()

    def wait_for(self, prefix: str, timeout: float = TIMEOUT) -> str:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines:
                    if line.startswith(prefix):
                        return line
                remaining = deadline - time.monotonic()
                assert not self._eof and remaining > 0, f"no line {prefix!r}: {self.lines}; {self.stderr_so_far()}"
                self._changed.wait(remaining)

    def stderr_so_far(self) -> str:
        return "" if self.process.poll() is None or self.process.stderr is None else self.process.stderr.read().decode()

    def answer(self, text: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(text.encode())
        self.process.stdin.flush()

    def finish(self, timeout: float = TIMEOUT) -> tuple[int, str]:
        status = self.process.wait(timeout=timeout)
        self._reader.join(timeout=5)
        assert self.process.stderr is not None
        return status, self.process.stderr.read().decode()


@contextmanager
def join_command(name: str, env: Mapping[str, str], *options: str) -> Iterator[JoinCommand]:
    process = subprocess.Popen(
        devices_argv("add", name, "--join", *options),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=proxy_env(env),
        cwd=str(ROOT),
    )
    command = JoinCommand(process)
    try:
        yield command
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        for stream in (process.stdin, process.stdout, process.stderr):
            if stream is not None:
                stream.close()
