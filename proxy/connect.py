"""Open the stream to the app-server and complete the opening handshake (the trio side of handshake.py)."""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

from .errors import HandshakeFailed, NotListening, PermissionDenied, ProxyError, ServerUnavailable
from .handshake import ClientHandshake, HandshakeResponse
from .target import MAX_UNIX_PATH_BYTES, connect_path

START_HINT = "start one with 'codex app-server --listen unix://' or 'codex app-server daemon start'"
RECEIVE_BYTES = 64 * 1024
#: Backoff between connect attempts under --wait: 50 ms doubling, at most 1 s, in seconds.
RETRY_FIRST = 0.05
RETRY_CAP = 1.0

log = logging.getLogger("codex_appserver")


async def open_unix(path: Path) -> trio.SocketStream:
    """Connect to the Unix socket at *path*, following a symlink.

    :raises NotListening: missing socket, or refused connection (a stale socket file).
    :raises ServerUnavailable: path too long, or another connect(2) failure.
    :raises PermissionDenied: the socket or a folder on its path is not accessible to us.
    """
    target = connect_path(path)
    if len(os.fsencode(target)) > MAX_UNIX_PATH_BYTES:
        raise ServerUnavailable(
            f"the socket path {target} is {len(os.fsencode(target))} bytes, over the "
            f"{MAX_UNIX_PATH_BYTES}-byte limit of Unix sockets; link it from a shorter path and pass that to --sock"
        )
    try:
        return await trio.open_unix_socket(target)
    except FileNotFoundError:
        link = f" (a link to {os.readlink(path)}, which does not exist)" if path.is_symlink() else ""
        raise NotListening(f"no app-server is listening at {path}{link}; {START_HINT}") from None
    except ConnectionRefusedError:
        raise NotListening(
            f"no app-server is listening at {path} (connection refused: a stale socket file?); {START_HINT}"
        ) from None
    except PermissionError:
        raise PermissionDenied(
            f"permission denied connecting to {path}; run as the user who started the app-server, "
            "or fix the socket's mode"
        ) from None
    except OSError as exc:
        detail = exc.strerror or errno.errorcode.get(exc.errno or 0, str(exc))
        raise ServerUnavailable(f"cannot connect to {path}: {detail}") from None


async def handshake(stream: trio.abc.Stream, request: ClientHandshake, where: str) -> HandshakeResponse:
    """Send the Upgrade request on *stream* and read until the 101 response.

    :param where: names the peer in error messages (a path or URL).
    :raises HandshakeFailed: refused, not HTTP, or the connection dropped (76).
    :raises PermissionDenied: 401 or 403 (77).
    """
    try:
        await stream.send_all(request.request_bytes())
        while True:
            data = await stream.receive_some(RECEIVE_BYTES)
            response = request.receive_data(bytes(data))
            if response is not None:
                return response
    except ProxyError as exc:
        raise type(exc)(f"{where}: {exc.message}") from None
    except (trio.BrokenResourceError, OSError) as exc:
        raise HandshakeFailed(f"{where}: the connection failed during the opening handshake ({exc})") from None


async def open_connection(
    path: Path,
    connect_timeout: float,
    wait: float = 0.0,
    start: Callable[[], Awaitable[None]] | None = None,
) -> tuple[trio.abc.Stream, HandshakeResponse]:
    """Connect and handshake, each attempt within *connect_timeout* seconds.

    While nothing listens (:class:`NotListening`), *start* is awaited once (e.g. to start the daemon) and
    connecting is retried with capped exponential backoff for up to *wait* seconds in all.

    :raises ServerUnavailable: nothing answered in time, or see :func:`open_unix`.
    """
    deadline = trio.current_time() + wait
    delay = RETRY_FIRST
    while True:
        try:
            return await _attempt(path, connect_timeout)
        except NotListening:
            if start is not None:
                await start()
                start = None
            remaining = deadline - trio.current_time()
            if remaining <= 0:
                if wait > 0:
                    log.info("gave up waiting for %s after %g s", path, wait)
                raise
        log.info("nothing listens at %s yet; trying again in %.2f s", path, min(delay, remaining))
        await trio.sleep(min(delay, remaining))
        delay = min(delay * 2, RETRY_CAP)


async def _attempt(path: Path, connect_timeout: float) -> tuple[trio.abc.Stream, HandshakeResponse]:
    with trio.move_on_after(connect_timeout):
        stream = await open_unix(path)
        log.info("connected to %s", path)
        try:
            response = await handshake(stream, ClientHandshake(), str(path))
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
        log.info(
            "opening handshake done; the server allows frames of %s bytes", response.max_unfragmented_message_bytes
        )
        return stream, response
    raise ServerUnavailable(
        f"the app-server at {path} did not complete the opening handshake within {connect_timeout:g} s"
    )
