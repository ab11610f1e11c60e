"""stderr lines: ``codex-appserver: <message>``, secrets redacted, never dropped.

The handler writes straight to file descriptor 2 and waits while it is full, even when the descriptor is
non-blocking (another process sharing it may have set ``O_NONBLOCK``): :class:`logging.StreamHandler` drops
a line on EAGAIN (issue 9 #15). Every line goes through :data:`proxy.redact.SECRETS` first (issue 9 #18).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import sys

from .redact import SECRETS

PROG = "codex-appserver"


class RedactingFormatter(logging.Formatter):
    """``codex-appserver: <message>`` with every registered secret replaced (:mod:`proxy.redact`)."""

    def __init__(self) -> None:
        super().__init__(f"{PROG}: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return SECRETS(super().format(record))


class StderrHandler(logging.Handler):
    """Writes each record as one line to stderr, whole, waiting while the descriptor is full.

    When ``sys.stderr`` is a real descriptor the line goes to it with :func:`write_all`; otherwise (stderr
    captured in-process, as click's test runner does) to ``sys.stderr`` itself.
    """

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(RedactingFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record) + "\n"
        except Exception:  # a bad record must not end the run
            self.handleError(record)
            return
        stream = sys.stderr
        if stream is None:
            return  # stderr was closed at start: there is nowhere to say anything
        try:
            fd = stream.fileno()
        except (OSError, ValueError):
            fd = -1
        if fd < 0:
            stream.write(text)
            stream.flush()
            return
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
        write_all(fd, text.encode("utf-8", "backslashreplace"))


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
