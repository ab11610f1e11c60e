"""The clients under test: a stdio tool (``codex-appserver proxy``, websocat) as a subprocess, or a direct client.

Every byte that comes back is compared with the bytes expected, in order, as it arrives: a lost, split,
reordered or extra line fails the run (:class:`BenchFailure`), and so does output that stops coming for
:data:`STALL_SECONDS` while some is still owed (a line held back).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import select
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from .procfs import HighWater, cpu_seconds

#: No output for this long while bytes are still owed fails the run, in seconds.
STALL_SECONDS = 30.0
#: websocat 1.13 holds back the last message of a stream when sending it fills a buffer: its copy loop
#: (src/my_copy.rs) takes a whole message into its writer, and a flush that then meets a full socket or pipe
#: (EAGAIN) is retried only after the next successful read from the source or at its EOF, never when the
#: buffer drains (vi/websocat#250, open). Measured here (strace, ss -x, FIONREAD): with 1 MiB lines the last
#: frame (1 MiB + 14 bytes) meets the ~208 KiB default send buffer of websocat's own socket, and the last line
#: (1 MiB + LF) the 1 MiB stdout pipe; websocat then waits in epoll_wait with nothing unsent anywhere but its
#: own buffer, and one more stdin line releases everything, as does stdin EOF. No setting of the echo server or
#: of this harness avoids it (echo buffers, echo backpressure, pipe sizes: measured, see the README); a stream
#: therefore ends with stdin EOF right after its last line (:meth:`Running.stream`), as ``cat FILE | tool``
#: gives, and websocat then completes. Where it may still stall (the serve bridge case: a WebSocket client cannot
#: half-close, its close frame ends both directions), an attempt is given up after this long, in seconds, and
#: retried; a case that stalls on every attempt is recorded as None ("stalled").
WEBSOCAT_STALL_SECONDS = 5.0
WEBSOCAT_ATTEMPTS = 3
#: Bytes per write to the tool's stdin, and per read of its stdout or the socket.
WRITE_BYTES = 1 << 20
READ_BYTES = 4 << 20
#: Bytes per read in the round trips (one 200 B line each). A read of READ_BYTES gets a fresh 4 MiB buffer every
#: time (an mmap, a page fault, a shrink): harness time in every round trip (about 2 us here), whichever
#: tool it measures, which would hide part of the difference between them.
ROUND_TRIP_READ_BYTES = 64 << 10
#: The pipes to and from a tool are this big (both tools get the same; Linux's default cap).
PIPE_BYTES = 1 << 20


class BenchFailure(Exception):
    """The run failed: wrong, missing or extra bytes, a stall, or a tool that exited badly."""


class Stalled(BenchFailure):
    """Output stopped while bytes were still owed (lost or held back)."""


@dataclass
class Stream:
    """One streaming measurement: *seconds* from the first byte written to the last byte checked."""

    seconds: float
    cpu_seconds: float | None  # the client's own CPU time (None: the in-process client)
    echo_cpu_seconds: float
    peak_rss: int | None  # the tool process's peak RSS while streaming (:class:`~benchmarks.procfs.HighWater`), bytes


def _where(expected: bytes, pos: int, chunk: bytes) -> str:
    if pos + len(chunk) > len(expected):
        return f"{pos + len(chunk) - len(expected)} bytes more than were sent"
    index = next(i for i in range(len(chunk)) if chunk[i] != expected[pos + i])
    line_number = expected.count(b"\n", 0, pos + index) + 1
    return f"byte {pos + index} (line {line_number}) differs: got {chunk[index : index + 40]!r}"


def check_chunks(read: Callable[[], bytes], expected: bytes, name: str) -> None:
    """Read until *expected* has come back whole, comparing each chunk as it arrives.

    The comparison is ``bytes.startswith`` at an offset, a memcmp: comparing a memoryview slice with bytes
    goes element by element (20 ms per 4 MiB here, against 0.7 ms), and it made this checker, not the tool
    under test, the biggest user of the machine's two cores.

    :raises BenchFailure: wrong, missing or extra bytes (:class:`Stalled`, saying how many bytes are owed: *read*
        raised it).
    """
    size = len(expected)
    pos = 0
    while pos < size:
        try:
            chunk = read()
        except Stalled as exc:  # say how much is held back: the last line, a byte of it, or more
            raise Stalled(f"{exc}: {size - pos} of {size} bytes still owed") from None
        if not chunk:
            raise BenchFailure(f"{name}: output ended after {pos} of {size} bytes (lost or held back)")
        end = pos + len(chunk)
        if end > size or not expected.startswith(chunk, pos):
            raise BenchFailure(f"{name}: {_where(expected, pos, chunk)}")
        pos = end


def start_writer(
    write: Callable[[memoryview], int],
    data: bytes,
    errors: list[BaseException],
    end: Callable[[], object] = lambda: None,
) -> threading.Thread:
    """Write *data* in a thread, then call *end* (the end of the input: stdin EOF, a close frame)."""

    def run() -> None:
        view = memoryview(data)
        try:
            at = 0
            while at < len(view):
                at += write(view[at : at + WRITE_BYTES])
            end()
        except OSError as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


class PipeTool:
    """A tool that relays JSONL on stdio to a WebSocket server: one subprocess per measurement."""

    def __init__(
        self, name: str, argv: Callable[[str], Sequence[str]], clean_exit: bool, stall_seconds: float = STALL_SECONDS
    ) -> None:
        """:param argv: the command line for a server socket path.
        :param clean_exit: the tool exits 0 by itself at stdin EOF (else it is stopped with SIGTERM).
        :param stall_seconds: no output for this long while bytes are owed raises :class:`Stalled`.
        """
        self.name = name
        self._argv = argv
        self._clean_exit = clean_exit
        self.stall_seconds = stall_seconds

    @contextlib.contextmanager
    def running(self, sock: str) -> Iterator[Running]:
        """Start the tool; on leaving, close its stdin, check nothing more comes out and that it ends."""
        with tempfile.TemporaryFile() as stderr:
            proc = subprocess.Popen(
                list(self._argv(sock)), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, bufsize=0
            )
            assert proc.stdin is not None and proc.stdout is not None
            running = Running(self.name, proc, proc.stdin.fileno(), proc.stdout.fileno(), self.stall_seconds)
            try:
                yield running
                running.finish(self._clean_exit, stderr)
            finally:
                if proc.poll() is None:
                    proc.kill()
                proc.wait()
                proc.stdin.close()
                proc.stdout.close()


class Running:
    """A started tool: write its stdin, read and check its stdout."""

    def __init__(self, name: str, proc: subprocess.Popen[bytes], stdin: int, stdout: int, stall: float) -> None:
        self.name = name
        self._stall = stall
        self.proc = proc
        self._stdin = stdin
        self._stdout = stdout
        for fd in (stdin, stdout):
            with contextlib.suppress(OSError):
                fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        self._poll = select.poll()
        self._poll.register(stdout, select.POLLIN)

    def read(self, size: int = READ_BYTES) -> bytes:
        """The next bytes on stdout, at most *size* (b"" at EOF).

        :raises Stalled: nothing for the tool's stall time.
        """
        if not self._poll.poll(self._stall * 1000):
            raise Stalled(f"{self.name}: no output for {self._stall:g} s while bytes are owed (lost or held back)")
        return os.read(self._stdout, size)

    def stream(self, data: bytes, echo_pid: int) -> Stream:
        """Write *data* (whole lines) to stdin and close it, as ``cat FILE | tool`` does, while checking that
        *data* comes back on stdout; the time ends at its last byte, not at the tool's exit.

        The EOF right after the last line is what a pipeline gives a tool, and it is what lets websocat send
        the message it holds back (see :data:`WEBSOCAT_STALL_SECONDS`); the proxy's drain waits for nothing,
        the lines being notifications.
        """
        assert self.proc.stdin is not None
        errors: list[BaseException] = []
        cpu = cpu_seconds(self.proc.pid)
        echo_cpu = cpu_seconds(echo_pid)
        with HighWater(self.proc.pid) as high_water:
            start = time.perf_counter()
            thread = start_writer(lambda view: os.write(self._stdin, view), data, errors, self.proc.stdin.close)
            check_chunks(self.read, data, self.name)
            seconds = time.perf_counter() - start
        # A tool that has ended meanwhile (the proxy ends soon after its last line once stdin is closed) is a
        # zombie until finish() reaps it: its CPU time (schedstat) is still readable and includes its exit,
        # about 6 ms for the proxy here.
        result = Stream(seconds, cpu_seconds(self.proc.pid) - cpu, cpu_seconds(echo_pid) - echo_cpu, high_water.peak)
        thread.join()
        if errors:
            raise BenchFailure(f"{self.name}: writing stdin failed: {errors[0]}")
        return result

    def round_trips(self, lines: Sequence[bytes]) -> list[float]:
        """Send each line once the previous one is back; the round-trip time of each, in seconds."""
        read = functools.partial(self.read, ROUND_TRIP_READ_BYTES)
        times = []
        for one in lines:
            start = time.perf_counter()
            os.write(self._stdin, one)
            check_chunks(read, one, self.name)
            times.append(time.perf_counter() - start)
        return times

    def finish(self, clean_exit: bool, stderr: object) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        deadline = time.monotonic() + (STALL_SECONDS if clean_exit else 2.0)
        while time.monotonic() < deadline and self._poll.poll(max(0, deadline - time.monotonic()) * 1000):
            extra = os.read(self._stdout, READ_BYTES)
            if not extra:
                break
            raise BenchFailure(f"{self.name}: {len(extra)} unexpected bytes after the last line: {extra[:60]!r}")
        if not clean_exit:
            self.proc.send_signal(signal.SIGTERM)
        try:
            status = self.proc.wait(STALL_SECONDS)
        except subprocess.TimeoutExpired:
            raise BenchFailure(f"{self.name}: still running {STALL_SECONDS:g} s after stdin EOF") from None
        if clean_exit and status != 0:
            assert hasattr(stderr, "seek") and hasattr(stderr, "read")
            stderr.seek(0)
            raise BenchFailure(f"{self.name}: exit status {status}: {stderr.read().decode(errors='replace')}")
