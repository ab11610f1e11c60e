"""One run of ``codex-appserver proxy``: signals, stdio, connect, relay. Returns how it ended."""

from __future__ import annotations

import functools
import logging
import os
from typing import TYPE_CHECKING

import trio

from . import entry
from .allocator import tune_for_streaming
from .connect import connect, open_connection
from .ending import Ending
from .entry import HANDLED_SIGNALS
from .errors import ExitStatus, ProxyError, descriptor_limit_error
from .handshake import HandshakeResponse
from .jsonl import StdioEndpoint
from .options import ProxyOptions
from .relay import Relay
from .session import Session
from .stdio import StdinStream, StdoutStream, open_stdin, open_stdout
from .trace import Tap

if TYPE_CHECKING:  # --raw, --start and --reconnect load their modules only when given
    from .raw import RawRelay
    from .reconnect import Reconnect

log = logging.getLogger("codex_appserver")

__all__ = ["HANDLED_SIGNALS", "run_proxy"]

STDOUT_CLOSED = "stdout is not open; give the proxy somewhere to write, e.g. '> replies.jsonl' or '> /dev/null'"


async def run_proxy(options: ProxyOptions, stdin_fd: int = 0, stdout_fd: int = 1) -> Ending:
    """Connect to the app-server and relay stdio until the session ends (with ``raw``: copy bytes).

    A first SIGINT, SIGTERM or SIGHUP closes the connection with 1001 and flushes stdout; a second one, or one
    before the connection is established, ends at once. Failures are returned as an :class:`Ending` with the
    status from :mod:`proxy.errors`, never raised. The ending is decided (:func:`proxy.entry.decide`) before
    the signal handlers are given back, so a signal after that does not change it.
    """
    if stdout_fd in entry.closed_stdio:  # checked before connecting: nothing could reach the client (#16)
        entry.decide(ExitStatus.IOERR)
        return Ending(ExitStatus.IOERR, STDOUT_CLOSED)
    relay: Relay | RawRelay | None = None
    ending: Ending | None = None
    with trio.open_signal_receiver(*HANDLED_SIGNALS) as signals:
        async with trio.open_nursery() as nursery:

            async def watch_signals() -> None:
                nonlocal ending
                async for signum in signals:
                    if relay is not None and ending is None and not relay.ending_decided:
                        relay.interrupt(signum)
                    else:
                        ending = ending or Ending(128 + signum)
                        nursery.cancel_scope.cancel()

            nursery.start_soon(watch_signals)
            tap: Tap | None = None
            try:
                # --start's and --reconnect's modules load first, before the connection and stdio take
                # descriptors: loading a module needs one (EMFILE, #9).
                tune_for_streaming()
                start = None
                if options.start:
                    from .daemon import start_daemon

                    start = functools.partial(start_daemon, options.codex_bin, os.environ)
                reconnect = reconnect_options(options)
                tap = Tap.open(options.trace, log_messages=log.isEnabledFor(logging.DEBUG))
                tap.event("connect", target=str(options.target))
                if options.raw:
                    from .raw import RawRelay

                    stream = await connect(options.target, options.connect_timeout, options.wait, start)
                    assert isinstance(stream, trio.abc.HalfCloseableStream)  # --raw is for the Unix socket
                    async with stream, _stdio(stdin_fd, stdout_fd) as (stdin, stdout):
                        relay = RawRelay(stream, stdin, stdout)
                        result = await relay.run()
                else:
                    stream, response = await open_connection(
                        options.target, options.connect_timeout, options.wait, start
                    )
                    tap.event("handshake", status=101, headers=dict(response.headers))
                    async with stream, _stdio(stdin_fd, stdout_fd) as (stdin, stdout):
                        endpoint = StdioEndpoint(options, stdin, stdout)
                        relay = proxy_relay(options, stream, response, endpoint, tap, reconnect)
                        result = await relay.run()
                ending = ending or result
            except ProxyError as exc:
                ending = ending or Ending(exc.status, exc.message)
            except OSError as exc:  # EMFILE/ENFILE from any socket, pipe or file opened on the way (#9)
                limit = descriptor_limit_error(exc)
                if limit is None:
                    raise
                ending = ending or Ending(limit.status, limit.message)
            finally:
                if tap is not None:
                    tap.close()
            nursery.cancel_scope.cancel()
        assert ending is not None
        entry.decide(ending.status)  # before the handlers go back: a late signal keeps this status (#12)
    return ending


def proxy_relay(
    options: ProxyOptions,
    stream: trio.abc.Stream,
    response: HandshakeResponse,
    endpoint: StdioEndpoint,
    tap: Tap,
    reconnect: Reconnect | None,
) -> Relay:
    """The relay of one ``proxy`` run: stdio downstream, the session's bookkeeping, the options' limits, and
    *reconnect* (:func:`reconnect_options`)."""
    return Relay(
        endpoint,
        stream,
        response,
        str(options.target),
        max_incoming_size=options.max_incoming_size,
        ping_interval=options.ping_interval,
        ping_timeout=options.ping_timeout,
        close_timeout=options.close_timeout,
        session=Session(overload_retries=options.overload_retries, until=options.until),
        tap=tap,
        reconnect=reconnect,
    )


def reconnect_options(options: ProxyOptions) -> Reconnect | None:
    """What ``--reconnect`` needs: connect to the same target again (no ``--wait``, no ``--start``: each attempt
    is one try, the reconnect loop paces them), or None without ``--reconnect``."""
    if not options.reconnect:
        return None
    from .reconnect import Reconnect

    async def connect_again() -> tuple[trio.abc.Stream, HandshakeResponse]:
        return await open_connection(options.target, options.connect_timeout)

    return Reconnect(connect_again, options.reconnect_timeout, options.notify_reconnect)


class _stdio:  # noqa: N801 - used like a function, as trio's own context managers are
    """stdin and stdout as trio streams on private open file descriptions (:mod:`proxy.stdio`), closed on exit.

    :raises TooManyOpenFiles: no descriptor left for them (74).
    """

    def __init__(self, stdin_fd: int, stdout_fd: int) -> None:
        self._stdin_fd = stdin_fd
        self._stdout_fd = stdout_fd
        self._stdin: StdinStream | None = None
        self._stdout: StdoutStream | None = None

    async def __aenter__(self) -> tuple[StdinStream, StdoutStream]:
        self._stdin = open_stdin(self._stdin_fd)
        try:
            self._stdout = open_stdout(self._stdout_fd)
        except BaseException:
            await self._stdin.aclose()
            raise
        return self._stdin, self._stdout

    async def __aexit__(self, *exc: object) -> None:
        if self._stdin is not None:
            await self._stdin.aclose()
        if self._stdout is not None:
            await self._stdout.aclose()
