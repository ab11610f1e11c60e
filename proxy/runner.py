"""One run of ``codex-appserver proxy``: signals, stdio, connect, relay. Returns how it ended."""

from __future__ import annotations

import functools
import logging
import os
import signal

import trio

from .connect import connect, open_connection
from .daemon import start_daemon
from .ending import Ending
from .errors import LocalIOError, ProxyError
from .handshake import HandshakeResponse
from .jsonl import StdioEndpoint
from .options import ProxyOptions
from .raw import RawRelay
from .relay import Relay
from .session import Session
from .trace import Tap

log = logging.getLogger("codex_appserver")

#: Signals that end a session with a close frame (1001) and exit status 128+N.
HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


async def run_proxy(options: ProxyOptions, stdin_fd: int = 0, stdout_fd: int = 1) -> Ending:
    """Connect to the app-server and relay stdio until the session ends (with ``raw``: copy bytes).

    A first SIGINT, SIGTERM or SIGHUP closes the connection with 1001 and flushes stdout; a second one, or one
    before the connection is established, ends at once. Failures are returned as an :class:`Ending` with the
    status from :mod:`proxy.errors`, never raised.
    """
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
            start = functools.partial(start_daemon, options.codex_bin, os.environ) if options.start else None
            try:
                tap = Tap.open(options.trace, log_messages=log.isEnabledFor(logging.DEBUG))
                tap.event("connect", target=str(options.target))
                if options.raw:
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
                        relay = proxy_relay(options, stream, response, StdioEndpoint(options, stdin, stdout), tap)
                        result = await relay.run()
                ending = ending or result
            except ProxyError as exc:
                ending = Ending(exc.status, exc.message)
            finally:
                if tap is not None:
                    tap.close()
            nursery.cancel_scope.cancel()
    assert ending is not None
    return ending


def proxy_relay(
    options: ProxyOptions, stream: trio.abc.Stream, response: HandshakeResponse, endpoint: StdioEndpoint, tap: Tap
) -> Relay:
    """The relay of one ``proxy`` run: stdio downstream, the session's bookkeeping, the options' limits."""
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
    )


class _stdio:  # noqa: N801 - used like a function, as trio's own context managers are
    """The stdio file descriptors as trio streams (non-blocking while open, restored on close)."""

    def __init__(self, stdin_fd: int, stdout_fd: int) -> None:
        try:
            stdin = os.dup(stdin_fd)
        except OSError:
            stdin = os.open(os.devnull, os.O_RDONLY)  # a closed stdin reads as EOF, as in cat(1)
        try:
            stdout = os.dup(stdout_fd)
        except OSError as exc:
            os.close(stdin)
            raise LocalIOError(f"stdout is not open ({exc.strerror}); give the proxy somewhere to write") from None
        self._stdin = trio.lowlevel.FdStream(stdin)
        self._stdout = trio.lowlevel.FdStream(stdout)

    async def __aenter__(self) -> tuple[trio.lowlevel.FdStream, trio.lowlevel.FdStream]:
        return self._stdin, self._stdout

    async def __aexit__(self, *exc: object) -> None:
        await self._stdin.aclose()
        await self._stdout.aclose()
