"""The serve bridge case: one WebSocket client through a WebSocket-to-WebSocket bridge to the echo server.

Two bridges, each a fresh process per measurement, so that its peak RSS is that case's:

- ``serve``: ``codex-appserver serve --bind 127.0.0.1:0 --sock ECHO --token-file FILE``, with ``CODEX_HOME`` in
  the run's temporary folder (no device of this machine's bridge counts). It is ready once it prints
  ``codex-appserver: listening on ws://HOST:PORT/ws`` on stderr; the client opens ``/ws`` with
  ``Authorization: Bearer <token>`` (a fresh 256-bit token in a 0600 file, never printed).
- ``websocat-bridge``: ``websocat -t -B 4194304 --ws-c-uri=ws://localhost/ ws-l:127.0.0.1:PORT ws-c:unix:ECHO``
  on a free port; ready once the port accepts a connection. Each client message becomes one text message to
  the echo server and back (``-t``; the byte check proves one frame per message).

The client is :class:`~benchmarks.wsclient.Direct` over TCP loopback, sending the same frames as the direct
case. After each measurement it sends a close frame and reads to EOF: any message after the last expected one
fails the run. websocat gets the same stall policy as in the stdio cases (:data:`WEBSOCAT_STALL_SECONDS`,
:data:`WEBSOCAT_ATTEMPTS`).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TypeVar

from .clients import STALL_SECONDS, WEBSOCAT_ATTEMPTS, WEBSOCAT_STALL_SECONDS, BenchFailure, Stalled, Stream
from .wsclient import Direct

T = TypeVar("T")

LISTENING = re.compile(rb"codex-appserver: listening on ws://(?P<host>[^/\s]+):(?P<port>\d+)(?P<path>/\S*)")
#: Seconds between looks at a starting bridge (its stderr, its port).
POLL_SECONDS = 0.005
#: Starts of a bridge given a free port before its failure to listen fails the run.
START_ATTEMPTS = 3


@dataclass(frozen=True)
class Address:
    """Where a started bridge listens, and what its client must send."""

    host: str
    port: int
    path: str
    headers: tuple[tuple[str, str], ...] = ()


class BridgeTool:
    """A WebSocket-to-WebSocket bridge started as a subprocess for one measurement.

    :param argv: the command line for (echo socket path, port; 0 when the bridge picks and prints its own).
    :param ready: waits until the started process listens; returns its address or raises BenchFailure.
    :param clean_exit: the bridge exits 0 on SIGTERM (else any status is accepted, as for websocat in the
        stdio cases).
    :param close_back: the bridge answers a client's close frame with a close frame (else it may just hang up).
    :param picks_port: the bridge is given port 0 and says which port it took (else it gets a free port).
    """

    def __init__(
        self,
        name: str,
        argv: Callable[[str, int], Sequence[str]],
        ready: Callable[[subprocess.Popen[bytes], IO[bytes], int], Address],
        *,
        clean_exit: bool,
        close_back: bool,
        picks_port: bool = False,
        env: dict[str, str] | None = None,
        stall_seconds: float = STALL_SECONDS,
        attempts: int = 1,
    ) -> None:
        self.name = name
        self._argv = argv
        self._ready = ready
        self._clean_exit = clean_exit
        self.close_back = close_back
        self._picks_port = picks_port
        self._env = env
        self.stall_seconds = stall_seconds
        self.attempts = attempts

    @contextlib.contextmanager
    def running(self, sock: str) -> Iterator[tuple[int, Address]]:
        """Start the bridge and wait until it listens; on leaving, SIGTERM it and check how it ended."""
        with tempfile.TemporaryFile() as stderr:
            proc, address = self._start(sock, stderr)
            try:
                yield proc.pid, address
                proc.send_signal(signal.SIGTERM)
                try:
                    status = proc.wait(STALL_SECONDS)
                except subprocess.TimeoutExpired:
                    raise BenchFailure(f"{self.name}: still running {STALL_SECONDS:g} s after SIGTERM") from None
                if self._clean_exit and status != 0:
                    raise BenchFailure(f"{self.name}: exit status {status} after SIGTERM: {_tail(stderr)}")
            finally:
                _stop(proc)

    def _start(self, sock: str, stderr: IO[bytes]) -> tuple[subprocess.Popen[bytes], Address]:
        # A port found free may be taken before the bridge binds it (by any process): then try another.
        for attempt in range(START_ATTEMPTS):
            stderr.seek(0)
            stderr.truncate()
            port = 0 if self._picks_port else free_port()
            argv = list(self._argv(sock, port))
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stderr=stderr, env=self._env)
            try:
                return proc, self._ready(proc, stderr, port)
            except ExitedEarly:
                _stop(proc)
                if self._picks_port or attempt + 1 == START_ATTEMPTS:
                    raise
            except BaseException:
                _stop(proc)
                raise
        raise AssertionError("unreachable")

    def measure(
        self,
        sock: str,
        warm_up: tuple[bytes, bytes],
        measure: Callable[[Direct, int], T],
        log: Callable[[str], None],
    ) -> T | None:
        """Run *measure* (client, bridge pid) on a fresh bridge and client, after one checked *warm_up* round
        trip; then close the client cleanly. A stall is retried up to :attr:`attempts` times in all, after
        which the case is recorded as None (stalled) when retries are allowed, else it fails the run."""
        for attempt in range(self.attempts):
            try:
                with self.running(sock) as (pid, address):
                    client = Direct(
                        (address.host, address.port), address.path, address.headers, self.name, self.stall_seconds
                    )
                    try:
                        client.round_trips([warm_up])
                        result = measure(client, pid)
                        client.finish(self.close_back)
                    finally:
                        client.close()
                    return result
            except Stalled as exc:
                if self.attempts == 1:
                    raise
                if attempt + 1 == self.attempts:
                    log(f"  {exc}")
                    return None
                log(f"  {exc}; again")
        return None


class ExitedEarly(BenchFailure):
    """The bridge exited before it listened (for one given a port: maybe taken meanwhile)."""


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (for a bridge that cannot pick its own)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _tail(stderr: IO[bytes]) -> str:
    stderr.seek(0)
    return stderr.read()[-2000:].decode(errors="replace").strip()


def _wait(proc: subprocess.Popen[bytes], stderr: IO[bytes], name: str, check: Callable[[], T | None]) -> T:
    deadline = time.monotonic() + STALL_SECONDS
    while time.monotonic() < deadline:
        found = check()
        if found is not None:
            return found
        if proc.poll() is not None:
            raise ExitedEarly(f"{name}: exited with status {proc.returncode} before listening: {_tail(stderr)}")
        time.sleep(POLL_SECONDS)
    raise BenchFailure(f"{name}: not listening {STALL_SECONDS:g} s after its start")


def serve_tool(executable: Path, folder: Path) -> BridgeTool:
    """``codex-appserver serve`` on loopback with a token file in *folder* (``CODEX_HOME`` there too)."""
    token = secrets.token_urlsafe(32)  # 256 bits, as --new-token makes
    token_file = folder / "serve.token"
    with os.fdopen(os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as out:
        out.write(token + "\n")
    home = folder / "codex-home"
    home.mkdir(mode=0o700, exist_ok=True)
    headers = (("Authorization", f"Bearer {token}"),)

    def argv(sock: str, port: int) -> list[str]:
        bind = f"127.0.0.1:{port}"
        return [str(executable), "serve", "--bind", bind, "--sock", sock, "--token-file", str(token_file)]

    def ready(proc: subprocess.Popen[bytes], stderr: IO[bytes], port: int) -> Address:
        def listening() -> Address | None:
            stderr.seek(0)
            found = LISTENING.search(stderr.read())
            if found is None:
                return None
            return Address(found["host"].decode(), int(found["port"]), found["path"].decode(), headers)

        return _wait(proc, stderr, "serve", listening)

    return BridgeTool(
        "serve",
        argv,
        ready,
        clean_exit=True,
        close_back=True,
        picks_port=True,
        env={**os.environ, "CODEX_HOME": str(home)},
    )


def websocat_bridge_tool(websocat: str) -> BridgeTool:
    """websocat 1.13 as a WebSocket server relaying each client to the echo server's Unix socket."""

    def argv(sock: str, port: int) -> list[str]:
        return [
            websocat,
            "-t",
            "-B",
            "4194304",
            "--ws-c-uri=ws://localhost/",
            f"ws-l:127.0.0.1:{port}",
            f"ws-c:unix:{sock}",
        ]

    def ready(proc: subprocess.Popen[bytes], stderr: IO[bytes], port: int) -> Address:
        def accepts() -> Address | None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
            except OSError:
                return None
            return Address("127.0.0.1", port, "/")

        return _wait(proc, stderr, "websocat-bridge", accepts)

    return BridgeTool(
        "websocat-bridge",
        argv,
        ready,
        clean_exit=False,
        close_back=False,
        stall_seconds=WEBSOCAT_STALL_SECONDS,
        attempts=WEBSOCAT_ATTEMPTS,
    )


def bridge_tools(bin_dir: Path, websocat: str | None, folder: Path) -> list[BridgeTool]:
    """serve and, when installed, websocat as bridges; *folder* holds serve's token file and CODEX_HOME."""
    found = [serve_tool(bin_dir / "codex-appserver", folder)]
    if websocat is not None:
        found.append(websocat_bridge_tool(websocat))
    return found


__all__ = ["Address", "BridgeTool", "Stream", "bridge_tools", "free_port"]
