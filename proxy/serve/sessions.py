"""The resumable sessions of ``serve`` (subprotocol ``codex-appserver.resume.v1``; trio side: it only moves messages).

:class:`Sessions` is the registry: it gives each client that offered the subprotocol a new
:class:`~proxy.serve.resumable.Session` and a :class:`~proxy.serve.port.Port`, finds a session again by id and
credentials (its :class:`~proxy.serve.resume.SessionTable`), and answers a connection's ``bridge/resume``: the
port is attached to that session (a connection still attached is closed with 1008 ``session resumed on another
connection``) or told why not.

Each connection runs its endpoint and its pump in its own nursery (the caller's task); each session runs its
:class:`~proxy.relay.Relay` in the bridge's nursery, so it outlives the connection that created it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from ..ending import Ending
from ..errors import ExitStatus
from ..handshake import HandshakeResponse
from ..trace import Tap
from ..upstream_end import GOING_AWAY
from .client import SHUTDOWN_FINISH_TIMEOUT, SHUTDOWN_REASON, WebSocketEndpoint
from .options import ServeOptions
from .port import Port
from .replay import RewindError
from .resumable import Session
from .resume import (
    ANONYMOUS,
    SHARED_TOKEN,
    Refusal,
    ResumeCode,
    ResumeRequest,
    SessionTable,
    resume_result,
    session_notification,
)
from .roles import FULL_ACCESS, Identity

if TYPE_CHECKING:
    from .devicehub import DeviceHub
    from .notify import Notifier

log = logging.getLogger("codex_appserver")
access = logging.getLogger("codex_appserver.access")

#: The endpoint's own slow-consumer limit is not used for resumable clients: the log decides.
NO_LIMIT = 1 << 62


def credentials_of(token_required: bool, device_sha256: str | None = None) -> str:
    """The identity a session is bound to: a device's own token digest (issue 13), else every client that
    passed the bridge's one token check shares it (no token on loopback: every client)."""
    if device_sha256 is not None:
        return f"device:{device_sha256}"
    return SHARED_TOKEN if token_required else ANONYMOUS


