"""The message relay: one upstream connection to the app-server, one downstream endpoint, both ways at once.

``proxy`` and ``serve`` are this relay with different downstream ends:

- :class:`~proxy.upstream.Upstream` is the WebSocket client connection to the app-server (framing, frame
  limit, keepalive, close mapping, reading at full speed, backpressure on the way in);
- a :class:`Downstream` is the client's end: :class:`~proxy.jsonl.StdioEndpoint` (JSONL on stdin/stdout)
  for ``proxy``, a WebSocket server connection for ``serve``;
- :class:`Relay` pumps messages between them, keeps the JSON-RPC bookkeeping of :mod:`proxy.session` when it
  has one (ids in flight, drain, ``--until``, overload retry), and decides how the session ends
  (:class:`Ending`): the first decision wins, then :meth:`Relay.run` closes upstream and downstream.

One nursery per relay; the upstream and the downstream each run their own tasks in it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol

import trio

from .ending import Ending, stdout_failure
from .errors import ExitStatus, ProxyError
from .handshake import HandshakeResponse
from .session import Retry, Session
from .trace import Tap
from .upstream import Text, Upstream, UpstreamListener
from .upstream_end import CLEAN_CLOSE_CODES, GOING_AWAY, MESSAGE_TOO_BIG, NORMAL_CLOSURE, UpstreamEnd

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    # --reconnect's machinery (continuity, pending, inflight) loads only for a relay that reconnects.
    from .reconnect import Reconnect, ReconnectingUpstream

__all__ = [
    "CLEAN_CLOSE_CODES",
    "GOING_AWAY",
    "MESSAGE_TOO_BIG",
    "NORMAL_CLOSURE",
    "Downstream",
    "Ending",
    "Relay",
    "stdout_failure",
]

log = logging.getLogger("codex_appserver")


class Downstream(Protocol):
    """The client's end of a relay.

    The endpoint reads its client in its own tasks and hands the messages of each read to
    :meth:`Relay.forward_all` (after ``await relay.upstream.wait_writable()``: read no faster than the app-server
    takes them); the relay hands it the app-server's messages with :meth:`deliver`, which never blocks: the
    endpoint queues them, bounded by its own rule (the stdio endpoint spools to disk, a WebSocket client past its
    queue limit is closed as a slow consumer). To end, an endpoint calls :meth:`Relay.end`.
    """

    #: The close code for the client when the upstream connection ends on its own (None: the stdio endpoint).
    upstream_gone_code: int | None

    async def run(self, relay: Relay) -> None:
        """Read the client and write to it until cancelled."""

    def deliver(self, texts: list[Text]) -> None:
        """Queue whole text messages for the client, in order; never blocks.

        :raises ProxyError: the queue cannot take them (the spool is full or its disk failed).
        """

    def stop_receiving(self) -> None:
        """Read nothing more from the client (the session is ending)."""

    async def finish(self, ending: Ending) -> None:
        """Give the client what it is owed (every whole line, or a close frame) before the relay stops."""

    def abandon(self) -> None:
        """Drop what is queued for the client: it can never be delivered."""

    def close(self) -> None:
        """Release what the endpoint holds (the spool file), once the relay has stopped."""


class Relay:
    """One established session: the upstream connection and a downstream endpoint.

    :param stream: the connected stream to the app-server, handshake done.
    :param response: the app-server's 101 response.
    :param where: names the app-server in messages.
    :param session: JSON-RPC bookkeeping (``proxy``); None relays messages unchanged without looking at them.
    :param close_timeout: seconds the closing handshake may take.
    :param announce: called once with the ending as soon as it is decided (the closing may take a while).

    :param reconnect: ``--reconnect``: the upstream side is a :class:`~proxy.reconnect.ReconnectingUpstream`,
        which sees every :class:`~proxy.upstream.UpstreamEnd` first and reconnects and replays the session
        instead of ending it, while the downstream goes on; :meth:`upstream_ended` then only hears of an end
        it could not (or should not) get over.
    """

    def __init__(
        self,
        downstream: Downstream,
        stream: trio.abc.Stream,
        response: HandshakeResponse,
        where: str,
        *,
        max_incoming_size: int,
        ping_interval: float,
        ping_timeout: float,
        close_timeout: float,
        session: Session | None = None,
        tap: Tap | None = None,
        announce: Callable[[Ending], None] | None = None,
        reconnect: Reconnect | None = None,
    ) -> None:
        self._downstream = downstream
        self._announce = announce
        self._tap = tap or Tap()
        self._session = session
        self._close_timeout = close_timeout

        def make_upstream(listener: UpstreamListener, stream: trio.abc.Stream, response: HandshakeResponse) -> Upstream:
            return Upstream(
                listener,
                stream,
                response,
                where,
                max_incoming_size=max_incoming_size,
                ping_interval=ping_interval,
                ping_timeout=ping_timeout,
                tap=self._tap,
            )

        self.upstream: Upstream | ReconnectingUpstream
        if reconnect is None:
            self.upstream = make_upstream(self, stream, response)
        else:
            from .reconnect import ReconnectingUpstream

            self.upstream = ReconnectingUpstream(
                self,
                stream,
                response,
                where,
                make_upstream=make_upstream,
                reconnect=reconnect,
                tap=self._tap,
                ending_decided=lambda: self.ending_decided,
            )
        if session is not None:
            self.upstream.outstanding = lambda: session.outstanding
        self._ending: Ending | None = None
        self._close_code: int | None = None
        self._ended = trio.Event()
        self._drained = trio.Event()

    @property
    def session(self) -> Session | None:
        return self._session

    @property
    def tap(self) -> Tap:
        return self._tap

    # -- how the session ends --------------------------------------------------------------------------

    def end(self, ending: Ending, close_code: int | None = None) -> None:
        """Decide the ending (the first decision wins) and, with *close_code*, send the app-server a close frame."""
        if self._ending is None:
            self._ending = ending
            self._close_code = close_code
            self._ended.set()
            if self._announce is not None:
                self._announce(ending)

    def downstream_failed(self, ending: Ending) -> None:
        """The client's end failed (stdout EPIPE): that outranks a clean ending decided before; close with 1001."""
        if self._ending is not None and self._ending.status == ExitStatus.OK:
            self._ending = ending
        self.end(ending, GOING_AWAY)

    @property
    def ending_decided(self) -> bool:
        """True once the session has decided how it ends (it may still be closing)."""
        return self._ending is not None

    def interrupt(self, signum: int) -> None:
        """A signal arrived: close with 1001 (going away) and exit 128+*signum*."""
        self.end(Ending(128 + signum), GOING_AWAY)

    async def run(self) -> Ending:
        """Relay until the session ends; return how it ended."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self.upstream.run)
            nursery.start_soon(self._downstream.run, self)
            await self._ended.wait()
            await self._shut_down()
            nursery.cancel_scope.cancel()
        self._downstream.close()  # deletes the spool file now rather than at exit
        assert self._ending is not None
        return self._ending

    async def _shut_down(self) -> None:
        assert self._ending is not None
        self._downstream.stop_receiving()
        await self.upstream.close(self._close_code, self._close_timeout)
        # Whatever arrived is owed to the client, however slow it reads; a second signal cuts this short.
        await self._downstream.finish(self._ending)

    # -- downstream -> upstream ------------------------------------------------------------------------

    def forward_all(self, texts: Sequence[Text]) -> None:
        """Send messages from the client to the app-server, in order (the messages of one read; the caller
        checked :attr:`Upstream.open`). Every message a relay sends goes through here: a subclass that looks at
        them (:class:`proxy.serve.guard.GuardedRelay`) overrides this method."""
        if self._tap.active and isinstance(self.upstream, Upstream):  # a reconnecting one traces what it sends
            for text in texts:
                self._tap.message("out", text)
        self.upstream.send_texts(texts)

    async def drain(self, what: str, timeout: float) -> None:
        """The client sends nothing more (*what* says how it ended, for the log): wait up to *timeout* seconds
        until every request has its response (and any ``--until``), then end: 0 when drained, else 1."""
        session = self._session
        assert session is not None
        session.close_stdin()
        log.info("%s; waiting for %s", what, session.awaiting)
        if not session.drained:
            with trio.move_on_after(timeout):
                await self._drained.wait()
        if session.drained:
            self.end(Ending(ExitStatus.OK), NORMAL_CLOSURE)
        else:
            self.end(
                Ending(
                    ExitStatus.SESSION_FAILED,
                    f"drain timeout: {session.awaiting} still missing from the app-server "
                    f"{timeout:g} s after stdin EOF; raise --drain-timeout to wait longer",
                ),
                NORMAL_CLOSURE,
            )

    # -- upstream -> downstream (UpstreamListener) -----------------------------------------------------

    def upstream_messages(self, texts: list[Text]) -> bool:
        """Pass the app-server's messages to the client, minus overload errors the session retries."""
        try:
            session = self._session
            if texts and (session is not None or self._tap.active):
                kept: list[Text] = []
                for text in texts:
                    if self._tap.active:
                        self._tap.message("in", text)
                    retry = session.incoming(text) if session is not None else None
                    if retry is not None:
                        self._nursery.start_soon(self._resend, retry)
                    else:
                        kept.append(text)
                texts = kept
            if texts:
                self._downstream.deliver(texts)
            self._tap.flush()
        except ProxyError as exc:  # the spool is full or its disk failed, or the trace file failed
            self._downstream.abandon()
            self.end(Ending(exc.status, exc.message), GOING_AWAY)
            return False
        if session is not None and session.drained:
            self._drained.set()
        return True

    def upstream_ended(self, end: UpstreamEnd) -> None:
        """The app-server's connection is over (or must be closed): end the session the way it proposes."""
        code = self._downstream.upstream_gone_code
        reason = "" if code is None else _close_reason(end)
        self.end(Ending(end.status, end.message, code, reason), end.close_code)

    async def _resend(self, retry: Retry) -> None:
        log.info("the app-server is overloaded; retry %d of a request in %.3f s", retry.attempt, retry.delay)
        await trio.sleep(retry.delay)
        if self.upstream.open and self._ending is None:
            self.upstream.send_text(retry.text)


def _close_reason(end: UpstreamEnd) -> str:
    """A short close reason (RFC 6455 §5.5: at most 123 bytes) for a client whose app-server connection ended."""
    return {
        "lost": "the app-server connection was lost",
        "keepalive": "the app-server stopped answering",
        "closed": f"the app-server closed the connection ({end.server_code})",
        "protocol": "the app-server broke the WebSocket protocol",
        "too-big": "the app-server sent a message over the size limit",
    }.get(end.kind, "the app-server connection ended")
