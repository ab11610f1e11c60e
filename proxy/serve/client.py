"""The downstream endpoint of ``serve``: one WebSocket client, server side, after its 101 (trio side).

Three tasks (:meth:`WebSocketEndpoint.run`):

- ``_read``: the client's bytes -> wsproto SERVER events -> whole text messages for the relay, read no faster
  than the app-server's socket takes them; pings answered; binary messages dropped with a log line (the daemon
  drops them too); a message over ``max_message_bytes`` (64 MiB, Codex's cap) closes the client with 1009;
- ``_write``: the app-server's messages -> the client. They wait in a queue of whole frames
  (:class:`~proxy.serve.frame_queue.FrameQueue`) bounded by ``queue_bytes``: past it the client is a slow
  consumer and is closed with 1008 (its upstream with 1001), so the relay can always read the daemon at full
  speed and other clients are never slowed;
- ``_keepalive``: a ping after ``ping_interval`` seconds with nothing received; none answered within
  ``ping_timeout`` closes the client with 1011.
"""

from __future__ import annotations

import logging

import trio
from wsproto.connection import ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Event, Ping, TextMessage

from ..ending import Ending
from ..errors import ExitStatus
from ..fastws import Connection, Utf8Text  # wsproto's Connection with a fast path for whole data frames
from ..fdio import direct_receiver
from ..messages import MessageAssembler, TooBig
from ..upstream import Text
from ..upstream_end import GOING_AWAY, MESSAGE_TOO_BIG
from .frame_queue import FrameQueue
from .relay_port import RelayPort, UpstreamPort

log = logging.getLogger("codex_appserver")

RECEIVE_BYTES = 256 * 1024
#: Seconds the client gets to take its last messages and answer our close frame before the connection is dropped.
FINISH_TIMEOUT = 10.0
#: The same when the whole bridge is shutting down, which should take seconds at most.
SHUTDOWN_FINISH_TIMEOUT = 3.0
#: The close reason every client gets (with 1001) when the bridge shuts down.
SHUTDOWN_REASON = "the bridge is shutting down"

#: RFC 6455 §7.4.1 close codes the bridge sends its clients.
POLICY_VIOLATION = 1008
INTERNAL_ERROR = 1011
SERVICE_RESTART = 1012
#: 1005 (no code in the close frame) and 1006 (no close frame at all): for logs only, never sent.
NO_STATUS = 1005
ABNORMAL = 1006

KEEPALIVE_PAYLOAD = b"codex-appserver keepalive"


