"""The bridge's sockets (trio side): listening on --bind, naming peers, answering HTTP requests, closing streams
without waiting forever."""

from __future__ import annotations

import contextlib
import errno
import socket

import trio

from ..errors import PermissionDenied, ServerUnavailable
from .http import ServerHandshake
from .rules import Respond, url_host


def peer_name(stream: trio.SocketStream) -> tuple[str, str]:
    """(address for the rate limiter, ``host:port`` for logs) of the stream's peer."""
    try:
        address = stream.socket.getpeername()
    except OSError:
        return "?", "?"
    host, port = str(address[0]), int(address[1])
    return host, f"{url_host(host)}:{port}"


async def open_listener(host: str, port: int) -> trio.SocketListener:
    """Listen on *host*:*port* (port 0: a free one), on the first address the name resolves to.

    :raises ServerUnavailable: the address is in use or not available here (69).
    :raises PermissionDenied: the port is privileged (77).
    """
    where = f"{url_host(host)}:{port}"
    try:
        infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ServerUnavailable(f"cannot listen on {where}: cannot resolve {host} ({exc.strerror})") from None
    family, type_, proto, _, sockaddr = infos[0]
    sock = trio.socket.socket(family, type_, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        await sock.bind(sockaddr)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EACCES:
            raise PermissionDenied(
                f"cannot listen on {where}: permission denied (ports under 1024 need privileges); pick another "
                "--bind port"
            ) from None
        hint = "; pick another --bind port or stop the program using it" if exc.errno == errno.EADDRINUSE else ""
        raise ServerUnavailable(f"cannot listen on {where}: {exc.strerror}{hint}") from None
    return trio.SocketListener(sock)


def printable(path: str) -> str:
    """A request path for a log line: at most 100 characters, control characters escaped."""
    cut = path[:100] + ("..." if len(path) > 100 else "")
    return cut.encode("unicode_escape").decode("ascii")


async def send_quietly(stream: trio.abc.Stream, data: bytes) -> None:
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        await stream.send_all(data)


async def respond(stream: trio.abc.Stream, handshake: ServerHandshake, answer: Respond) -> None:
    """Send *answer* as the HTTP response to the request *handshake* read; a peer already gone is ignored."""
    await send_quietly(stream, handshake.respond(answer))


async def close_stream(stream: trio.abc.Stream) -> None:
    with trio.move_on_after(1.0) as scope:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await stream.aclose()
    if scope.cancelled_caught:
        await trio.aclose_forcefully(stream)
