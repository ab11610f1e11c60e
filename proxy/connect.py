"""Open the stream to the app-server (Unix socket, TCP, TLS) and complete the opening handshake (trio side)."""

from __future__ import annotations

import errno
import logging
import os
import socket
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

from .errors import (
    HandshakeFailed,
    NotListening,
    PermissionDenied,
    ProtocolViolation,
    ProxyError,
    ServerUnavailable,
    UsageError,
    descriptor_limit_error,
    reason_of,
)
from .handshake import REFUSAL_BODY_WAIT, ClientHandshake, HandshakeResponse
from .target import MAX_UNIX_PATH_BYTES, RemoteTarget, Target, UnixTarget, connect_path

START_HINT = "start one with 'codex app-server --listen unix://' or 'codex app-server daemon start'"
RECEIVE_BYTES = 64 * 1024
#: Backoff between connect attempts under --wait: 50 ms doubling, at most 1 s, in seconds.
RETRY_FIRST = 0.05
RETRY_CAP = 1.0

log = logging.getLogger("codex_appserver")


def _missing(path: Path) -> NotListening:
    link = f" (a link to {os.readlink(path)}, which does not exist)" if path.is_symlink() else ""
    return NotListening(f"no app-server is listening at {path}{link}; {START_HINT}")


async def open_unix(path: Path) -> trio.SocketStream:
    """Connect to the Unix socket at *path*, following a symlink.

    :raises NotListening: missing socket, or refused connection (a stale socket file).
    :raises ServerUnavailable: path too long, or another connect(2) failure.
    :raises PermissionDenied: the socket or a folder on its path is not accessible to us.
    """
    target = connect_path(path)
    if len(os.fsencode(target)) > MAX_UNIX_PATH_BYTES:
        if not os.path.exists(target):
            raise _missing(path)  # say that first: a running server's link would be short enough
        raise ServerUnavailable(
            f"the socket path {target} is {len(os.fsencode(target))} bytes, over the "
            f"{MAX_UNIX_PATH_BYTES}-byte limit of Unix sockets; link it from a shorter path and pass that to --sock"
        )
    try:
        return await trio.open_unix_socket(target)
    except FileNotFoundError:
        raise _missing(path) from None
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
        limit = descriptor_limit_error(exc)
        if limit is not None:  # our own descriptor limit, not the server's fault (issue 9 #9)
            raise limit from None
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
        body_deadline: float | None = None
        while True:
            if request.refusal_pending:
                # The status line decided; the body only adds detail, so it gets a short while (issue 9 #17).
                if body_deadline is None:
                    body_deadline = trio.current_time() + REFUSAL_BODY_WAIT
                with trio.move_on_at(body_deadline):
                    request.receive_data(bytes(await stream.receive_some(RECEIVE_BYTES)))
                    continue
                request.refuse()
            data = await stream.receive_some(RECEIVE_BYTES)
            response = request.receive_data(bytes(data))
            if response is not None:
                return response
    except ProxyError as exc:
        raise type(exc)(f"{where}: {exc.message}") from None
    except (trio.BrokenResourceError, OSError) as exc:
        raise HandshakeFailed(f"{where}: the connection failed during the opening handshake ({exc})") from None


