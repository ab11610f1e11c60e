"""The reconnect layer of ``--reconnect`` (trio side): an upstream side that outlives its connections.

:class:`ReconnectingUpstream` stands where the relay's :class:`~proxy.upstream.Upstream` stands and has the same
face (:meth:`send_text`, :attr:`open`, :meth:`wait_writable`, :meth:`close`, :meth:`run`), so ``proxy`` and
``serve`` get it alike and their downstream endpoints never notice a reconnect. It runs one
:class:`~proxy.upstream.Upstream` per connection and is that upstream's listener: every message both ways passes
through a :class:`~proxy.continuity.Continuity`, which decides what to remember, replay, hide, hold and answer;
this module only reconnects and moves messages.

A connection counts as lost (:func:`reconnectable`) on EOF or a reset without our own close, a failed write, a
ping left unanswered, or a close frame with 1001 (going away) or 1012 (service restart) from the server. Then:
the requests in flight get their error responses, new attempts follow with capped exponential backoff and
jitter (:func:`~proxy.continuity.reconnect_delay`) until one connects, the session is replayed, and the held
client messages go out. All of it, replay included, must succeed within ``timeout`` seconds of the loss;
otherwise the relay is told the connection is lost for good (``proxy`` exits 1, ``serve`` closes that client
with 1012), exactly as without ``--reconnect``.
"""

from __future__ import annotations

import itertools
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import trio

from .continuity import HOLD_LIMIT_BYTES, Continuity, Step, reconnect_delay
from .errors import ExitStatus, ProxyError
from .handshake import HandshakeResponse
from .trace import Tap
from .upstream import Text, Upstream, UpstreamListener
from .upstream_end import UpstreamEnd

log = logging.getLogger("codex_appserver")

#: Opens a new connection to the app-server, handshake done; raises :class:`~proxy.errors.ProxyError`.
Connector = Callable[[], Awaitable[tuple[trio.abc.Stream, HandshakeResponse]]]
#: Makes the :class:`~proxy.upstream.Upstream` of one connection, reporting to the given listener.
UpstreamFactory = Callable[[UpstreamListener, trio.abc.Stream, HandshakeResponse], Upstream]

#: How long a lost connection may take to write what was queued for it (a close frame's echo), in seconds.
FLUSH_TIMEOUT = 1.0
#: Close codes from the server after which a reconnect is tried (RFC 6455 §7.4.1 going away; 1012 service restart).
RECONNECT_CLOSE_CODES = frozenset({1001, 1012})


@dataclass(frozen=True)
class Reconnect:
    """What ``--reconnect`` needs: a way to connect again, the time it may take in seconds, and whether the
    client wants ``proxy/*`` notifications (``--notify-reconnect``)."""

    connect: Connector
    timeout: float = 60.0
    notify: bool = False
    #: Put before each log line (``serve`` names the client: ``"127.0.0.1:50412: "``).
    label: str = ""


def reconnectable(end: UpstreamEnd) -> bool:
    """True when *end* means the connection was lost (rather than refused or closed on purpose)."""
    if end.kind in ("lost", "keepalive"):
        return True
    return end.kind == "closed" and end.server_code in RECONNECT_CLOSE_CODES


class _Link:
    """The listener of one connection's :class:`Upstream`: reports carry the connection's generation, so a late
    report from a connection given up is ignored."""

    def __init__(self, owner: ReconnectingUpstream, generation: int) -> None:
        self._owner = owner
        self._generation = generation

    def upstream_messages(self, texts: list[Text]) -> bool:
        return self._owner._messages(self._generation, texts)

    def upstream_ended(self, end: UpstreamEnd) -> None:
        self._owner._ended(self._generation, end)


