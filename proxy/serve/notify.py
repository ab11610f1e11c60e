"""``serve --notify-command``: run the command for an event without ever blocking the relay (trio side).

:meth:`Notifier.notify` is synchronous and returns at once: it checks the rate limit
(:class:`~proxy.serve.notify_rules.RunLimiter`) and starts a task that runs the command (argv from
:func:`shlex.split`, no shell) in its own process group, with the event's JSON on stdin and
``CODEX_APPSERVER_EVENT`` in its environment; stdout and stderr are discarded. A command still running after
:data:`~proxy.serve.notify_rules.NOTIFY_TIMEOUT` seconds is killed with its process group; a failure is one log
line (never the event's contents).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import shutil
import signal
import subprocess
from collections.abc import Sequence

import trio

from ..errors import UsageError
from .notify_rules import NOTIFY_TIMEOUT, NotifyEvent, RunLimiter

log = logging.getLogger("codex_appserver")
access = logging.getLogger("codex_appserver.access")

EVENT_VARIABLE = "CODEX_APPSERVER_EVENT"


def parse_notify_command(value: str) -> tuple[str, ...]:
    """``--notify-command`` as argv (shlex rules, no shell).

    :raises UsageError: it is empty, its quotes do not balance, or its program is not found (exit 2).
    """
    try:
        argv = tuple(shlex.split(value))
    except ValueError as exc:
        raise UsageError(f"--notify-command {value!r} cannot be split into words: {exc}; check its quotes") from None
    if not argv:
        raise UsageError("--notify-command is empty; give a program and its arguments")
    if shutil.which(argv[0]) is None:
        raise UsageError(f"--notify-command: cannot find the program {argv[0]!r}; give a path or a program on PATH")
    return argv


class Notifier:
    """Runs the notify command in the tasks of *nursery* (set before the first event)."""

    def __init__(self, argv: Sequence[str], timeout: float = NOTIFY_TIMEOUT, limiter: RunLimiter | None = None) -> None:
        self._argv = list(argv)
        self._timeout = timeout
        self._limiter = limiter or RunLimiter()
        self._scopes: set[trio.CancelScope] = set()
        self._cancelled = False
        self.nursery: trio.Nursery | None = None

    def notify(self, event: NotifyEvent, session_id: str) -> None:
        """Run the command for *event*, unless the rate limit says no. Never blocks."""
        nursery = self.nursery
        if nursery is None or self._cancelled:
            return
        refused = self._limiter.start(trio.current_time())
        if refused is not None:
            log.warning("session %s: %s event: notify command not run: %s", session_id, event.kind, refused)
            return
        access.info("session %s: %s event: running the notify command", session_id, event.kind)
        nursery.start_soon(self._run, event, session_id)

    def cancel(self) -> None:
        """Kill running commands and start no more (the bridge is shutting down)."""
        self._cancelled = True
        for scope in self._scopes:
            scope.cancel()

    async def _run(self, event: NotifyEvent, session_id: str) -> None:
        env = {**os.environ, EVENT_VARIABLE: event.kind}
        scope = trio.CancelScope(deadline=trio.current_time() + self._timeout)
        self._scopes.add(scope)
        returncode: int | None = None
        try:
            with scope:
                done = await trio.run_process(
                    self._argv,
                    stdin=event.stdin,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    env=env,
                    check=False,
                    start_new_session=True,
                    deliver_cancel=_kill_group,
                )
                returncode = done.returncode
        except OSError as exc:
            log.warning("cannot run the notify command %s: %s", self._argv[0], exc.strerror or exc)
            return
        finally:
            self._scopes.discard(scope)
            self._limiter.finished()
        if scope.cancelled_caught and not self._cancelled:
            log.warning(
                "session %s: the notify command (%s event) ran longer than %g s; killed",
                session_id,
                event.kind,
                self._timeout,
            )
        elif returncode:
            log.warning(
                "session %s: the notify command (%s event) failed with exit status %d",
                session_id,
                event.kind,
                returncode,
            )


async def _kill_group(process: trio.Process) -> None:
    """Kill the command and whatever it started (its own process group, by the id we got when starting it)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
