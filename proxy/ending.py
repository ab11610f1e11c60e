"""How a relayed session ends: :class:`Ending`, shared by the relay, its endpoints and raw mode."""

from __future__ import annotations

import errno
from dataclasses import dataclass

from .errors import ExitStatus, errno_of, reason_of


@dataclass(frozen=True)
class Ending:
    """How a session ended: the exit status and the stderr line (None: say nothing).

    ``downstream_code`` and ``downstream_reason`` are the close frame a WebSocket downstream sends its client
    (None: the endpoint's own default); the stdio endpoint has no use for them.
    """

    status: int
    message: str | None = None
    downstream_code: int | None = None
    downstream_reason: str = ""


def stdout_failure(exc: BaseException) -> Ending:
    """How a failed stdout write ends a run: EPIPE (the reader left) quietly with 141, like SIGPIPE; else 74."""
    if errno_of(exc) == errno.EPIPE:
        return Ending(ExitStatus.SIGPIPE)
    return Ending(ExitStatus.IOERR, f"cannot write to stdout: {reason_of(exc)}")