class WebSocketEndpoint:
    """One bridge client as the relay's downstream.

    :param stream: the client's stream (TCP or TLS), its 101 already sent.
    :param trailing_data: bytes that followed the client's request: its first frames.
    :param peer: the client's address, for log lines.
    :param queue_bytes: the most bytes of frames waiting for the client (``--client-queue-bytes``).
    :param max_message_bytes: the largest message accepted from the client, in bytes.
    """

    upstream_gone_code: int | None = SERVICE_RESTART

    def __init__(
        self,
        stream: trio.abc.Stream,
        trailing_data: bytes,
        peer: str,
        *,
        queue_bytes: int,
        max_message_bytes: int,
        ping_interval: float,
        ping_timeout: float,
    ) -> None:
        self._stream = stream
        self._receive = direct_receiver(stream)
        self._peer = peer
        self._ws = Connection(ConnectionType.SERVER, trailing_data=trailing_data, utf8_text=True)
        self._limit = queue_bytes
        self._max_message = max_message_bytes
        self._messages = MessageAssembler(max_message_bytes)
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        #: The frames waiting for the client, and the writer task's state.
        self.frames = FrameQueue(stream)
        self._forwarding = True
        self._eof = False
        self._reader_done = trio.Event()
        self._last_receive = trio.current_time()
        self._answer: trio.Event | None = None
        #: Messages relayed each way, for the connection's log line.
        self.from_client = 0
        self.to_client = 0
        #: The close code of the connection (sent or received; 1006 when it ended without a close frame).
        self.close_code: int = ABNORMAL
        #: How long :meth:`finish` waits for the client, in seconds.
        self.finish_timeout = FINISH_TIMEOUT

    async def run(self, relay: RelayPort) -> None:
        self._relay = relay
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._write)
                nursery.start_soon(self._read)
                if self._ping_interval > 0:
                    nursery.start_soon(self._keepalive)
        finally:
            self._reader_done.set()

    def _end(self, status: int, message: str | None, code: int | None, reason: str = "") -> None:
        self._relay.end(Ending(status, message, code, reason), GOING_AWAY)

    # -- client -> relay -------------------------------------------------------------------------------

    async def _read(self) -> None:
        upstream = self._relay.upstream
        try:
            while self._handle_read(upstream):
                if self._forwarding:
                    await upstream.wait_writable()
                try:
                    data = await self._receive(RECEIVE_BYTES)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    data = b""
                self._last_receive = trio.current_time()
                if self._answer is not None:
                    self._answer.set()
                if data:
                    self._ws.receive_data(bytes(data))
                else:
                    self._eof = True
                    self._ws.receive_data(None)
        finally:
            self._reader_done.set()

    def _handle_read(self, upstream: UpstreamPort) -> bool:
        """The events of one read, their messages to the app-server in one write; False once the client is done."""
        upstream.cork()
        try:
            return self._handle_events()
        finally:
            upstream.uncork()

    def _handle_events(self) -> bool:
        batch: list[Text] = []  # the client's messages of this read, sent together (Relay.forward_all)
        for event in self._ws.events():
            text: bytes | bytearray | TooBig | None
            if isinstance(event, Utf8Text):  # first: bytes is a plain type; wsproto's events are ABCs (slower)
                text = self._messages.utf8(event)
            elif isinstance(event, TextMessage):
                text = self._messages.text(event.data, event.message_finished)
            else:
                self._forward(batch)  # the messages before this event go first
                if not self._other_event(event):
                    return False
                continue
            if text is None:
                continue
            if isinstance(text, TooBig):
                self._forward(batch)
                self._end(
                    ExitStatus.SESSION_FAILED,
                    f"the client sent a message of at least {text.size} bytes, over the "
                    f"{self._max_message}-byte limit; closed with {MESSAGE_TOO_BIG}",
                    MESSAGE_TOO_BIG,
                    "message too big",
                )
                continue
            batch.append(text)
        self._forward(batch)
        return True

    def _forward(self, batch: list[Text]) -> None:
        """Send the messages gathered in *batch* to the app-server (unless the client is being refused), and
        empty it."""
        if batch and self._forwarding and self._relay.upstream.open:
            self._relay.forward_all(batch)
            self.from_client += len(batch)
        batch.clear()

    def _other_event(self, event: Event) -> bool:
        """A binary message, ping or close from the client; False once the client is done."""
        if isinstance(event, BytesMessage):
            binary = self._messages.binary(event.data, event.message_finished)
            if binary is not None:
                log.warning("%s: the client sent a binary message (%d bytes); dropped", self._peer, binary.size)
        elif isinstance(event, Ping):
            if self._ws.state is ConnectionState.OPEN:
                self.frames.put(self._ws.send(event.response()))
        elif isinstance(event, CloseConnection):
            self._closed(event)
            return False
        return True

    def _closed(self, event: CloseConnection) -> None:
        state = self._ws.state
        if self._eof:
            if self.close_code == ABNORMAL:
                log.info("client %s closed the connection without a close frame", self._peer)
            self._end(ExitStatus.OK, None, None)
        elif state in (ConnectionState.OPEN, ConnectionState.LOCAL_CLOSING):  # wsproto could not parse the input
            self._end(
                ExitStatus.PROTOCOL,
                f"the client broke the WebSocket protocol: {event.reason}; closed with {event.code}",
                int(event.code),
                event.reason or "",
            )
        else:
            if state is ConnectionState.REMOTE_CLOSING:  # the client closed first: echo its code
                self.frames.put(self._ws.send(event.response()))
            self.close_code = int(event.code)
            self._end(ExitStatus.OK, None, None)

    # -- relay -> client -------------------------------------------------------------------------------

    def deliver(self, texts: list[Text]) -> None:
        """Queue *texts* as frames for the client; past ``queue_bytes``, close it as a slow consumer.

        The bound applies to what accumulates: a batch that does not fit is refused only when something already
        waits, so one message larger than ``queue_bytes`` reaches a client that keeps up.
        """
        if self._ws.state is not ConnectionState.OPEN or not self._forwarding:
            return
        data = self._ws.send_texts(texts)
        frames = self.frames
        waiting = frames.queued + frames.in_flight
        if waiting and waiting + len(data) > self._limit:  # one message larger than the bound still goes out alone
            self._slow_consumer(waiting + len(data))
            return
        self.to_client += len(texts)
        frames.put(data)

    def _slow_consumer(self, size: int) -> None:
        self._forwarding = False
        self.frames.abandon()
        self._end(
            ExitStatus.SESSION_FAILED,
            f"the client is a slow consumer: {size} bytes would wait for it, over --client-queue-bytes "
            f"({self._limit}); closed with {POLICY_VIOLATION}",
            POLICY_VIOLATION,
            "slow consumer",
        )

    async def _write(self) -> None:
        await self.frames.write()  # returns once a send failed: the client's connection broke
        self._end(ExitStatus.OK, None, None)

    # -- keepalive -------------------------------------------------------------------------------------

    async def _keepalive(self) -> None:
        while self._ws.state is ConnectionState.OPEN:
            due = self._last_receive + self._ping_interval
            if trio.current_time() < due:
                await trio.sleep_until(due)
                continue
            answered = self._answer = trio.Event()
            self.frames.put(self._ws.send(Ping(payload=KEEPALIVE_PAYLOAD)))
            with trio.move_on_after(self._ping_timeout):
                await answered.wait()
            self._answer = None
            if not answered.is_set():
                self._end(
                    ExitStatus.SESSION_FAILED,
                    f"the client stopped answering: no pong within {self._ping_timeout:g} s of a ping",
                    INTERNAL_ERROR,
                    "keepalive ping timeout",
                )
                return

    # -- ending ----------------------------------------------------------------------------------------

    def stop_receiving(self) -> None:
        # Keep reading: the client's answer to our close frame is still to come. Nothing more is forwarded.
        self._forwarding = False

    async def finish(self, ending: Ending) -> None:
        """Send what is queued (dropped for a slow consumer), then a close frame, and wait for the client's."""
        code = ending.downstream_code
        with trio.move_on_after(self.finish_timeout):
            if self._ws.state is ConnectionState.OPEN:
                code = code if code is not None else GOING_AWAY
                self.frames.put(self._ws.send(CloseConnection(code=code, reason=ending.downstream_reason or None)))
                self.close_code = code
            await self.frames.wait_flushed()
            if self._ws.state is ConnectionState.LOCAL_CLOSING and not self.frames.broken:
                await self._reader_done.wait()

    def abandon(self) -> None:
        self.frames.abandon()

    def close(self) -> None:
        pass
