"""A WebSocket client in this process that sends pre-built frames and checks every byte that comes back.

On the echo server's Unix socket it is the limit (no proxy); on a bridge's TCP port (``codex-appserver serve``,
websocat ``ws-l:``), it is that bridge's one client. Frames come from :mod:`benchmarks.workload`.
"""

from __future__ import annotations

import contextlib
import functools
import os
import select
import socket
import time
from collections.abc import Sequence

from .clients import (
    READ_BYTES,
    ROUND_TRIP_READ_BYTES,
    STALL_SECONDS,
    BenchFailure,
    Stalled,
    Stream,
    check_chunks,
    start_writer,
)
from .procfs import cpu_seconds, peak_rss_bytes
from .workload import close_frame


def upgrade_request(path: str = "/", headers: Sequence[tuple[str, str]] = ()) -> bytes:
    """An opening handshake request (RFC 6455 §4.1) for *path* with extra *headers* (e.g. Authorization)."""
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers)
    return (
        f"GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    ).encode("ascii")


class Direct:
    """A WebSocket client in this process, sending pre-built frames: with the echo server's Unix socket as
    *address*, what the echo server can do at most; with a bridge's ``(host, port)``, one client of that bridge.

    :param address: a Unix socket path, or a TCP ``(host, port)``.
    :param path: the request target of the opening handshake.
    :param headers: extra request headers; their values never appear in an error message.
    :param name: the client's name in error messages.
    :param stall_seconds: no frames for this long while bytes are owed raises :class:`Stalled`.
    :raises BenchFailure: the connection or the handshake failed (:class:`Stalled`: no answer in time).
    """

    def __init__(
        self,
        address: str | tuple[str, int],
        path: str = "/",
        headers: Sequence[tuple[str, str]] = (),
        name: str = "direct",
        stall_seconds: float = STALL_SECONDS,
    ) -> None:
        self.name = name
        self._stall = stall_seconds
        family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        self._sock.settimeout(stall_seconds)  # for the connection and the opening handshake only
        try:
            self._sock.connect(address)
            if family == socket.AF_INET:
                self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sock.sendall(upgrade_request(path, headers))
            response = b""
            while b"\r\n\r\n" not in response:
                more = self._sock.recv(4096)
                if not more:
                    raise BenchFailure(f"{name}: the server closed during the opening handshake")
                response += more
        except TimeoutError:
            self._sock.close()
            raise Stalled(f"{name}: no answer to the opening handshake within {stall_seconds:g} s") from None
        except OSError as exc:
            self._sock.close()
            raise BenchFailure(f"{name}: cannot connect: {exc}") from None
        except BenchFailure:
            self._sock.close()
            raise
        if not response.startswith(b"HTTP/1.1 101 "):
            self._sock.close()
            status_line = response.split(b"\r\n", 1)[0]  # only the status line: the request's token stays out
            raise BenchFailure(f"{name}: handshake refused: {status_line!r}")
        self._pending = response.split(b"\r\n\r\n", 1)[1]
        self._sock.settimeout(None)

    def close(self) -> None:
        """Close the socket; a send blocked in another thread gets an error instead of hanging."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()

    def read(self, size: int = READ_BYTES) -> bytes:
        """The next bytes from the server, at most *size*.

        :raises Stalled: nothing for the stall time.
        """
        if self._pending:
            data, self._pending = self._pending, b""
            return data
        ready, _, _ = select.select([self._sock], [], [], self._stall)
        if not ready:
            raise Stalled(f"{self.name}: no frames for {self._stall:g} s while bytes are owed (lost or held back)")
        return self._sock.recv(size)

    def stream(self, frames: bytes, expected: bytes, echo_pid: int, bridge_pid: int | None = None) -> Stream:
        """Send *frames* while checking that *expected* comes back; with *bridge_pid*, that process's CPU time
        over the stream and its peak RSS at the end."""
        errors: list[BaseException] = []
        echo_cpu = cpu_seconds(echo_pid)
        bridge_cpu = cpu_seconds(bridge_pid) if bridge_pid is not None else 0.0
        start = time.perf_counter()
        thread = start_writer(self._sock.send, frames, errors)
        check_chunks(self.read, expected, self.name)
        seconds = time.perf_counter() - start
        result = Stream(
            seconds,
            cpu_seconds(bridge_pid) - bridge_cpu if bridge_pid is not None else None,
            cpu_seconds(echo_pid) - echo_cpu,
            peak_rss_bytes(bridge_pid) if bridge_pid is not None else None,
        )
        thread.join()
        if errors:
            raise BenchFailure(f"{self.name}: sending failed: {errors[0]}")
        return result

    def round_trips(self, pairs: Sequence[tuple[bytes, bytes]]) -> list[float]:
        """Send each frame once the previous one's echo is back; the round-trip time of each, in seconds."""
        read = functools.partial(self.read, ROUND_TRIP_READ_BYTES)
        times = []
        for frame, back in pairs:
            start = time.perf_counter()
            self._sock.sendall(frame)
            check_chunks(read, back, self.name)
            times.append(time.perf_counter() - start)
        return times

    def finish(self, close_back: bool) -> None:
        """Send a close frame (1000) and read until the server hangs up: anything but a close frame before EOF
        is an extra message (or a late one) and fails the run.

        :param close_back: the server must answer with a close frame (RFC 6455 §5.5.1), not just hang up.
        :raises BenchFailure: extra bytes, no close frame when one is owed, or no EOF within the stall time.
        """
        self._sock.sendall(close_frame(1000, os.urandom(4)))
        rest = self._pending
        self._pending = b""
        deadline = time.monotonic() + self._stall
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self._sock], [], [], max(0.0, deadline - time.monotonic()))
            try:
                more = self._sock.recv(READ_BYTES) if ready else b""
            except ConnectionResetError:
                more = b""
            if not more:
                break
            rest += more
        else:
            raise BenchFailure(f"{self.name}: still connected {self._stall:g} s after our close frame")
        if rest and rest[0] != 0x88:
            raise BenchFailure(f"{self.name}: {len(rest)} unexpected bytes after the last message: {rest[:60]!r}")
        if close_back and not rest:
            raise BenchFailure(f"{self.name}: hung up without answering our close frame")
