"""A second WebSocket implementation to test against: a `websockets` server on a Unix socket.

`websockets` runs on asyncio and the tests run on trio, so :class:`WebSocketsPeer` runs the server in a thread
with its own asyncio event loop. Everything the server sees (connections, messages, frames, close codes, errors)
goes into a :class:`PeerLog`, which is locked, so the trio side can read it and wait on it
(:meth:`PeerLog.wait_for`) while the server thread writes it.

Frames are recorded through the server's logger: at DEBUG, `websockets` logs each frame as ``"< %s"`` (received)
or ``"> %s"`` (sent) with the :class:`~websockets.frames.Frame` itself as the argument, formatted lazily. A
handler on a private logger keeps opcode, FIN bit and payload size without formatting anything, which is how the
tests see that a long message really arrived in fragments (the library reassembles them before ``recv``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import tempfile
import threading
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import trio
from websockets.asyncio.server import Server, ServerConnection, unix_serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame
from websockets.http11 import Request, Response

#: How long starting or stopping the server thread may take, in seconds.
THREAD_TIMEOUT = 10.0

#: Codex's response header giving the largest frame it accepts, in bytes.
MAX_UNFRAGMENTED_HEADER = "x-codex-websocket-max-unfragmented-message-bytes"


@dataclass(frozen=True)
class FrameInfo:
    """One frame as `websockets` parsed or built it: ``opcode`` is ``TEXT``, ``CONT``, ``CLOSE``..."""

    opcode: str
    fin: bool
    size: int


@dataclass
class _State:
    connections: int = 0
    finished: int = 0
    received: list[str] = field(default_factory=list)
    close_codes: list[int | None] = field(default_factory=list)
    close_reasons: list[str | None] = field(default_factory=list)
    frames_in: list[FrameInfo] = field(default_factory=list)
    frames_out: list[FrameInfo] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class PeerLog:
    """What the server saw, shared between the server thread (writes) and the test (reads, waits).

    Every accessor returns a copy taken under the lock.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state = _State()

    # -- written by the server thread --------------------------------------------------------------------

    def connected(self) -> None:
        with self._lock:
            self._state.connections += 1

    def received(self, message: str) -> None:
        with self._lock:
            self._state.received.append(message)

    def event(self, name: str) -> None:
        """Record that the handler reached a point the test may wait for (see :meth:`wait_for_event`)."""
        with self._lock:
            self._state.events.append(name)

    def error(self, text: str) -> None:
        with self._lock:
            self._state.errors.append(text)

    def frame(self, direction: str, frame: Frame) -> None:
        info = FrameInfo(frame.opcode.name, frame.fin, len(frame.data))
        with self._lock:
            (self._state.frames_in if direction == "<" else self._state.frames_out).append(info)

    def finished(self, close_code: int | None, close_reason: str | None) -> None:
        """A connection is over; *close_code* is the one the client sent, None when it sent no close frame."""
        with self._lock:
            self._state.finished += 1
            self._state.close_codes.append(close_code)
            self._state.close_reasons.append(close_reason)

    # -- read by the test ----------------------------------------------------------------------------------

    @property
    def connections(self) -> int:
        with self._lock:
            return self._state.connections

    @property
    def finished_connections(self) -> int:
        with self._lock:
            return self._state.finished

    @property
    def messages(self) -> list[str]:
        with self._lock:
            return list(self._state.received)

    @property
    def close_codes(self) -> list[int | None]:
        """The close code the client sent, per finished connection (None: no close frame)."""
        with self._lock:
            return list(self._state.close_codes)

    @property
    def close_reasons(self) -> list[str | None]:
        with self._lock:
            return list(self._state.close_reasons)

    @property
    def frames_in(self) -> list[FrameInfo]:
        with self._lock:
            return list(self._state.frames_in)

    @property
    def frames_out(self) -> list[FrameInfo]:
        with self._lock:
            return list(self._state.frames_out)

    @property
    def events(self) -> list[str]:
        with self._lock:
            return list(self._state.events)

    @property
    def errors(self) -> list[str]:
        with self._lock:
            return list(self._state.errors)

    def summary(self) -> str:
        """A short description for assertion messages (sizes, not payloads)."""
        with self._lock:
            state = self._state
            return (
                f"connections={state.connections} finished={state.finished} received={len(state.received)} "
                f"close_codes={state.close_codes} events={state.events[-5:]} errors={state.errors}"
            )

    async def wait_for(self, what: str, predicate: Callable[[PeerLog], bool], timeout: float = 10.0) -> None:
        """Wait (in trio) until *predicate* holds; fail with *what* and a summary after *timeout* seconds."""
        with trio.move_on_after(timeout):
            while not predicate(self):
                await trio.sleep(0.005)
            return
        raise AssertionError(f"the websockets peer did not {what} within {timeout:g} s ({self.summary()})")

    async def wait_for_event(self, name: str, timeout: float = 10.0) -> None:
        await self.wait_for(f"reach {name!r}", lambda log: name in log.events, timeout)

    async def wait_for_close(self, count: int = 1, timeout: float = 10.0) -> None:
        """Wait until *count* connections have finished (closing handshake done or connection lost)."""
        await self.wait_for(f"see {count} connection(s) end", lambda log: log.finished_connections >= count, timeout)


