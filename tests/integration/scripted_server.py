"""A scripted WebSocket server on a Unix socket, for exact frames and faults in subprocess tests.

Each test gives a handler, an ``async`` function taking a :class:`ScriptedConnection`; the server reads the
opening handshake request of every connection it accepts and hands the connection to the handler, which then
decides everything: accept (with extra headers, or extra bytes in the same write as the 101), refuse, send
messages, fragments, pings, raw bytes, close frames, or drop the connection without one.

The server runs in its own nursery inside :func:`open_scripted_server`; leaving the ``async with`` block stops
it, closes every connection and removes the socket file. An exception in a handler (a failed assertion) cancels
the test body and fails the test.

The WebSocket side is wsproto's sans-I/O :class:`~wsproto.connection.Connection` (server role); the HTTP side is
h11, used directly so that a handler sees the request headers exactly as received and can answer anything.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import AnyStr

import h11
import trio
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Event, Ping, Pong, TextMessage
from wsproto.utilities import generate_accept_token

#: Linux ``sizeof(sun_path)`` minus the terminating NUL, in bytes.
MAX_UNIX_PATH_BYTES = 107
RECEIVE_BYTES = 64 * 1024
SOCKET_NAME = "s.sock"

Handler = Callable[["ScriptedConnection"], Awaitable[None]]


class HandshakeIncomplete(Exception):
    """The client closed the connection before sending a whole request."""


@dataclass(frozen=True)
class Request:
    """The opening handshake request as received.

    ``headers`` are (name, value) pairs with the names in the case the client sent, in order; ``raw`` is the
    request's bytes exactly.
    """

    method: bytes
    target: bytes
    http_version: bytes
    headers: tuple[tuple[bytes, bytes], ...]
    raw: bytes

    def header(self, name: str) -> bytes | None:
        """The first value of header *name* (case-insensitive), or None."""
        wanted = name.lower().encode("ascii")
        return next((value for key, value in self.headers if key.lower() == wanted), None)


class ScriptedConnection:
    """One accepted connection, from the handshake request on. Methods are the handler's script."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self._http = h11.Connection(h11.SERVER)
        self._received = bytearray()
        self._request: Request | None = None
        self._ws: Connection | None = None
        self._events: deque[Event] = deque()
        #: The code of the close frame received from the client (None: none yet, or one without a code).
        self.received_close_code: int | None = None
        #: The reason of that close frame.
        self.received_close_reason: str | None = None
        #: True once a close frame arrived from the client.
        self.close_received = False
        #: True once the client closed its end of the stream (EOF).
        self.peer_eof = False
        #: Payloads of the pongs received while waiting for messages.
        self.pongs: list[bytes] = []
        #: Set once the handler has returned (or the client left before its request was whole).
        self.handled = trio.Event()

    # -- the handshake ---------------------------------------------------------------------------------

    @property
    def request(self) -> Request:
        """The handshake request (read by the server before the handler runs)."""
        assert self._request is not None, "the request has not been read"
        return self._request

    async def read_request(self) -> Request:
        """Read the HTTP request; raise :class:`HandshakeIncomplete` at EOF before its end."""
        request: h11.Request | None = None
        while True:
            event = self._http.next_event()
            if event is h11.NEED_DATA:
                data = await self._receive_bytes()
                if not data:
                    raise HandshakeIncomplete(f"EOF after {len(self._received)} bytes")
                self._received += data
                self._http.receive_data(data)
            elif isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.EndOfMessage) or event is h11.PAUSED:
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise HandshakeIncomplete("the client closed the connection")
        assert request is not None
        trailing = self._http.trailing_data[0]
        self._request = Request(
            method=request.method,
            target=request.target,
            http_version=request.http_version,
            headers=tuple(request.headers.raw_items()),
            raw=bytes(self._received[: len(self._received) - len(trailing)]),
        )
        return self._request

    async def accept(
        self,
        extra_headers: Sequence[tuple[str, str]] = (),
        trailing: bytes = b"",
        accept_token: str | None = None,
    ) -> None:
        """Answer 101 Switching Protocols and start the WebSocket connection.

        :param extra_headers: more response headers, e.g. Codex's
            ``x-codex-websocket-max-unfragmented-message-bytes``.
        :param trailing: bytes appended to the response in the same write (the first WebSocket frames).
        :param accept_token: a ``Sec-WebSocket-Accept`` value instead of the right one.
        """
        key = self.request.header("sec-websocket-key")
        assert key is not None, "no Sec-WebSocket-Key in the request"
        token = accept_token if accept_token is not None else generate_accept_token(key).decode("ascii")
        headers = [
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Accept", token),
            *extra_headers,
        ]
        response = self._http.send(h11.InformationalResponse(status_code=101, headers=headers))
        assert response is not None
        self._ws = Connection(ConnectionType.SERVER, trailing_data=self._http.trailing_data[0])
        await self.send_raw(response + trailing)

    async def reject(
        self, status: int, body: bytes = b"", headers: Sequence[tuple[str, str]] = (), reason: bytes = b""
    ) -> None:
        """Refuse the handshake with *status* and *body*, then close the connection."""
        all_headers = [("Content-Length", str(len(body))), ("Connection", "close"), *headers]
        data = self._http.send(h11.Response(status_code=status, headers=all_headers, reason=reason)) or b""
        data += self._http.send(h11.Data(data=body)) or b""
        data += self._http.send(h11.EndOfMessage()) or b""
        await self.send_raw(data)
        await self.stream.aclose()

    # -- sending ---------------------------------------------------------------------------------------

    @property
    def ws(self) -> Connection:
        """The WebSocket connection (after :meth:`accept`)."""
        assert self._ws is not None, "accept() first"
        return self._ws

    async def send_raw(self, data: bytes) -> None:
        """Write *data* as it is, in one write."""
        await self.stream.send_all(data)

    async def send_event(self, event: Event) -> None:
        await self.send_raw(self.ws.send(event))

    async def send_text(self, text: str, fragments: int = 1) -> None:
        """Send *text* as one message in *fragments* frames (cut between characters)."""
        for piece, last in _pieces(text, fragments):
            await self.send_event(TextMessage(data=piece, message_finished=last))

    async def send_binary(self, data: bytes, fragments: int = 1) -> None:
        """Send *data* as one binary message in *fragments* frames."""
        for piece, last in _pieces(data, fragments):
            await self.send_event(BytesMessage(data=piece, message_finished=last))

    async def ping(self, payload: bytes = b"") -> None:
        await self.send_event(Ping(payload=payload))

    async def send_close(self, code: int = 1000, reason: str = "") -> None:
        """Send a close frame (also the answer to the client's close frame)."""
        await self.send_event(CloseConnection(code=code, reason=reason or None))

    async def abort(self) -> None:
        """Close the socket without a close frame."""
        await self.stream.aclose()

    # -- receiving -------------------------------------------------------------------------------------

    async def _receive_bytes(self) -> bytes:
        try:
            return bytes(await self.stream.receive_some(RECEIVE_BYTES))
        except trio.BrokenResourceError:
            return b""  # ECONNRESET: the same as EOF here

    async def receive_event(self) -> Event | None:
        """The next wsproto event from the client; None once the client closed the stream (EOF).

        A close frame from the client comes out as :class:`CloseConnection` and is recorded in
        :attr:`received_close_code`; it is not answered (Codex never answers one): see :meth:`send_close`.
        """
        while not self._events:
            if self.peer_eof:
                return None
            self._events.extend(self.ws.events())
            if self._events:
                break
            if self.ws.state in (ConnectionState.REMOTE_CLOSING, ConnectionState.CLOSED):
                data = await self._receive_bytes()  # wsproto ignores what follows a close frame
                if not data:
                    self.peer_eof = True
                continue
            data = await self._receive_bytes()
            if data:
                self.ws.receive_data(data)
            else:
                self.peer_eof = True
        event = self._events.popleft()
        if isinstance(event, CloseConnection):
            self.close_received = True
            self.received_close_code = int(event.code)
            self.received_close_reason = event.reason
        return event

    async def receive_message(self) -> str | bytes | None:
        """The next whole message (fragments joined); None once the client sent a close frame or EOF.

        Pings are answered with pongs; pongs are recorded in :attr:`pongs`.
        """
        parts: list[str] = []
        chunks: list[bytes] = []
        while True:
            event = await self.receive_event()
            if event is None or isinstance(event, CloseConnection):
                return None
            if isinstance(event, Ping):
                await self.send_event(event.response())
            elif isinstance(event, Pong):
                self.pongs.append(bytes(event.payload))
            elif isinstance(event, TextMessage):
                parts.append(event.data)
                if event.message_finished:
                    return "".join(parts)
            elif isinstance(event, BytesMessage):
                chunks.append(bytes(event.data))
                if event.message_finished:
                    return b"".join(chunks)

    async def receive_text(self) -> str:
        """The next message, which must be text."""
        message = await self.receive_message()
        assert isinstance(message, str), f"expected a text message, got {message!r}"
        return message

    async def receive_messages(self, count: int) -> list[str | bytes]:
        """The next *count* messages."""
        messages: list[str | bytes] = []
        for _ in range(count):
            message = await self.receive_message()
            assert message is not None, f"the client closed after {len(messages)} of {count} messages"
            messages.append(message)
        return messages

    async def receive_close(self) -> int | None:
        """Wait for the client's close frame (or EOF); return its code, None if the stream ended without one.

        Fails if a data message arrives first.
        """
        message = await self.receive_message()
        assert message is None, f"expected the close, got a message: {message!r}"
        return self.received_close_code if self.close_received else None

    async def wait_eof(self) -> None:
        """Read and drop everything until the client closes the stream."""
        while await self._receive_bytes():
            pass
        self.peer_eof = True


