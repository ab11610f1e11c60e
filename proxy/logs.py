"""stderr lines: ``codex-appserver: <message>``, secrets redacted, never dropped.

The handler writes straight to file descriptor 2 and waits while it is full, even when the descriptor is
non-blocking (another process sharing it may have set ``O_NONBLOCK``): :class:`logging.StreamHandler` drops
a line on EAGAIN (issue 9 #15). Every line goes through :data:`proxy.redact.SECRETS` first (issue 9 #18).
"""

from __future__ import annotations

import errno
import logging
import os
import select

from .redact import SECRETS

PROG = "codex-appserver"


class RedactingFormatter(logging.Formatter):
    """``codex-appserver: <message>`` with every registered secret replaced (:mod:`proxy.redact`)."""

    def __init__(self) -> None:
        super().__init__(f"{PROG}: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return SECRETS(super().format(record))


class StderrHandler(logging.Handler):
    """Writes each record as one line to a file descriptor (2), whole, waiting while the descriptor is full."""

    def __init__(self, fd: int = 2) -> None:
        super().__init__()
        self._fd = fd
        self.setFormatter(RedactingFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = (self.format(record) + "\n").encode("utf-8", "backslashreplace")
        except Exception:  # a bad record must not end the run
            self.handleError(record)
            return
        write_all(self._fd, line)


def write_all(fd: int, data: bytes) -> None:
    """Write all of *data* to *fd*; on EAGAIN wait until it is writable. Gives up silently when stderr is
    gone (EPIPE, EBADF...): there is nowhere left to say anything."""
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            select.select([], [fd], [])
            continue
        except OSError as exc:
            if exc.errno == errno.EINTR:  # pragma: no cover - PEP 475 retries already
                continue
            return
        view = view[written:]


def setup_logging(verbose: int, quiet: bool) -> logging.Logger:
    """The ``codex_appserver`` logger at the level asked for: -q errors, default warnings, -v info, -vv debug."""
    log = logging.getLogger("codex_appserver")
    log.handlers[:] = [StderrHandler()]
    log.propagate = False
    if quiet:
        log.setLevel(logging.ERROR)
    else:
        log.setLevel({0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG))
    return log
