"""Exception types and the one exit-status table.

Every failure a user can cause is a :class:`ProxyError` subclass carrying its exit status; the CLI prints
``codex-appserver: <message>`` and exits with that status. The statuses follow sysexits(3) where one fits.
The table :data:`EXIT_STATUSES` is the single source for ``--help``, the README and the man page.
"""

from __future__ import annotations

import enum
import errno
import os
import resource  # imported now: loading it later needs a descriptor, which EMFILE means there is none of


class ExitStatus(enum.IntEnum):
    """Exit statuses of ``codex-appserver proxy``."""

    OK = 0
    SESSION_FAILED = 1
    USAGE = 2
    UNAVAILABLE = 69  # EX_UNAVAILABLE
    IOERR = 74  # EX_IOERR
    PROTOCOL = 76  # EX_PROTOCOL
    NOPERM = 77  # EX_NOPERM
    SIGHUP = 129
    SIGINT = 130
    SIGPIPE = 141
    SIGTERM = 143


#: (status, meaning) rows, in the order they are documented.
EXIT_STATUSES: tuple[tuple[int, str], ...] = (
    (
        0,
        "clean end: drained after stdin EOF, or the server closed with 1000 or 1001; serve: stopped by SIGINT or "
        "SIGTERM",
    ),
    (
        1,
        "the session failed after it was established: connection lost, server close with an error code, "
        "drain timeout, keepalive timeout, a bad stdin line under --strict",
    ),
    (
        2,
        "usage error; serve: also a non-loopback --bind without a token or TLS, a token under 32 bytes, a TLS "
        "certificate or key that cannot be loaded",
    ),
    (
        69,
        "no app-server to connect to: socket missing, connection refused, connect timeout; serve: the --bind "
        "address is in use or not available",
    ),
    (
        74,
        "local I/O failure: reading stdin, writing stdout (or stdout not open), the spool file, the trace file, "
        "too many open files; serve: reading --token-file, writing the --new-token file (never overwritten)",
    ),
    (
        76,
        "protocol failure: handshake refused or not HTTP, WebSocket protocol violation, invalid UTF-8 from the "
        "server, TLS handshake or certificate verification failed",
    ),
    (
        77,
        "permission denied on the socket, the handshake answered 401/403, or a token refused over plain ws://; "
        "serve: a --bind port that needs privileges",
    ),
    (129, "SIGHUP received; the connection was closed with 1001 first"),
    (130, "SIGINT received; the connection was closed with 1001 first; serve: a second SIGINT, which ends at once"),
    (141, "stdout was closed by its reader (EPIPE); the connection was closed with 1001 first"),
    (143, "SIGTERM received; the connection was closed with 1001 first; serve: a second SIGTERM, which ends at once"),
)


class ProxyError(Exception):
    """A failure with a one-line message for stderr and an exit status."""

    status: ExitStatus = ExitStatus.SESSION_FAILED

    def __init__(self, message: str, status: ExitStatus | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status

    @property
    def message(self) -> str:
        """The one-line message, without the ``codex-appserver:`` prefix."""
        return str(self.args[0])


class UsageError(ProxyError):
    """An option's value cannot work, found after parsing: e.g. an empty token variable (2)."""

    status = ExitStatus.USAGE


class ServerUnavailable(ProxyError):
    """Nothing to connect to: the socket is missing, refuses connections, or does not answer in time (69)."""

    status = ExitStatus.UNAVAILABLE


class NotListening(ServerUnavailable):
    """The socket is missing or refuses connections: what ``--wait`` and ``--start`` wait out (69)."""


class PermissionDenied(ProxyError):
    """The socket is not ours to open, or the handshake was answered 401/403 (77)."""

    status = ExitStatus.NOPERM


class HandshakeFailed(ProxyError):
    """The opening handshake (RFC 6455 §4.1) was refused or not HTTP at all (76)."""

    status = ExitStatus.PROTOCOL


class ProtocolViolation(ProxyError):
    """The server broke RFC 6455 after the handshake, e.g. invalid UTF-8 in a text message (76)."""

    status = ExitStatus.PROTOCOL


class LocalIOError(ProxyError):
    """Reading stdin or writing stdout failed for a reason other than EOF or EPIPE (74)."""

    status = ExitStatus.IOERR


class TooManyOpenFiles(LocalIOError):
    """EMFILE or ENFILE: a local limit on open descriptors, never the app-server's fault (74)."""


def descriptor_limit_error(exc: BaseException) -> TooManyOpenFiles | None:
    """A :class:`TooManyOpenFiles` with its remedy when *exc* (or the OSError behind it) is EMFILE or ENFILE."""
    code = exc.errno if isinstance(exc, OSError) and exc.errno else errno_of(exc)
    if code == errno.EMFILE:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        return TooManyOpenFiles(
            f"too many open files: the process may hold only {soft} (ulimit -n); raise the limit, "
            "e.g. 'ulimit -n 1024', and run again"
        )
    if code == errno.ENFILE:
        return TooManyOpenFiles(
            "too many open files in the system (ENFILE): the kernel's file table is full; close other programs "
            "or raise fs.file-max, and run again"
        )
    return None


class SessionFailed(ProxyError):
    """The established session ended badly: connection lost, error close code, drain timeout (1)."""

    status = ExitStatus.SESSION_FAILED


def errno_of(exc: BaseException) -> int | None:
    """The errno behind *exc* or behind the OSError it wraps (trio wraps them in BrokenResourceError)."""
    cause = exc.__cause__ or exc.__context__
    return cause.errno if isinstance(cause, OSError) else getattr(exc, "errno", None)


def reason_of(exc: BaseException) -> str:
    """A short reason for *exc*: the strerror of its errno when it has one."""
    code = errno_of(exc)
    return os.strerror(code) if code else (str(exc) or type(exc).__name__)