async def open_tcp(target: RemoteTarget) -> trio.abc.Stream:
    """Connect to a remote app-server over TCP, with TLS for ``wss://``.

    TLS uses :func:`ssl.create_default_context` (system trust store, hostname verification, SNI) plus
    ``--cacert``; there is no way to turn verification off.

    :raises NotListening: the connection was refused.
    :raises ServerUnavailable: the name does not resolve, or another connect failure (69).
    :raises ProtocolViolation: the TLS handshake or certificate verification failed (76).
    """
    try:
        stream: trio.abc.Stream = await trio.open_tcp_stream(target.host, target.port)
    except socket.gaierror as exc:
        raise ServerUnavailable(f"cannot resolve {target.host} ({exc.strerror}); check the --remote URL") from None
    except OSError as exc:
        # trio tries each address and raises one OSError over an ExceptionGroup of the attempts' errors.
        causes = getattr(exc.__cause__, "exceptions", None) or [exc]
        for cause in causes:
            limit = descriptor_limit_error(cause)
            if limit is not None:  # our own descriptor limit, not the server's fault (issue 9 #9)
                raise limit from None
        if all(isinstance(cause, ConnectionRefusedError) for cause in causes):
            raise NotListening(f"no app-server is listening at {target} (connection refused)") from None
        reason = "; ".join(sorted({reason_of(cause) for cause in causes}))
        raise ServerUnavailable(f"cannot connect to {target}: {reason}") from None
    if not target.tls:
        return stream
    context = ssl.create_default_context()
    if target.cacert is not None:
        try:
            context.load_verify_locations(cafile=target.cacert)
        except (OSError, ssl.SSLError) as exc:
            await trio.aclose_forcefully(stream)
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise UsageError(f"cannot load the CA bundle {target.cacert} (--cacert): {reason}") from None
    tls = trio.SSLStream(stream, context, server_hostname=target.host)
    try:
        await tls.do_handshake()
    except trio.BrokenResourceError as exc:
        await trio.aclose_forcefully(stream)
        cause = exc.__cause__
        if isinstance(cause, ssl.SSLCertVerificationError):
            remedy = (
                "check that --cacert holds the CA that signed the server's certificate and that the URL's host "
                "is a name in it"
                if target.cacert
                else "if the server uses a private CA, pass its certificate with --cacert"
            )
            raise ProtocolViolation(
                f"TLS certificate verification failed for {target}: {str(cause.verify_message).rstrip('.')}; {remedy}"
            ) from None
        raise ProtocolViolation(f"TLS handshake with {target} failed: {cause or exc}") from None
    return tls


async def connect(
    target: Target,
    connect_timeout: float,
    wait: float = 0.0,
    start: Callable[[], Awaitable[None]] | None = None,
) -> trio.abc.Stream:
    """Open the stream to *target*, each attempt within *connect_timeout* seconds.

    While nothing listens (:class:`NotListening`), *start* is awaited once (e.g. to start the daemon) and
    connecting is retried with capped exponential backoff for up to *wait* seconds in all.

    :raises ProxyError: see :func:`open_unix` and :func:`open_tcp`; ServerUnavailable on a timeout.
    """
    deadline = trio.current_time() + wait
    delay = RETRY_FIRST
    while True:
        try:
            with trio.move_on_after(connect_timeout):
                stream = await (open_unix(target.path) if isinstance(target, UnixTarget) else open_tcp(target))
                log.info("connected to %s", target)
                return stream
            raise ServerUnavailable(
                f"connecting to {target} took longer than {connect_timeout:g} s (--connect-timeout)"
            )
        except NotListening:
            if start is not None:
                await start()
                start = None
            remaining = deadline - trio.current_time()
            if remaining <= 0:
                if wait > 0:
                    log.info("gave up waiting for %s after %g s", target, wait)
                raise
        log.info("nothing listens at %s yet; trying again in %.2f s", target, min(delay, remaining))
        await trio.sleep(min(delay, remaining))
        delay = min(delay * 2, RETRY_CAP)


async def open_connection(
    target: Target,
    connect_timeout: float,
    wait: float = 0.0,
    start: Callable[[], Awaitable[None]] | None = None,
) -> tuple[trio.abc.Stream, HandshakeResponse]:
    """:func:`connect`, then the opening handshake within *connect_timeout* seconds.

    :raises ProxyError: see :func:`connect` and :func:`handshake`; ServerUnavailable when no answer came in time.
    """
    stream = await connect(target, connect_timeout, wait, start)
    try:
        with trio.move_on_after(connect_timeout):
            response = await handshake(stream, client_handshake(target), str(target))
            limit = response.max_unfragmented_message_bytes
            if limit is None:
                log.info("opening handshake done; the server states no frame limit, so frames stay within 16 MiB")
            else:
                log.info("opening handshake done; the server allows frames of %d bytes", limit)
            return stream, response
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise
    await trio.aclose_forcefully(stream)
    raise ServerUnavailable(
        f"the app-server at {target} did not complete the opening handshake within {connect_timeout:g} s"
    )


def client_handshake(target: Target) -> ClientHandshake:
    """The opening handshake for *target*: ``Host: localhost`` and ``/`` for the socket; the URL's host, port
    and path for a remote, plus ``Authorization: Bearer`` when it has a token. Never an ``Origin``."""
    if isinstance(target, UnixTarget):
        return ClientHandshake()
    headers = [("Authorization", f"Bearer {target.token}")] if target.token else []
    return ClientHandshake(host=target.host_header, target=target.resource, extra_headers=headers)
