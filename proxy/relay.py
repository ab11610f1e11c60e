"""The trio part: relay JSONL on stdio and WebSocket messages on the app-server connection, both ways at once.

One nursery per connection, one task per direction and stream:

- ``_read_stdin``: stdin bytes -> lines -> text messages, read no faster than the socket accepts;
- ``_write_socket``: frames -> the socket, many frames per send;
- ``_read_socket``: the socket -> wsproto events -> whole lines, many lines per stdout write;
- ``_write_stdout``: lines -> stdout;
- ``_keepalive``: pings when the connection is idle.

Framing and JSON-RPC rules live in the sans-I/O modules (:mod:`proxy.lines`, :mod:`proxy.session`); this
module only moves bytes and decides how the session ends (:class:`Ending`).
"""

from __future__ import annotations

import contextlib
import errno
import logging
from dataclasses import dataclass

import trio
from wsproto.connection import ConnectionState, ConnectionType
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    TextMessage,
)

from .errors import ExitStatus, ProxyError, errno_of, reason_of
from .fastws import Connection  # wsproto's Connection with a fast path for whole data frames
from .fdio import direct_receiver, direct_sender, direct_writer
from .handshake import HandshakeResponse
from .lines import LineSplitter, LineTooLong, line_pieces, message_line
from .messages import MessageAssembler, TooBig, text_fragments, too_big_fragments
from .options import DEFAULT_MAX_FRAME_BYTES, MiB, ProxyOptions
from .outbox import Outbox
from .session import BadLine, Retry, Session
from .spool import Spool
from .stdio import FINISH_PIECE_SECONDS
from .trace import Tap

log = logging.getLogger("codex_appserver")

#: Bytes asked for per read of the socket or stdin.
RECEIVE_BYTES = 256 * 1024
#: stdin is not read while this many bytes wait for the socket (backpressure), in bytes.
SOCKET_HIGH_WATER = 1 * MiB
#: A pong is queued only while fewer bytes than this wait for the socket; otherwise it waits outside the queue and
#: a newer ping replaces it (RFC 6455 §5.5.3 lets an endpoint answer only the most recent ping), in bytes.
PONG_HIGH_WATER = 64 * 1024
#: Output for stdout kept in memory before it goes to the spool file, in bytes.
STDOUT_MEMORY_BYTES = 2 * MiB
#: stdout is written in pieces of about this many bytes, each ending at a line end.
STDOUT_WRITE_BYTES = 1 * MiB

#: RFC 6455 §7.4.1 close codes that end a session cleanly.
CLEAN_CLOSE_CODES = frozenset({1000, 1001})
GOING_AWAY = 1001
NORMAL_CLOSURE = 1000
MESSAGE_TOO_BIG = 1009


@dataclass(frozen=True)
class Ending:
    """How a session ended: the exit status and the stderr line (None: say nothing)."""

    status: int
    message: str | None = None


def stdout_failure(exc: BaseException) -> Ending:
    """How a failed stdout write ends a run: EPIPE (the reader left) quietly with 141, like SIGPIPE; else 74."""
    if errno_of(exc) == errno.EPIPE:
        return Ending(ExitStatus.SIGPIPE)
    return Ending(ExitStatus.IOERR, f"cannot write to stdout: {reason_of(exc)}")