def _pieces(data: AnyStr, count: int) -> list[tuple[AnyStr, bool]]:
    """*data* cut into *count* nearly equal pieces (at least one, never more than its length), each with
    whether it is the last."""
    count = max(1, min(count, len(data)))
    size, extra = divmod(len(data), count)
    pieces: list[tuple[AnyStr, bool]] = []
    start = 0
    for index in range(count):
        end = start + size + (1 if index < extra else 0)
        pieces.append((data[start:end], index == count - 1))
        start = end
    return pieces


class ScriptedServer:
    """A listening Unix socket that hands every connection to *handler*."""

    def __init__(self, path: Path, handler: Handler) -> None:
        self.path = path
        self.handler = handler
        #: Every connection accepted, in order.
        self.connections: list[ScriptedConnection] = []
        #: Set when the first connection has been accepted.
        self.connected = trio.Event()

    async def serve(self, listener: trio.SocketListener, *, task_status: trio.TaskStatus[None]) -> None:
        async with trio.open_nursery() as nursery:
            task_status.started()
            while True:
                stream = await listener.accept()
                nursery.start_soon(self._serve_one, stream)

    async def _serve_one(self, stream: trio.SocketStream) -> None:
        async with stream:
            connection = ScriptedConnection(stream)
            self.connections.append(connection)
            self.connected.set()
            try:
                await connection.read_request()
            except HandshakeIncomplete:
                connection.handled.set()  # the client gave up early; the test will say if that is wrong
                return
            await self.handler(connection)
            connection.handled.set()

    async def wait_handled(self, connections: int = 1) -> None:
        """Check that *connections* connections came, and wait until the handler of each has returned.

        Call it before leaving :func:`open_scripted_server`, which cancels handlers still running: a handler's
        last assertions count only if it got to them.
        """
        assert len(self.connections) == connections, f"{len(self.connections)} connections, not {connections}"
        for connection in self.connections:
            await connection.handled.wait()