#: A connection handler: runs in the server thread's event loop, one call per connection.
Handler = Callable[[ServerConnection, PeerLog], Awaitable[None]]


class _LogRecorder(logging.Handler):
    """Turns the server logger's records into :class:`PeerLog` entries: frames, and errors with tracebacks."""

    def __init__(self, log: PeerLog) -> None:
        super().__init__(logging.DEBUG)
        self._log = log

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args
        if record.msg in ("< %s", "> %s") and isinstance(args, tuple) and args and isinstance(args[0], Frame):
            self._log.frame(str(record.msg)[0], args[0])
        elif record.levelno >= logging.ERROR:
            self._log.error(self.format(record))


_Server = TypeVar("_Server", bound="ThreadedServer")


class ThreadedServer:
    """A `websockets` server run by *handler* in a thread of its own, with its own asyncio event loop.

    Subclasses open the server in :meth:`_open`, serving :meth:`_serve` with :attr:`_logger`. :meth:`start`
    returns once it accepts connections; :meth:`stop` closes open connections (1001), stops the loop and joins the
    thread. Errors inside the server (a handler raising anything but
    :class:`~websockets.exceptions.ConnectionClosed`) are kept in :attr:`log` ``.errors``.
    """

    def __init__(self, name: str, handler: Handler, *, thread_name: str, logger_name: str, log_level: int) -> None:
        self.log = PeerLog()
        self._name = name
        self._handler = handler
        self._logger = logging.Logger(logger_name, log_level)  # private: not in the hierarchy
        self._logger.addHandler(_LogRecorder(self.log))
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name=thread_name, daemon=True)

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(THREAD_TIMEOUT):
            raise RuntimeError(f"{self._name} did not start within {THREAD_TIMEOUT:g} s")
        if self._startup_error is not None:
            self._thread.join(THREAD_TIMEOUT)
            raise RuntimeError(f"{self._name} failed to start") from self._startup_error

    def stop(self) -> None:
        """Stop the server and join its thread; safe to call more than once, or after a failed start."""
        if not self._thread.is_alive():
            return
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is already closed: the thread is ending
                loop.call_soon_threadsafe(stop.set)
        self._thread.join(THREAD_TIMEOUT * 2)
        if self._thread.is_alive():
            raise RuntimeError(f"the thread of {self._name} did not stop")

    def __enter__(self: _Server) -> _Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the server thread ---------------------------------------------------------------------------------

    async def _open(self) -> Server:
        """Start listening (in the server thread's loop)."""
        raise NotImplementedError

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            if not self._ready.is_set():
                self._startup_error = exc
                self._ready.set()
            else:
                self.log.error(f"the server thread failed: {''.join(traceback.format_exception(exc))}")

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = await self._open()
        self._ready.set()
        await self._stop.wait()
        server.close()  # closes open connections with 1001, then waits for the handlers
        try:
            await asyncio.wait_for(server.wait_closed(), THREAD_TIMEOUT)
        except asyncio.TimeoutError:
            self.log.error(f"the server did not close within {THREAD_TIMEOUT:g} s: a handler is stuck")

    async def _serve(self, connection: ServerConnection) -> None:
        self.log.connected()
        try:
            await self._handler(connection, self.log)
        except ConnectionClosed:
            pass  # the client went away while the handler was sending or receiving: recorded below
        except Exception:
            self.log.error(f"the handler failed: {traceback.format_exc()}")
        finally:
            await connection.close()  # no-op when closed already; otherwise 1000, as websockets would
            close = connection.protocol.close_rcvd
            self.log.finished(None if close is None else int(close.code), None if close is None else close.reason)