class Relay:
    """One established session: a WebSocket connection and the two stdio streams.

    :param stream: the connected stream, handshake done.
    :param response: the server's 101 response; its trailing bytes are the first WebSocket bytes.
    """

    def __init__(
        self,
        options: ProxyOptions,
        where: str,
        stream: trio.abc.Stream,
        response: HandshakeResponse,
        stdin: trio.abc.ReceiveStream,
        stdout: trio.abc.SendStream,
        tap: Tap | None = None,
    ) -> None:
        self._options = options
        self._where = where
        self._stream = stream
        self._stdin = stdin
        self._stdout = stdout
        self._receive_stdin = direct_receiver(stdin)
        self._receive_socket = direct_receiver(stream)
        self._send_socket = direct_sender(stream)
        self._send_stdout = direct_sender(stdout)
        self._ws = Connection(ConnectionType.CLIENT, trailing_data=response.trailing_data)
        self._frame_limit = response.max_unfragmented_message_bytes or DEFAULT_MAX_FRAME_BYTES
        self._tap = tap or Tap()
        self._session = Session(overload_retries=options.overload_retries, until=options.until)
        self._to_socket = Outbox(write_now=direct_writer(stream))
        spool = Spool(options.spool_limit, options.spool_dir)
        self._to_stdout = Outbox(STDOUT_MEMORY_BYTES, spool, direct_writer(stdout))
        self._ending: Ending | None = None
        self._close_code: int | None = None
        self._ended = trio.Event()
        self._drained = trio.Event()
        self._socket_done = trio.Event()
        self._stdin_scope = trio.CancelScope()
        self._peer_eof = False
        self._messages = MessageAssembler(options.max_incoming_size)
        self._last_receive = trio.current_time()
        self._answer: trio.Event | None = None  # set by the reader when anything arrives after a keepalive ping
        self._pending_ping: Ping | None = None  # the most recent ping not yet answered (PONG_HIGH_WATER)

    # -- how the session ends --------------------------------------------------------------------------

    def end(self, status: int, message: str | None = None, close_code: int | None = None) -> None:
        """Decide the ending (the first decision wins) and, with *close_code*, send a close frame with it."""
        if self._ending is None:
            self._ending = Ending(status, message)
            self._close_code = close_code
            self._ended.set()

    def _stdout_failed(self, ending: Ending) -> None:
        # Lines were lost: that outranks a clean ending decided before the write failed.
        if self._ending is not None and self._ending.status == ExitStatus.OK:
            self._ending = ending
        self.end(ending.status, ending.message, GOING_AWAY)

    @property
    def ending_decided(self) -> bool:
        """True once the session has decided how it ends (it may still be closing)."""
        return self._ending is not None

    def interrupt(self, signum: int) -> None:
        """A signal arrived: close with 1001 (going away) and exit 128+*signum*."""
        self.end(128 + signum, None, GOING_AWAY)

    async def run(self) -> Ending:
        """Relay until the session ends; return how it ended."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._read_socket)
            nursery.start_soon(self._write_socket)
            nursery.start_soon(self._write_stdout)
            nursery.start_soon(self._read_stdin)
            if self._options.ping_interval > 0:
                nursery.start_soon(self._keepalive)
            await self._ended.wait()
            await self._shut_down()
            nursery.cancel_scope.cancel()
        self._to_stdout.close()  # deletes the spool file now rather than at exit
        assert self._ending is not None
        return self._ending

    async def _shut_down(self) -> None:
        assert self._ending is not None
        self._stdin_scope.cancel()
        if self._close_code is not None and self._ws.state in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
            log.info("sending close %d", self._close_code)
            self._tap.event("close", dir="out", code=self._close_code)
            self._send(CloseConnection(code=self._close_code))
        with trio.move_on_after(self._options.close_timeout):
            await self._to_socket.wait_flushed()
            if self._ws.state is ConnectionState.LOCAL_CLOSING:
                await self._socket_done.wait()  # the server's close frame, or EOF (Codex never sends one)
        # Every whole line that arrived is owed to stdout, however slow its reader; a second signal cuts this short.
        await self._to_stdout.wait_flushed()

    # -- stdin -> socket -------------------------------------------------------------------------------

    async def _read_stdin(self) -> None:
        try:
            await self._forward_stdin()
        except ProxyError as exc:  # the trace file failed
            self.end(exc.status, exc.message, NORMAL_CLOSURE)

    async def _forward_stdin(self) -> None:
        with self._stdin_scope:
            splitter = LineSplitter(self._options.max_message_size)
            while True:
                await self._to_socket.wait_below(SOCKET_HIGH_WATER)
                try:
                    chunk = await self._receive_stdin(RECEIVE_BYTES)
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                    self.end(ExitStatus.IOERR, f"cannot read stdin: {reason_of(exc)}", NORMAL_CLOSURE)
                    return
                if not chunk:
                    break
                if not self._forward(splitter.feed(bytes(chunk))):
                    return
            if not self._forward(splitter.end()):
                return
            await self._drain(splitter.line_count)

    async def _drain(self, lines: int) -> None:
        self._session.close_stdin()
        log.info("stdin EOF after %d lines; waiting for %s", lines, self._session.awaiting)
        if not self._session.drained:
            with trio.move_on_after(self._options.drain_timeout):
                await self._drained.wait()
        if self._session.drained:
            self.end(ExitStatus.OK, None, NORMAL_CLOSURE)
        else:
            self.end(
                ExitStatus.SESSION_FAILED,
                f"drain timeout: {self._session.awaiting} still missing from the app-server "
                f"{self._options.drain_timeout:g} s after stdin EOF; raise --drain-timeout to wait longer",
                NORMAL_CLOSURE,
            )

    def _forward(self, items: list[tuple[int, bytes | bytearray] | LineTooLong]) -> bool:
        """Send the lines as text messages; False once nothing more may be sent."""
        self._to_socket.cork()  # one write for all of them
        try:
            return self._forward_lines(items)
        finally:
            self._to_socket.uncork()

    def _forward_lines(self, items: list[tuple[int, bytes | bytearray] | LineTooLong]) -> bool:
        items.reverse()  # taken from the end, so that each line is freed once it is sent (memory for big lines)
        while items:
            item = items.pop()
            if self._ws.state is not ConnectionState.OPEN:
                return False
            if isinstance(item, LineTooLong):
                reason = f"{item.size} bytes, over --max-message-size ({self._options.max_message_size} bytes)"
                if not self._bad_line(BadLine(item.number, reason)):
                    return False
                continue
            text = self._session.outgoing(*item)
            del item
            if isinstance(text, BadLine):
                if not self._bad_line(text):
                    return False
                continue
            if self._session.notice is not None:
                log.warning("%s", self._session.notice)
            if self._tap.active:
                self._tap.message("out", text)
            self._send_text(text)
        self._tap.flush()
        return self._ws.state is ConnectionState.OPEN

    def _bad_line(self, bad: BadLine) -> bool:
        if self._options.strict:
            self.end(
                ExitStatus.SESSION_FAILED,
                f"stdin line {bad.number} is {bad.reason}; stopped because of --strict",
                NORMAL_CLOSURE,
            )
            return False
        log.warning("stdin line %d is %s; not sent", bad.number, bad.reason)
        return True

    def _send_text(self, text: str | bytes | bytearray) -> None:
        for piece, last in text_fragments(text, self._frame_limit):
            self._send(TextMessage(data=piece, message_finished=last))

    def _send(self, event: Event) -> None:
        self._to_socket.put(self._ws.send(event))

    async def _write_socket(self) -> None:
        while True:
            data = await self._to_socket.take()
            try:
                await self._send_socket(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                self._to_socket.close()
                self.end(
                    ExitStatus.SESSION_FAILED,
                    f"lost the connection to the app-server at {self._where} ({reason_of(exc)})",
                )
                return
            self._to_socket.done()
            self._send_pong()

    def _send_pong(self) -> None:
        """Answer the pending ping once the socket queue is short enough (a server that pings and never reads
        gets at most PONG_HIGH_WATER bytes of pongs queued)."""
        if self._pending_ping is None or len(self._to_socket) >= PONG_HIGH_WATER:
            return
        ping, self._pending_ping = self._pending_ping, None
        if self._ws.state is ConnectionState.OPEN:
            self._send(ping.response())

    # -- socket -> stdout ------------------------------------------------------------------------------

    async def _read_socket(self) -> None:
        try:
            while self._handle_events_or_end():
                try:
                    data = await self._receive_socket(RECEIVE_BYTES)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    data = b""  # ECONNRESET: the same as EOF without a close frame
                self._last_receive = trio.current_time()
                if self._answer is not None:
                    self._answer.set()  # any bytes after a ping prove the server alive
                if data:
                    self._ws.receive_data(bytes(data))
                else:
                    self._peer_eof = True
                    self._ws.receive_data(None)
        finally:
            self._socket_done.set()

    def _handle_events_or_end(self) -> bool:
        try:
            return self._handle_events()
        except ProxyError as exc:  # the spool is full or its disk failed
            self._to_stdout.abandon()
            self.end(exc.status, exc.message, GOING_AWAY)
            return False

    def _handle_events(self) -> bool:
        """Turn pending wsproto events into stdout lines and replies; False once the connection is over."""
        lines: list[bytes | bytearray] = []
        going_on = True
        for event in self._ws.events():
            if isinstance(event, TextMessage):
                line = self._text(event)
                if line is not None:
                    lines.append(line)
            elif isinstance(event, BytesMessage):
                self._binary(event)
            elif isinstance(event, Ping):
                self._pending_ping = event  # replaces an older one still waiting
                self._send_pong()
            elif isinstance(event, CloseConnection):
                self._closed(event)
                going_on = False
                break
        if lines:
            self._to_stdout.put(lines[0] if len(lines) == 1 else b"".join(lines))  # one line: no copy to join
        self._tap.flush()
        if self._session.drained:
            self._drained.set()
        return going_on

    def _text(self, event: TextMessage) -> bytes | bytearray | None:
        text = self._messages.text(event.data, event.message_finished)
        if text is None:
            return None
        if isinstance(text, TooBig):
            self.end(
                ExitStatus.SESSION_FAILED,
                f"the app-server sent a message of at least {text.size} bytes"
                f"{too_big_fragments(text)}, over --max-incoming-size "
                f"({self._options.max_incoming_size} bytes); closed with {MESSAGE_TOO_BIG}",
                MESSAGE_TOO_BIG,
            )
            return None
        if self._tap.active:
            self._tap.message("in", text)
        retry = self._session.incoming(text)
        if retry is not None:
            self._nursery.start_soon(self._resend, retry)
            return None
        return message_line(text)

    async def _resend(self, retry: Retry) -> None:
        log.info("the app-server is overloaded; retry %d of a request in %.3f s", retry.attempt, retry.delay)
        await trio.sleep(retry.delay)
        if self._ws.state is ConnectionState.OPEN and self._ending is None:
            self._send_text(retry.text)

    def _binary(self, event: BytesMessage) -> None:
        binary = self._messages.binary(event.data, event.message_finished)
        if binary is not None:
            log.warning(
                "the app-server sent a binary message (%d bytes); not written to stdout, which carries text only",
                binary.size,
            )

    def _closed(self, event: CloseConnection) -> None:
        code = int(event.code)
        state = self._ws.state
        if self._peer_eof:
            log.info("the app-server closed the socket")
            self._tap.event("eof")
            if self._ending is None:
                self.end(ExitStatus.SESSION_FAILED, self._lost_message())
        elif state in (ConnectionState.OPEN, ConnectionState.LOCAL_CLOSING):  # wsproto could not parse the input
            self.end(
                ExitStatus.PROTOCOL,
                f"the app-server at {self._where} broke the WebSocket protocol: {event.reason}; closed with {code}",
                code,
            )
        else:
            log.info("close frame from the app-server: %d %s", code, event.reason or "")
            self._tap.event("close", dir="in", code=code, reason=event.reason or "")
            if state is ConnectionState.REMOTE_CLOSING:  # the server closed first: echo its code
                self._send(event.response())
                reason = f" {event.reason}" if event.reason else ""
                status = ExitStatus.OK if code in CLEAN_CLOSE_CODES else ExitStatus.SESSION_FAILED
                self.end(status, f"the app-server at {self._where} closed the connection ({code}{reason})")

    def _lost_message(self) -> str:
        message = f"lost the connection to the app-server at {self._where}: it closed without a close frame"
        if self._messages.partial:
            message += ", in the middle of a message (its start was dropped)"
        outstanding = self._session.outstanding
        if outstanding:
            message += f"; {outstanding} request{'s' if outstanding != 1 else ''} unanswered"
        return message

    async def _write_stdout(self) -> None:
        while True:
            try:
                data = await self._to_stdout.take()
            except trio.Cancelled:
                await self._finish_line()
                raise
            except ProxyError as exc:  # the spool file cannot be read back (issue 9 #1)
                self._to_stdout.close()
                self._stdout_failed(Ending(exc.status, exc.message))
                return
            if self._to_stdout.line_rest:
                await self._write_whole(data)
                self._to_stdout.done()
                continue
            try:
                for piece in line_pieces(data, STDOUT_WRITE_BYTES):
                    await self._send_stdout(piece)
                    if self._to_stdout.abandoned:
                        break  # stop at a line end: stdout never gets half a line
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                self._to_stdout.close()
                self._stdout_failed(stdout_failure(exc))
                return
            self._to_stdout.done()

    async def _finish_line(self) -> None:
        """Cancelled while waiting: a line a direct write began (in the reader's task) is ended first."""
        rest = self._to_stdout.take_line_rest()
        if rest:
            await self._write_whole(rest)
            self._to_stdout.done()

    async def _write_whole(self, rest: bytes | bytearray) -> None:
        """Write the rest of a line shielded for up to FINISH_PIECE_SECONDS, as :class:`~proxy.stdio.StdoutStream`
        ends a piece under way: a second signal still leaves whole lines. A failure is the next write's to report."""
        deadline = trio.current_time() + FINISH_PIECE_SECONDS
        with (
            trio.CancelScope(shield=True, deadline=deadline),
            contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError),
        ):
            await self._stdout.send_all(rest)

    # -- keepalive -------------------------------------------------------------------------------------

    async def _keepalive(self) -> None:
        interval = self._options.ping_interval
        timeout = self._options.ping_timeout
        while self._ws.state is ConnectionState.OPEN:
            due = self._last_receive + interval
            if trio.current_time() < due:
                await trio.sleep_until(due)
                continue
            answered = self._answer = trio.Event()
            self._send(Ping(payload=b"codex-appserver keepalive"))
            with trio.move_on_after(timeout):
                await answered.wait()
            self._answer = None
            if not answered.is_set():  # no pong, nor anything else, since the ping
                self.end(
                    ExitStatus.SESSION_FAILED,
                    f"the app-server at {self._where} stopped answering: no pong within {timeout:g} s "
                    "of a ping; see --ping-interval and --ping-timeout",
                    GOING_AWAY,
                )
                return
