"""The process's entry point, for the ``codex-appserver`` script and ``python -m proxy``.

It runs before anything heavy is imported and stays in charge until the process ends:

- SIGINT, SIGTERM and SIGHUP are handled from the first line on (issue 9 #10): before the session has decided
  how it ends, a signal ends the process at once with 128+N (nothing is owed yet: no connection, or the
  session's own handler took over meanwhile, see :mod:`proxy.runner`). Once the exit status is decided
  (:func:`decide`), a late signal does not change it (issue 9 #12), and the process ends with ``os._exit``,
  so the interpreter never restores the default dispositions before exiting (which let a signal 2-50 ms after
  the drain kill the process).
- Descriptors 0-2 are checked before anything opens a descriptor (issue 9 #16): a closed one is replaced by
  ``/dev/null`` so that nothing else (trio's epoll, a socket) lands on it. A closed stdin then reads as EOF;
  a closed stdout is refused before connecting (:data:`closed_stdio`).

Only the standard library is imported here; the CLI is imported once the handlers are in place.
"""

from __future__ import annotations

import errno
import os
import signal
import sys

TYPE_CHECKING = False  # typing and types are not imported at run time: every millisecond before the handlers counts
if TYPE_CHECKING:
    from types import FrameType
    from typing import NoReturn

#: Signals that end a session with a close frame (1001) and exit status 128+N.
HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

#: Descriptors among 0, 1, 2 that were closed when the process started (each now holds /dev/null).
closed_stdio: frozenset[int] = frozenset()

_decided: int | None = None
_late_signals = 0


def _on_signal(signum: int, frame: FrameType | None) -> None:
    global _late_signals
    if _decided is None:
        os._exit(128 + signum)  # nothing is owed yet, or anymore: end now, never with a traceback
    _late_signals += 1
    if _late_signals > 1:  # the first late one is ignored; a second means "now", e.g. while stderr is stalled
        os._exit(_decided)


def install_signal_handlers() -> None:
    """Handle SIGINT, SIGTERM, SIGHUP from now on (see the module docstring)."""
    for signum in HANDLED_SIGNALS:
        signal.signal(signum, _on_signal)


def decide(status: int) -> None:
    """The exit status is decided: from now on a signal no longer changes it."""
    global _decided
    _decided = status


def check_stdio() -> frozenset[int]:
    """Put ``/dev/null`` on each of descriptors 0-2 that is closed; return which were."""
    closed = set()
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError as exc:
            if exc.errno == errno.EBADF:
                closed.add(fd)
    for fd in sorted(closed):  # lowest first: os.open() returns the lowest free descriptor, which is fd
        try:
            placeholder = os.open(os.devnull, os.O_RDONLY if fd == 0 else os.O_WRONLY)
        except OSError:
            continue
        if placeholder != fd:
            os.dup2(placeholder, fd, inheritable=False)
            os.close(placeholder)
    return frozenset(closed)


def run_cli() -> int:
    """Run the click CLI; return its exit status."""
    from .cli import main as cli  # the heavy imports (trio, h11, wsproto, click) come only now

    try:
        cli.main(prog_name="codex-appserver")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


def exit_now(status: int) -> NoReturn:
    """Flush Python's own stdio buffers (click's ``--help``) and end the process with *status*."""
    decide(status)
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(status)


def main() -> NoReturn:
    """The ``codex-appserver`` command."""
    global closed_stdio
    install_signal_handlers()
    closed_stdio = check_stdio()
    exit_now(run_cli())