class ReconnectingUpstream:
    """The relay's upstream side under ``--reconnect``.

    :param listener: the relay: it gets the messages for the client, and the end of the session's upstream when
        reconnecting failed or the connection ended some other way.
    :param stream: the first connection, handshake done (its owner closes it too; closing twice is harmless).
    :param make_upstream: builds the :class:`Upstream` of a connection (limits, keepalive, tap).
    :param ending_decided: True once the relay has decided to end: a loss then is no reason to reconnect.
    """

    def __init__(
        self,
        listener: UpstreamListener,
        stream: trio.abc.Stream,
        response: HandshakeResponse,
        where: str,
        *,
        make_upstream: UpstreamFactory,
        reconnect: Reconnect,
        tap: Tap,
        ending_decided: Callable[[], bool],
        rng: random.Random | None = None,
    ) -> None:
        self._listener = listener
        self._where = where
        self._make = make_upstream
        self._reconnect = reconnect
        self._label = reconnect.label
        self._tap = tap
        self._ending_decided = ending_decided
        self._rng = rng or random.Random()
        self._continuity = Continuity(trio.current_time, reconnect.notify, self._rng)
        #: Called with the number of unanswered requests when a connection is lost (for the stderr line).
        self.outstanding: Callable[[], int] = lambda: 0
        self._generation = 0
        self._stream = stream
        self._upstream = self._new_upstream(stream, response)
        self._corked: Upstream | None = None
        self._closing = False
        self._gave_up = False
        self._lost = trio.Event()  # the current connection is lost (or its replay failed)
        self._lost_end: UpstreamEnd | None = None  # the first loss of the current outage
        self._new_outage = False  # set by the first loss of an outage: the reconnect deadline starts then
        self._failure: str | None = None  # why the replay cannot go on
        self._restored = trio.Event()  # set while the session is restored: held messages may be flushed
        self._restored.set()
        self._nursery: trio.Nursery | None = None  # the current connection's tasks

    def _new_upstream(self, stream: trio.abc.Stream, response: HandshakeResponse) -> Upstream:
        upstream = self._make(_Link(self, self._generation), stream, response)
        upstream.outstanding = lambda: self.outstanding()
        return upstream

    # -- the face of an Upstream -----------------------------------------------------------------------

    @property
    def where(self) -> str:
        return self._where

    @property
    def open(self) -> bool:
        """True until the session ends: while reconnecting, the client's messages are held, not refused."""
        return not self._closing and not self._gave_up

    def send_text(self, text: Text) -> None:
        """Send one message from the client now, or hold it while the session is being restored."""
        self._apply(self._continuity.client_message(text))

    def send_texts(self, texts: Sequence[Text]) -> None:
        """:meth:`send_text` for each of *texts*, in order."""
        for text in texts:
            self.send_text(text)

    def cork(self) -> None:
        """As :meth:`Upstream.cork`, on the current connection."""
        self._corked = self._upstream
        self._corked.cork()

    def uncork(self) -> None:
        """As :meth:`Upstream.uncork`, on the connection :meth:`cork` corked."""
        if self._corked is not None:
            self._corked.uncork()
            self._corked = None

    async def wait_writable(self) -> None:
        """Wait until the connection takes more, or, while reconnecting, until fewer than
        :data:`~proxy.continuity.HOLD_LIMIT_BYTES` are held: the client is not read meanwhile."""
        while self._continuity.holding and self._continuity.held_bytes >= HOLD_LIMIT_BYTES:
            await self._restored.wait()
        if not self._continuity.holding and not self._lost.is_set():
            await self._upstream.wait_writable()

    async def close(self, code: int | None, timeout: float) -> None:
        """The session ends: close the current connection as :meth:`Upstream.close` does; no more reconnects."""
        self._closing = True
        if not self._lost.is_set() and self._nursery is not None:
            await self._upstream.close(code, timeout)

    async def run(self) -> None:
        """Run each connection until it is lost, reconnect and replay; until cancelled by the relay."""
        try:
            deadline: float | None = None
            attempts = 0
            while True:
                await self._run_connection(deadline)
                if self._failure is not None:
                    await self._give_up(self._failure, attempts)
                if self._new_outage or deadline is None:
                    self._new_outage = False
                    deadline = trio.current_time() + self._reconnect.timeout
                    attempts = 0
                attempts, error = await self._connect_until(deadline, attempts)
                if error is not None:
                    await self._give_up(error, attempts)
                log.info(
                    "%sconnected to %s again (attempt %d); restoring the session", self._label, self._where, attempts
                )
                self._tap.event("reconnected", attempts=attempts)
                self._apply(self._continuity.connected(attempts))
        finally:
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(self._stream)

    # -- one connection --------------------------------------------------------------------------------

    async def _run_connection(self, deadline: float | None) -> None:
        """Run the current :class:`Upstream` until it is lost (or its replay failed), then close its stream."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._upstream.run)
            if deadline is not None and not self._restored.is_set():
                nursery.start_soon(self._replay_deadline, deadline)
            await self._lost.wait()
            # The echo of a server's close frame (or anything else queued) goes out before the stream is closed.
            await self._upstream.close(None, FLUSH_TIMEOUT)
            nursery.cancel_scope.cancel()
        self._nursery = None
        await trio.aclose_forcefully(self._stream)

    async def _replay_deadline(self, deadline: float) -> None:
        await trio.sleep_until(deadline)
        if not self._restored.is_set():
            self._fail(f"the session was not restored within {self._reconnect.timeout:g} s of the loss")

    def _fail(self, reason: str) -> None:
        if not self._lost.is_set():
            self._failure = reason
            self._lost.set()

    def _ended(self, generation: int, end: UpstreamEnd) -> None:
        if generation != self._generation or self._lost.is_set():
            return  # a connection given up already
        if self._closing or self._ending_decided() or not reconnectable(end):
            self._listener.upstream_ended(end)
            return
        if self._restored.is_set():  # the first loss of an outage (not a second one during the replay)
            self._lost_end = end
            self._new_outage = True
            self._restored = trio.Event()
            log.warning(
                "%s%s; reconnecting (--reconnect, up to %g s)", self._label, end.message, self._reconnect.timeout
            )
        self._tap.event("lost", kind=end.kind)
        self._lost.set()
        # At once, in the same step as the loss: no client message may reach the dead connection.
        self._apply(self._continuity.lost(_short(end), self._reconnect.timeout))

    def _messages(self, generation: int, texts: list[Text]) -> bool:
        if generation != self._generation or self._lost.is_set():
            return False
        delivered: list[Text] = []
        for text in texts:
            step = self._continuity.server_message(text)
            if self._tap.active and not (step.to_client and step.to_client[0] is text):
                self._tap.message("in", text)  # kept from the client (a replay response, a re-sent request)
            delivered.extend(step.to_client)
            step.to_client = []
            self._apply(step)
        return self._listener.upstream_messages(delivered)

    def _apply(self, step: Step) -> None:
        """Do what the continuity says. Messages to the app-server are traced here, as they go out (the relay
        does not trace a client message that may be held, or parked, or rewritten)."""
        if step.to_client:
            self._listener.upstream_messages(step.to_client)
        if (step.to_server or step.held) and self._upstream.open and not self._lost.is_set():
            for text in itertools.chain(step.to_server, step.held):
                if self._tap.active:
                    self._tap.message("out", text)
                self._upstream.send_text(text)
        if step.retry_after is not None and self._nursery is not None:
            self._nursery.start_soon(self._retry_resumes, step.retry_after, self._generation)
        if step.failed is not None:
            self._fail(step.failed)
        if step.restored:
            self._restored.set()
            threads = len(self._continuity.threads)
            log.warning(
                "%sreconnected to %s; the session is restored (%d thread%s resumed)",
                self._label,
                self._where,
                threads,
                "" if threads == 1 else "s",
            )

    async def _retry_resumes(self, delay: float, generation: int) -> None:
        await trio.sleep(delay)
        if generation == self._generation and not self._lost.is_set():
            self._apply(self._continuity.retry_resumes())

    # -- reconnecting ----------------------------------------------------------------------------------

    async def _connect_until(self, deadline: float, attempts: int) -> tuple[int, str | None]:
        """Try to connect until *deadline*; return the attempts made in this outage and why the last one failed
        (None: connected, and the new connection is current)."""
        error = "no attempt could be made"
        while trio.current_time() < deadline:
            attempts += 1
            with trio.move_on_at(deadline) as scope:
                try:
                    stream, response = await self._reconnect.connect()
                except ProxyError as exc:
                    error = exc.message
                else:
                    self._generation += 1
                    self._stream = stream
                    self._upstream = self._new_upstream(stream, response)
                    self._lost = trio.Event()
                    return attempts, None
            if scope.cancelled_caught:
                error = f"attempt {attempts} was still connecting"
                break
            delay = min(reconnect_delay(attempts, self._rng), max(0.0, deadline - trio.current_time()))
            log.info("%sreconnect attempt %d failed: %s; next in %.2f s", self._label, attempts, error, delay)
            await trio.sleep(delay)
        return attempts, error

    async def _give_up(self, reason: str, attempts: int) -> None:
        """Reconnecting failed: tell the relay the connection is lost for good, and wait to be cancelled."""
        self._gave_up = True
        self._apply(self._continuity.gave_up(reason, attempts))
        first = self._lost_end
        lost = first.message if first is not None and first.message else f"lost the connection to {self._where}"
        timeout = self._reconnect.timeout
        message = (
            f"{lost}; gave up reconnecting after {attempts} attempt{'s' if attempts != 1 else ''} "
            f"in {timeout:g} s: {reason}; see --reconnect-timeout"
        )
        kind = first.kind if first is not None else "lost"
        self._listener.upstream_ended(UpstreamEnd(ExitStatus.SESSION_FAILED, message, None, kind))
        await trio.sleep_forever()


def _short(end: UpstreamEnd) -> str:
    """The reason of a loss for the ``proxy/reconnecting`` notification."""
    if end.kind == "closed":
        return f"the app-server closed the connection ({end.server_code})"
    if end.kind == "keepalive":
        return "the app-server stopped answering pings"
    return "the connection to the app-server was lost"