class WebSocketsPeer(ThreadedServer):
    """A `websockets` server on the Unix socket *path*, run by *handler*, in a thread of its own (see
    :class:`ThreadedServer`). Frames in and out are recorded in :attr:`log` too.

    :param max_size: largest incoming message `websockets` accepts (None: no limit); its default is 1 MiB.
    :param headers: extra headers for the 101 response, e.g. :data:`MAX_UNFRAGMENTED_HEADER`.
    """

    def __init__(
        self,
        path: str,
        handler: Handler,
        *,
        max_size: int | None = 2**20,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        super().__init__(
            f"the websockets server at {path}",
            handler,
            thread_name=f"websockets-peer {path}",
            logger_name=f"websockets_peer:{path}",
            log_level=logging.DEBUG,  # frames are logged at DEBUG
        )
        self.path = path
        self._max_size = max_size
        self._headers = tuple(headers)

    async def _open(self) -> Server:
        server: Server = await unix_serve(
            self._serve,
            self.path,
            compression=None,  # Codex offers none and the proxy asks for none
            ping_interval=None,  # no pings of our own: the tests see only what they arrange
            max_size=self._max_size,
            process_response=self._process_response,
            logger=self._logger,
        )
        return server

    def _process_response(self, connection: ServerConnection, request: Request, response: Response) -> None:
        if response.status_code == 101:
            for name, value in self._headers:
                response.headers[name] = value


class PeerPool:
    """Peers on sockets in one short temporary folder; :meth:`close` stops them all and removes the folder.

    The folder is made under ``/tmp``, not pytest's ``tmp_path``, whose paths can exceed the 107-byte limit of
    Unix socket addresses.
    """

    def __init__(self) -> None:
        self._dir = tempfile.mkdtemp(prefix="cap-ws-", dir="/tmp")
        self._peers: list[WebSocketsPeer] = []

    def start(
        self, handler: Handler, *, max_size: int | None = 2**20, headers: Sequence[tuple[str, str]] = ()
    ) -> WebSocketsPeer:
        """Start a peer (see :class:`WebSocketsPeer`) and return it once it accepts connections."""
        path = os.path.join(self._dir, f"peer{len(self._peers)}.sock")
        peer = WebSocketsPeer(path, handler, max_size=max_size, headers=headers)
        self._peers.append(peer)
        peer.start()
        return peer

    def close(self) -> list[str]:
        """Stop every peer, remove the folder; return the errors the peers recorded."""
        errors: list[str] = []
        try:
            for peer in self._peers:
                try:
                    peer.stop()
                except RuntimeError as exc:
                    errors.append(str(exc))
                errors.extend(peer.log.errors)
        finally:
            shutil.rmtree(self._dir, ignore_errors=True)
        return errors


# -- handlers used by several tests -------------------------------------------------------------------------


def response_to(message: str) -> str | None:
    """A JSON-RPC response (``{"id":N,"result":{}}``) when *message* is a request (``method`` and ``id``)."""
    try:
        parsed = json.loads(message)
    except ValueError:
        return None
    if isinstance(parsed, dict) and "method" in parsed and parsed.get("id") is not None:
        return json.dumps({"id": parsed["id"], "result": {}}, separators=(",", ":"))
    return None


async def echo(connection: ServerConnection, log: PeerLog) -> None:
    """Echo every text message verbatim, except requests, which get an empty result (so the proxy can drain)."""
    async for message in connection:
        assert isinstance(message, str), "binary message from the proxy"
        log.received(message)
        await connection.send(response_to(message) or message)
