"""How the WebSocket connection to the app-server ended, as :class:`~proxy.upstream.Upstream` proposes it (sans-I/O).

Each function builds the :class:`UpstreamEnd` of one way a connection ends: the exit status ``proxy`` would end
with, its stderr line, the close code to send (RFC 6455 §7.4.1) and the kind a reconnect layer looks at. The
relay decides what to do with it; nothing here touches a socket.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ExitStatus
from .messages import TooBig, too_big_fragments

#: RFC 6455 §7.4.1 close codes.
NORMAL_CLOSURE = 1000
GOING_AWAY = 1001
MESSAGE_TOO_BIG = 1009
#: Close codes from the server that end a session cleanly.
CLEAN_CLOSE_CODES = frozenset({NORMAL_CLOSURE, GOING_AWAY})


@dataclass(frozen=True)
class UpstreamEnd:
    """How the upstream connection ended, as proposed to the listener.

    :ivar status: the exit status ``proxy`` would end with (:class:`~proxy.errors.ExitStatus`).
    :ivar message: the stderr line, without the ``codex-appserver:`` prefix (None: nothing to say).
    :ivar close_code: the close code to send the app-server (None: send none, the connection is gone).
    :ivar kind: ``"lost"`` (EOF or reset without a close frame, or a failed write), ``"keepalive"`` (no pong),
        ``"closed"`` (the server's close frame), ``"protocol"`` (RFC 6455 violation), ``"too-big"`` (a
        message over ``max_incoming_size``). A reconnect layer reconnects on ``lost``, ``keepalive`` and a
        ``closed`` with 1001/1012.
    :ivar server_code: the close code the server sent, for ``closed``.
    """

    status: int
    message: str | None
    close_code: int | None
    kind: str
    server_code: int | None = None


def lost(where: str, *, partial: bool, outstanding: int) -> UpstreamEnd:
    """EOF or a reset without a close frame; *partial*: a message had begun; *outstanding*: requests unanswered."""
    message = f"lost the connection to the app-server at {where}: it closed without a close frame"
    if partial:
        message += ", in the middle of a message (its start was dropped)"
    if outstanding:
        message += f"; {outstanding} request{'s' if outstanding != 1 else ''} unanswered"
    return UpstreamEnd(ExitStatus.SESSION_FAILED, message, None, "lost")


def write_failed(where: str, reason: str) -> UpstreamEnd:
    """A write to the socket failed (*reason*, e.g. ``broken pipe``)."""
    return UpstreamEnd(
        ExitStatus.SESSION_FAILED, f"lost the connection to the app-server at {where} ({reason})", None, "lost"
    )


def protocol_error(where: str, reason: str | None, code: int) -> UpstreamEnd:
    """The server broke RFC 6455 (wsproto's *reason*); we close with *code* (1002, 1007, ...)."""
    return UpstreamEnd(
        ExitStatus.PROTOCOL,
        f"the app-server at {where} broke the WebSocket protocol: {reason}; closed with {code}",
        code,
        "protocol",
    )


def closed(where: str, code: int, reason: str | None) -> UpstreamEnd:
    """The server's close frame with *code* and *reason*: a clean end for 1000/1001, else a failed session."""
    said = f" {reason}" if reason else ""
    status = ExitStatus.OK if code in CLEAN_CLOSE_CODES else ExitStatus.SESSION_FAILED
    return UpstreamEnd(status, f"the app-server at {where} closed the connection ({code}{said})", None, "closed", code)


def too_big(text: TooBig, max_incoming_size: int) -> UpstreamEnd:
    """A message over ``--max-incoming-size`` (*max_incoming_size* bytes): close with 1009."""
    return UpstreamEnd(
        ExitStatus.SESSION_FAILED,
        f"the app-server sent a message of at least {text.size} bytes{too_big_fragments(text)}, over "
        f"--max-incoming-size ({max_incoming_size} bytes); closed with {MESSAGE_TOO_BIG}",
        MESSAGE_TOO_BIG,
        "too-big",
    )


def no_pong(where: str, timeout: float) -> UpstreamEnd:
    """Nothing arrived within *timeout* seconds of a keepalive ping: close with 1001."""
    return UpstreamEnd(
        ExitStatus.SESSION_FAILED,
        f"the app-server at {where} stopped answering: no pong within {timeout:g} s of a ping; see "
        "--ping-interval and --ping-timeout",
        GOING_AWAY,
        "keepalive",
    )
