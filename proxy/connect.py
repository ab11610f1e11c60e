"""Open the stream to the app-server and complete the opening handshake (the trio side of handshake.py)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import trio

from .errors import HandshakeFailed, PermissionDenied, ProxyError, ServerUnavailable
from .handshake import ClientHandshake, HandshakeResponse
from .target import MAX_UNIX_PATH_BYTES, connect_path

START_HINT = "start one with 'codex app-server --listen unix://' or 'codex app-server daemon start'"
RECEIVE_BYTES = 64 * 1024


async def open_unix(path: Path) -> trio.SocketStream:
    """Connect to the Unix socket at *path*, following a symlink.

    :raises ServerUnavailable: missing socket, refused connection (a stale socket file), path too long.
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
        raise ServerUnavailable(f"no app-server is listening at {path}{link}; {START_HINT}") from None
    except ConnectionRefusedError:
        raise ServerUnavailable(
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


async def open_connection(path: Path, connect_timeout: float) -> tuple[trio.abc.Stream, HandshakeResponse]:
    """Connect and handshake within *connect_timeout* seconds.

    :raises ServerUnavailable: nothing answered in time, or see :func:`open_unix`.
    """
    with trio.move_on_after(connect_timeout):
        stream = await open_unix(path)
        try:
            return stream, await handshake(stream, ClientHandshake(), str(path))
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
    raise ServerUnavailable(
        f"the app-server at {path} did not complete the opening handshake within {connect_timeout:g} s"
    )
