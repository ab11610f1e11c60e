"""Run ``codex-appserver serve`` as a real subprocess (``python -m proxy serve``) and talk to it.

:func:`running_bridge` starts the bridge, waits for its ``listening on`` line and yields a :class:`BridgeProcess`
(its URL, port, stderr so far); the bridge is stopped (SIGKILL after the test's own ending, if any) and reaped
when the block ends, however it ends. stderr is read by a thread as it comes, so tests can wait for a line.
"""

from __future__ import annotations

import atexit
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from .proxy_process import proxy_env

ROOT = Path(__file__).resolve().parents[2]
LISTENING = re.compile(r"^codex-appserver: listening on (wss?)://(.+):(\d+)/ws$")


#: The CODEX_HOME of bridges whose test gives none: the bridge keeps its state under $CODEX_HOME/codex-appserver,
#: which must never be the real home's. One empty folder for the session, removed at exit.
_SCRATCH_HOME = tempfile.mkdtemp(prefix="bridge-home-")
atexit.register(shutil.rmtree, _SCRATCH_HOME, True)


def bridge_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """:func:`proxy_env`, with ``CODEX_HOME`` set to a scratch folder unless *env* sets it."""
    full = proxy_env(env)
    if env is None or "CODEX_HOME" not in env:
        full["CODEX_HOME"] = _SCRATCH_HOME
    return full


def bridge_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "proxy", "serve", *args]


class BridgeProcess:
    """A running bridge."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process
        self._lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        self.url = ""
        self.port = 0

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for raw in self.process.stderr:
            with self._changed:
                self._lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._lines.append("")  # EOF marker for waiters; never matched by a pattern
            self._eof = True
            self._changed.notify_all()

    @property
    def stderr_lines(self) -> list[str]:
        with self._changed:
            return [line for line in self._lines if line]

    @property
    def stderr_text(self) -> str:
        return "\n".join(self.stderr_lines)

    def wait_for_line(self, pattern: str, timeout: float = 30.0) -> re.Match[str]:
        """The first stderr line matching *pattern* (a regex, searched); AssertionError after *timeout* s or EOF."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self._lines:
                    match = regex.search(line)
                    if match and line:
                        return match
                if getattr(self, "_eof", False):
                    raise AssertionError(f"no stderr line matches {pattern!r}; stderr:\n{self.stderr_text}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no stderr line matches {pattern!r} in {timeout} s:\n{self.stderr_text}")
                self._changed.wait(remaining)

    def count_lines(self, pattern: str) -> int:
        regex = re.compile(pattern)
        return sum(1 for line in self.stderr_lines if regex.search(line))

    def signal(self, signum: signal.Signals) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float = 30.0) -> int:
        status = self.process.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return status

    def ws_url(self, path: str = "/ws", host: str = "127.0.0.1") -> str:
        scheme = self.url.split(":", 1)[0]
        return f"{scheme}://{host}:{self.port}{path}"


@contextmanager
def running_bridge(
    args: Sequence[str], env: Mapping[str, str] | None = None, startup_timeout: float = 30.0
) -> Iterator[BridgeProcess]:
    """A bridge with *args* (``--bind 127.0.0.1:0`` unless *args* has a ``--bind``), listening, stopped afterwards."""
    argv = list(args) if "--bind" in args else ["--bind", "127.0.0.1:0", *args]
    process = subprocess.Popen(
        bridge_argv(*argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=bridge_env(env),
        cwd=str(ROOT),
    )
    bridge = BridgeProcess(process)
    try:
        match = bridge.wait_for_line(LISTENING.pattern, startup_timeout)
        bridge.url = match.group(0).split("listening on ", 1)[1]
        bridge.port = int(match.group(3))
        yield bridge
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        bridge._reader.join(timeout=5)
        if process.stderr is not None:
            process.stderr.close()


def run_bridge_cli(args: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = 30.0) -> tuple[int, str]:
    """Run the bridge to its end (a startup failure, ``--new-token``): exit status and stderr."""
    done = subprocess.run(
        bridge_argv(*args),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env=bridge_env(env),
        cwd=str(ROOT),
        timeout=timeout,
        check=False,
    )
    return done.returncode, done.stderr.decode("utf-8", "replace")


# -- plain HTTP and raw WebSocket requests to a bridge ------------------------------------------------------

#: Headers of a valid upgrade request (no token).
UPGRADE_HEADERS: tuple[tuple[str, str], ...] = (
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ("Sec-WebSocket-Version", "13"),
)


def http_request(
    port: int, path: str = "/ws", headers: Sequence[tuple[str, str]] = (), method: str = "GET", timeout: float = 30
) -> tuple[int, dict[str, str], bytes]:
    """Send one request over a fresh TCP connection; return the status, headers (lower-case names) and body.

    A 101 returns at once with an empty body (the connection is then closed, which the bridge sees as a client
    leaving).
    """
    import socket

    import h11

    client = h11.Connection(h11.CLIENT)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        request = h11.Request(method=method, target=path, headers=[("Host", f"127.0.0.1:{port}"), *headers])
        sock.sendall(client.send(request) + (client.send(h11.EndOfMessage()) or b""))
        status = 0
        response_headers: dict[str, str] = {}
        body = b""
        while True:
            event = client.next_event()
            if event is h11.NEED_DATA:
                client.receive_data(sock.recv(65536))
            elif isinstance(event, (h11.Response, h11.InformationalResponse)):
                status = event.status_code
                response_headers = {k.decode().lower(): v.decode() for k, v in event.headers}
                if status == 101:
                    return status, response_headers, b""
            elif isinstance(event, h11.Data):
                body += event.data
            else:
                return status, response_headers, body


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Poll *condition* every 20 ms; AssertionError naming *what* after *timeout* seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)
