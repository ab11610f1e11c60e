"""One resumable client connection of ``serve`` (trio side): :class:`Port` is what its
:class:`~proxy.serve.client.WebSocketEndpoint` talks to instead of a relay, routed to whichever session
(:class:`~proxy.serve.resumable.Session`) the connection is attached to now, and the pump that feeds the endpoint
from that session's replay log.

The first message of the connection may be ``bridge/resume`` (handed to :meth:`Sessions.resume`); every other
message goes to the session's app-server connection, counted. When the endpoint ends, :meth:`Port.end` decides
what becomes of the session: detached (no close frame, or no pong) or ended (a close frame, a protocol error).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from ..ending import Ending
from ..errors import ExitStatus
from ..upstream import Text
from ..upstream_end import GOING_AWAY
from .client import ABNORMAL, INTERNAL_ERROR, POLICY_VIOLATION, WebSocketEndpoint
from .resume import parse_resume

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..reconnect import ReconnectingUpstream
    from ..upstream import Upstream
    from .resumable import Session
    from .sessions import Sessions

log = logging.getLogger("codex_appserver")

#: The pump feeds the endpoint while fewer bytes than this wait for the client, in bytes.
PUMP_LOW = 256 * 1024
#: Bytes of messages per feed, about.
PUMP_BATCH = 256 * 1024
TAKEN_OVER_REASON = "session resumed on another connection"


class Port:
    """One resumable client connection: what its endpoint talks to (a :class:`~proxy.serve.relay_port.RelayPort`),
    routed to the session it is attached to now."""

    def __init__(self, sessions: Sessions, endpoint: WebSocketEndpoint, identity: str, peer: str) -> None:
        self._sessions = sessions
        self.endpoint = endpoint
        self.identity = identity
        self.peer = peer
        self.session: Session | None = None
        self.ending: Ending | None = None
        self.ended = trio.Event()
        self._first = True
        self._forwarding = True
        self._lot = trio.lowlevel.ParkingLot()
        self._corked: Upstream | ReconnectingUpstream | None = None
        #: For the connection's log line: what became of its session.
        self.outcome = ""

    # -- RelayPort -------------------------------------------------------------------------------------

    @property
    def upstream(self) -> Port:
        return self

    @property
    def open(self) -> bool:
        session = self.session
        return self._forwarding and session is not None and session.relay.upstream.open

    async def wait_writable(self) -> None:
        session = self.session
        if session is not None:
            await session.relay.upstream.wait_writable()

    def cork(self) -> None:
        session = self.session
        self._corked = None if session is None else session.relay.upstream
        if self._corked is not None:
            self._corked.cork()

    def uncork(self) -> None:
        """Uncork what :meth:`cork` corked, even if the port moved to another session meanwhile."""
        corked, self._corked = self._corked, None
        if corked is not None:
            corked.uncork()

    def forward_all(self, texts: Sequence[Text]) -> None:
        """Send the client's messages of one read to its session, in order: the first message of a port may resume
        another session, so it goes alone; the rest go to the session attached then."""
        if self._first and texts:
            self._forward_first(texts[0])
            texts = texts[1:]
        session = self.session
        if session is None or not self._forwarding or not texts:
            return
        session.forward_all(texts)

    def _forward_first(self, text: Text) -> None:
        """The port's first message: a resume request attaches the port to that session; anything else goes to the
        port's own session."""
        session = self.session
        if session is None or not self._forwarding:
            return
        self._first = False
        request = parse_resume(text)
        if request is not None:
            self._sessions.resume(self, request)
            return
        session.forward_all((text,))

    def end(self, ending: Ending, close_code: int | None = None) -> None:
        """The endpoint says the connection is over: detach the session when the client just vanished."""
        if self.ending is not None:
            return
        session, self.session = self.session, None
        dropped = self.endpoint.close_code == ABNORMAL and ending.downstream_code in (None, INTERNAL_ERROR)
        self._finish(ending)
        if session is None:
            return
        if dropped:
            session.detach(self)
            self.outcome = f"session {session.id} kept for {self._sessions.options.resume_window:g} s"
        else:
            session.end("its client closed the connection")
            self.outcome = f"session {session.id} ended"

    # -- what the session and the manager do -----------------------------------------------------------

    def _finish(self, ending: Ending) -> None:
        self.ending = ending
        self._forwarding = False
        self.ended.set()
        self._lot.unpark_all()

    def stop(self) -> None:
        self._forwarding = False

    def wake(self) -> None:
        self._lot.unpark_all()

    def reply(self, text: str) -> None:
        """Send the bridge's own message (not counted)."""
        texts: list[Text] = [text]
        self.endpoint.deliver(texts)

    def slow_consumer(self, limit: int) -> None:
        session, self.session = self.session, None
        if session is None or self.ending is not None:
            return
        session.detach(self)
        self.outcome = f"session {session.id} kept for {self._sessions.options.resume_window:g} s"
        # Said now, not when the connection is over: a client that reads nothing makes that take a while.
        log.warning(
            "%s: slow consumer: more than --client-queue-bytes (%d) waited for it; closing with %d; session %s "
            "kept for resume",
            self.peer,
            limit,
            POLICY_VIOLATION,
            session.id,
        )
        self._finish(Ending(ExitStatus.SESSION_FAILED, None, POLICY_VIOLATION, "slow consumer"))

    def taken_over(self) -> None:
        session, self.session = self.session, None
        self.endpoint.abandon()
        self.outcome = f"session {session.id if session else '?'} resumed on another connection"
        self._finish(Ending(ExitStatus.OK, None, POLICY_VIOLATION, TAKEN_OVER_REASON))

    def session_over(self, ending: Ending) -> None:
        self.session = None
        if self.ending is None:
            code = ending.downstream_code if ending.downstream_code is not None else GOING_AWAY
            self.outcome = "session ended"
            # The session's own task logs why it ended: once is enough.
            self._finish(Ending(ending.status, None, code, ending.downstream_reason))

    async def pump(self) -> None:
        """Feed the endpoint from the session's log, a batch at a time, while the connection lasts."""
        endpoint = self.endpoint
        frames = endpoint.frames
        while self.ending is None:
            await frames.wait_below(PUMP_LOW)
            session = self.session
            texts = session.take(self, PUMP_BATCH) if session is not None else []
            if texts:
                endpoint.deliver(texts)
            else:
                await self._lot.park()