def short_temp_dir(preferred: Path) -> tuple[Path, bool]:
    """A folder for a socket: *preferred* when the socket path fits AF_UNIX, else a new one under /tmp.

    Returns the folder and whether it was created here (and so must be removed).
    """
    if len(os.fsencode(preferred / SOCKET_NAME)) <= MAX_UNIX_PATH_BYTES:
        return preferred, False
    return Path(tempfile.mkdtemp(prefix="cap-", dir="/tmp")), True


@asynccontextmanager
async def open_scripted_server(
    folder: Path, handler: Handler, name: str = SOCKET_NAME
) -> AsyncIterator[ScriptedServer]:
    """Listen on ``folder/name`` (or a shorter temp path) and serve until the block ends.

    Leaving the block cancels every handler, closes every connection and removes the socket.
    """
    directory, created = short_temp_dir(folder)
    path = directory / name
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    try:
        await sock.bind(str(path))
        sock.listen(16)
        listener = trio.SocketListener(sock)
    except BaseException:
        sock.close()
        raise
    server = ScriptedServer(path, handler)
    try:
        async with listener, trio.open_nursery() as nursery:
            await nursery.start(server.serve, listener)
            try:
                yield server
            finally:
                nursery.cancel_scope.cancel()
    finally:
        path.unlink(missing_ok=True)
        if created:
            shutil.rmtree(directory, ignore_errors=True)