class Sessions:
    """Every resumable session of the bridge, and the connections of clients that offered the subprotocol."""

    def __init__(self, options: ServeOptions, notifier: Notifier | None = None, hub: DeviceHub | None = None) -> None:
        self.options = options
        self.notifier = notifier
        self.hub = hub  # device tokens: a revoked device's sessions end at once (issue 13)
        self.table: SessionTable[Session] = SessionTable(max_detached=options.max_clients)
        self._live: set[Session] = set()
        self._nursery: trio.Nursery | None = None
        self._stopping = False

    def start(self, nursery: trio.Nursery) -> None:
        """Run sessions (and notify commands) in *nursery*, which outlives every connection."""
        self._nursery = nursery
        if self.notifier is not None:
            self.notifier.nursery = nursery

    def shut_down(self) -> None:
        """End every session: its client gets 1001, its app-server connection 1001."""
        self._stopping = True
        for session in list(self._live):
            if session.port is not None:
                session.port.endpoint.finish_timeout = SHUTDOWN_FINISH_TIMEOUT
            session.why_ended = "the bridge shut down"
            session.relay.end(Ending(ExitStatus.OK, None, GOING_AWAY, SHUTDOWN_REASON), GOING_AWAY)
        if self.notifier is not None:
            self.notifier.cancel()

    def ended(self, session: Session) -> None:
        self.table.ended(session.id, session.why_ended)
        self._live.discard(session)

    async def connection(
        self,
        stream: trio.abc.Stream,
        trailing_data: bytes,
        upstream: trio.abc.Stream,
        response: HandshakeResponse,
        peer: str,
        identity: str,
        device: Identity = FULL_ACCESS,
    ) -> tuple[WebSocketEndpoint, Port]:
        """Relay one client that offered the subprotocol (its 101 sent) until its connection ends.

        *upstream* (its app-server connection, handshake done) becomes a new session's; the session outlives
        the connection when the client drops, and is discarded when the client resumes another one.
        """
        options = self.options
        assert self._nursery is not None
        endpoint = WebSocketEndpoint(
            stream,
            trailing_data,
            peer,
            queue_bytes=NO_LIMIT,
            max_message_bytes=options.max_client_message,
            ping_interval=options.ping_interval,
            ping_timeout=options.ping_timeout,
        )
        port = Port(self, endpoint, identity, peer)
        session = Session(self, identity)
        from .guard import make_relay  # an observer's session is guarded like its plain connection

        session.relay = make_relay(
            device,
            f"{peer} ({device.label})",
            session,
            upstream,
            response,
            str(options.target),
            max_incoming_size=options.max_incoming_size,
            ping_interval=options.ping_interval,
            ping_timeout=options.ping_timeout,
            close_timeout=options.close_timeout,
            tap=Tap(None, log.isEnabledFor(logging.DEBUG), f"{peer}: "),
        )
        self._live.add(session)
        if self.hub is not None:
            # Presence follows this connection; revocation follows the session, attached or detached.
            self.hub.arrive(device, peer)
            self.hub.guard(session.relay, device)
        self._nursery.start_soon(self._run_session, session, upstream)
        session.attach(port)
        port.reply(session_notification(session.id, session.token))
        session.token = ""  # sent once; only its digest is kept
        if self._stopping:
            session.relay.end(Ending(ExitStatus.OK, None, GOING_AWAY, SHUTDOWN_REASON), GOING_AWAY)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(endpoint.run, port)
                nursery.start_soon(port.pump)
                await port.ended.wait()
                endpoint.stop_receiving()
                assert port.ending is not None
                await endpoint.finish(port.ending)
                nursery.cancel_scope.cancel()
        finally:
            if self.hub is not None:
                self.hub.leave(device)
        return endpoint, port

    async def _run_session(self, session: Session, upstream: trio.abc.Stream) -> None:
        try:
            await self._run_relay(session, upstream)
        finally:
            if self.hub is not None:
                self.hub.release(session.relay)

    async def _run_relay(self, session: Session, upstream: trio.abc.Stream) -> None:
        try:
            async with upstream:
                ending = await session.relay.run()
        except Exception as exc:  # a bug must not take every other session down with it
            log.error("session %s: internal error, session ended: %s: %s", session.id, type(exc).__name__, exc)
            log.debug("internal error", exc_info=True)
            self.ended(session)
            return
        if ending.message:
            log.warning("%s", ending.message)

    def resume(self, port: Port, request: ResumeRequest | tuple[int | str | None, Refusal]) -> None:
        """*port*'s first message is ``bridge/resume``: attach it to that session, or say why not."""
        if isinstance(request, tuple):
            request_id, refusal = request
            self._refuse(port, request_id, refusal)
            return
        live = self.table.get(request.session_id)
        if live is not None and live.relay.ending_decided:  # ending, not yet out of the table: as if ended
            self._refuse(
                port,
                request.id,
                Refusal(ResumeCode.SESSION_ENDED, f"the session ended ({live.why_ended}); start a new one"),
            )
            return
        found = self.table.check(request, port.identity)
        if isinstance(found, Refusal):
            self._refuse(port, request.id, found)
            return
        target = found
        if target is port.session:
            self._refuse(port, request.id, Refusal(ResumeCode.INVALID_PARAMS, "this connection is that session"))
            return
        problem = target.log.check_rewind(request.received)
        if problem is not None:
            log_ = target.log
            message = (
                f"messages after {request.received} are no longer held (the oldest held is {log_.first})"
                if problem is RewindError.TOO_OLD
                else f"received {request.received} is more than the {log_.cursor - 1} messages sent"
            )
            self._refuse(port, request.id, Refusal(ResumeCode.CANNOT_REPLAY, message))
            return
        old_port = target.port
        if old_port is not None:
            target.port = None
            old_port.taken_over()
        target.log.rewind(request.received)
        fresh = port.session
        if fresh is not None:
            fresh.port = None
            fresh.end("its connection resumed another session")
        port.reply(resume_result(request.id, target.forwarded))
        target.attach(port)
        access.info(
            "%s: resumed session %s after message %d: %d to replay; %d of its messages had been relayed",
            port.peer,
            target.id,
            request.received,
            target.log.pending,
            target.forwarded,
        )

    def _refuse(self, port: Port, request_id: int | str | None, refusal: Refusal) -> None:
        port.reply(refusal.response(request_id))
        access.info("%s: bridge/resume refused (%d): %s", port.peer, int(refusal.code), refusal.message)
