"""The upstream side of a relay: the client WebSocket connection to the app-server (trio side).

One :class:`Upstream` owns the connected stream after the opening handshake and the wsproto CLIENT
:class:`~wsproto.connection.Connection` on it. It runs three tasks (:meth:`Upstream.run`):

- ``_read``: the socket -> wsproto events -> whole text messages, read at full speed whatever the client does
  (Codex drops a client with more than 32x1024 queued messages);
- ``_write``: frames -> the socket, many frames per send, from an :class:`~proxy.outbox.Outbox` that gives
  backpressure (:meth:`Upstream.wait_writable`);
- ``_keepalive``: a ping after ``ping_interval`` seconds with nothing received; no answer within
  ``ping_timeout`` ends the connection.

It cuts messages over the frame limit of the 101 response into fragments (RFC 6455 §5.4), joins incoming
fragments and enforces ``max_incoming_size`` (1009), answers pings, and maps how the connection ended to an
:class:`UpstreamEnd`. What to do with messages and endings is the :class:`UpstreamListener`'s business (the
relay): this module never decides an exit status on its own, it proposes one.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

import trio
from wsproto.connection import ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Event, Ping, TextMessage

from . import upstream_end
from .errors import reason_of
from .fastws import Connection, Utf8Text  # wsproto's Connection with a fast path for whole data frames
from .fdio import direct_gatherer, direct_receiver, direct_sender, direct_writer
from .handshake import HandshakeResponse
from .messages import MessageAssembler, TooBig, text_fragments
from .options import DEFAULT_MAX_FRAME_BYTES
from .outbox import GATHER_PIECE_BYTES, Outbox
from .trace import Tap
from .upstream_end import UpstreamEnd

log = logging.getLogger("codex_appserver")

#: Bytes asked for per read of the socket.
RECEIVE_BYTES = 256 * 1024
#: The client side is not read while this many bytes wait for the socket (backpressure), in bytes.
SOCKET_HIGH_WATER = 512 * 1024
#: A pong is queued only while fewer bytes than this wait for the socket; otherwise it waits outside the queue and
#: a newer ping replaces it (RFC 6455 §5.5.3 lets an endpoint answer only the most recent ping), in bytes.
PONG_HIGH_WATER = 64 * 1024

#: A text message as it travels: the UTF-8 bytes (from the socket or stdin), or a str.
Text = str | bytes | bytearray

#: Payload of our keepalive pings.
KEEPALIVE_PAYLOAD = b"codex-appserver keepalive"


class UpstreamListener(Protocol):
    """What an :class:`Upstream` reports to (the relay)."""

    def upstream_messages(self, texts: list[Text]) -> bool:
        """Whole text messages from the app-server, in order (the list may be empty: one call per read).

        :returns: False to stop reading the socket (the relay has decided to end).
        """

    def upstream_ended(self, end: UpstreamEnd) -> None:
        """The connection is over or must be closed; called before any later :meth:`upstream_messages`."""


class Upstream:
    """The WebSocket connection to the app-server, handshake done.

    :param stream: the connected stream (Unix socket, TCP or TLS).
    :param response: the server's 101 response; its trailing bytes are the first WebSocket bytes, and its
        ``x-codex-websocket-max-unfragmented-message-bytes`` header the frame limit (16 MiB when absent).
    :param where: names the app-server in messages (a path or URL).
    :param max_incoming_size: largest message accepted, in bytes; a larger one proposes close 1009.
    :param ping_interval: seconds without anything received before a ping (0: never).
    :param ping_timeout: seconds a ping may go unanswered.
    """

    def __init__(
        self,
        listener: UpstreamListener,
        stream: trio.abc.Stream,
        response: HandshakeResponse,
        where: str,
        *,
        max_incoming_size: int,
        ping_interval: float,
        ping_timeout: float,
        tap: Tap,
    ) -> None:
        self._listener = listener
        self._stream = stream
        self._where = where
        self._ws = Connection(ConnectionType.CLIENT, trailing_data=response.trailing_data, utf8_text=True)
        self._frame_limit = response.max_unfragmented_message_bytes or DEFAULT_MAX_FRAME_BYTES
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._tap = tap
        self._outbox = Outbox(write_now=direct_writer(stream), gather_now=direct_gatherer(stream))
        self._receive_socket = direct_receiver(stream)
        self._send_socket = direct_sender(stream)
        self._messages = MessageAssembler(max_incoming_size)
        self._max_incoming_size = max_incoming_size
        self._socket_done = trio.Event()
        self._peer_eof = False
        self._last_receive = trio.current_time()
        self._answer: trio.Event | None = None  # set by the reader when anything arrives after a keepalive ping
        self._pending_ping: Ping | None = None  # the most recent ping not yet answered (PONG_HIGH_WATER)
        self._fragments: Iterator[tuple[str, bool]] | None = None  # the big message being framed, if any
        self._behind: deque[Text] = deque()  # messages sent while a big one is being framed
        #: Called with the number of unanswered requests when the connection is lost (for the stderr line).
        self.outstanding: Callable[[], int] = lambda: 0

    @property
    def where(self) -> str:
        return self._where

    @property
    def open(self) -> bool:
        """True while messages may be sent (the WebSocket connection is OPEN)."""
        return self._ws.state is ConnectionState.OPEN

    async def run(self) -> None:
        """Run the read, write and keepalive tasks until cancelled (the relay cancels them after :meth:`close`)."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._read)
            nursery.start_soon(self._write)
            if self._ping_interval > 0:
                nursery.start_soon(self._keepalive)

    # -- sending ---------------------------------------------------------------------------------------

    def send_text(self, text: Text) -> None:
        """Queue one text message (str, or valid UTF-8), as fragments when it is over the frame limit. Never
        blocks.

        A message over the frame limit is framed a fragment at a time, as the socket takes them (at most
        :data:`SOCKET_HIGH_WATER` bytes of frames wait): its frames never all sit in memory next to it. Messages
        sent meanwhile wait behind it (RFC 6455 §5.4: fragments of two messages never interleave).
        """
        if self._sending:
            self._behind.append(text)
            return
        self._start(text)
        if self._fragments is not None:
            self._frame_fragments()

    def send_texts(self, texts: Sequence[Text]) -> None:
        """:meth:`send_text` for each of *texts*, in order (the messages of one read), the common case in one loop:
        a message that fits one frame, while nothing waits behind a big one."""
        if self._sending:
            self._behind.extend(texts)
            return
        limit = min(self._frame_limit, GATHER_PIECE_BYTES - 1)
        simple = 0
        for text in texts:
            if isinstance(text, str) or len(text) > limit:
                break
            simple += 1
        if simple:
            self._outbox.put(self._ws.send_texts(texts if simple == len(texts) else texts[:simple]))
        for rest in texts[simple:]:  # str, a frame worth gathering, or fragments: the general way
            self.send_text(rest)

    def _start(self, text: Text) -> None:
        """Frame *text* now when it fits one frame (the common case: no decode), else begin its fragments."""
        if not isinstance(text, str) and len(text) <= self._frame_limit:
            if len(text) >= GATHER_PIECE_BYTES and self._outbox.gathering:
                header, payload = self._ws.send_utf8_parts(text)  # written without being joined
                self._outbox.put(header)
                self._outbox.put(payload)
            else:
                self._outbox.put(self._ws.send_utf8(text))
        else:
            self._fragments = text_fragments(text, self._frame_limit)

    def _frame_fragments(self) -> None:
        """Frame the fragments of the big message in progress, then the messages behind it, until
        :data:`SOCKET_HIGH_WATER` bytes wait for the socket (or the connection is no longer open)."""
        while len(self._outbox) < SOCKET_HIGH_WATER and self._ws.state is ConnectionState.OPEN:
            if self._fragments is None:
                if not self._behind:
                    return
                self._start(self._behind.popleft())
                continue
            piece = next(self._fragments, None)
            if piece is None:
                self._fragments = None
                continue
            self._send(TextMessage(data=piece[0], message_finished=piece[1]))

    @property
    def _sending(self) -> bool:
        """A big message (or one behind it) is still to be framed."""
        return self._fragments is not None or bool(self._behind)

    def _still_framing(self) -> bool:
        """A big message is still being framed on a connection that can take it."""
        return self._sending and self._ws.state is ConnectionState.OPEN and not self._outbox.abandoned

    def cork(self) -> None:
        """Gather the frames of the next :meth:`send_text` calls until :meth:`uncork`: one write for all of them
        (a write per message cost a fifth of the proxy's CPU at 100 B)."""
        self._outbox.cork()

    def uncork(self) -> None:
        """Write what was gathered since :meth:`cork`, then go on framing a big message if that write took it all:
        only the writer task frames more otherwise, and it wakes only for bytes the write left queued."""
        self._outbox.uncork()
        if self._sending:
            self._frame_fragments()

    def _send(self, event: Event) -> None:
        self._outbox.put(self._ws.send(event))

    async def wait_writable(self) -> None:
        """Wait until fewer than :data:`SOCKET_HIGH_WATER` bytes wait for the socket and no big message is still
        being framed: read the client no faster."""
        await self._outbox.wait_below(SOCKET_HIGH_WATER)
        while self._still_framing():
            await self._outbox.wait_changed()

    async def close(self, code: int | None, timeout: float) -> None:
        """Send a close frame with *code* (None: none) if the connection is still open, then wait up to *timeout*
        seconds for every queued frame to be written and, after our close frame, for the server's close frame
        or EOF (Codex never sends one)."""
        with trio.move_on_after(timeout):
            if code is not None and self._ws.state in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
                while self._still_framing():  # a big message ends first
                    await self._outbox.wait_changed()
                log.info("sending close %d", code)
                self._tap.event("close", dir="out", code=code)
                self._send(CloseConnection(code=code))
            await self._outbox.wait_flushed()
            if self._ws.state is ConnectionState.LOCAL_CLOSING:
                await self._socket_done.wait()

    async def _write(self) -> None:
        while True:
            data = await self._outbox.take()
            try:
                await self._send_socket(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                self._outbox.close()
                self._listener.upstream_ended(upstream_end.write_failed(self._where, reason_of(exc)))
                return
            self._outbox.done()
            self._send_pong()
            if self._sending:
                self._frame_fragments()

    def _send_pong(self) -> None:
        """Answer the pending ping once the socket queue is short enough (a server that pings and never reads
        gets at most PONG_HIGH_WATER bytes of pongs queued)."""
        if self._pending_ping is None or len(self._outbox) >= PONG_HIGH_WATER:
            return
        ping, self._pending_ping = self._pending_ping, None
        if self._ws.state is ConnectionState.OPEN:
            self._send(ping.response())

    # -- receiving -------------------------------------------------------------------------------------

    async def _read(self) -> None:
        try:
            while self._handle_events():
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

    def _handle_events(self) -> bool:
        """Hand pending wsproto events to the listener and answer pings; False once the connection is over."""
        texts: list[Text] = []
        for event in self._ws.events():
            if type(event) is Utf8Text:  # a whole text message from the fast path, as UTF-8
                whole = self._messages.utf8(event)
                if isinstance(whole, TooBig):
                    self._too_big(whole)
                else:
                    texts.append(whole)
            elif isinstance(event, TextMessage):
                text = self._messages.text(event.data, event.message_finished)
                if text is None:
                    continue
                if isinstance(text, TooBig):
                    self._too_big(text)
                    continue
                texts.append(text)
            elif isinstance(event, BytesMessage):
                self._binary(event)
            elif isinstance(event, Ping):
                self._pending_ping = event  # replaces an older one still waiting
                self._send_pong()
            elif isinstance(event, CloseConnection):
                # The messages before the close come first: the session counts their responses.
                self._listener.upstream_messages(texts)
                self._closed(event)
                return False
        return self._listener.upstream_messages(texts)

    def _too_big(self, text: TooBig) -> None:
        self._listener.upstream_ended(upstream_end.too_big(text, self._max_incoming_size))

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
            end = upstream_end.lost(self._where, partial=self._messages.partial, outstanding=self.outstanding())
            self._listener.upstream_ended(end)
        elif state in (ConnectionState.OPEN, ConnectionState.LOCAL_CLOSING):  # wsproto could not parse the input
            self._listener.upstream_ended(upstream_end.protocol_error(self._where, event.reason, code))
        else:
            log.info("close frame from the app-server: %d %s", code, event.reason or "")
            self._tap.event("close", dir="in", code=code, reason=event.reason or "")
            if state is ConnectionState.REMOTE_CLOSING:  # the server closed first: echo its code
                self._send(event.response())
                self._listener.upstream_ended(upstream_end.closed(self._where, code, event.reason))

    # -- keepalive -------------------------------------------------------------------------------------

    async def _keepalive(self) -> None:
        interval = self._ping_interval
        timeout = self._ping_timeout
        while self._ws.state is ConnectionState.OPEN:
            due = self._last_receive + interval
            if trio.current_time() < due:
                await trio.sleep_until(due)
                continue
            answered = self._answer = trio.Event()
            self._send(Ping(payload=KEEPALIVE_PAYLOAD))
            with trio.move_on_after(timeout):
                await answered.wait()
            self._answer = None
            if not answered.is_set():  # no pong, nor anything else, since the ping
                self._listener.upstream_ended(upstream_end.no_pong(self._where, timeout))
                return
