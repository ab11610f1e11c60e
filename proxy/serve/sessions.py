"""Resumable sessions of ``serve`` (subprotocol ``codex-appserver.resume.v1``; trio side: it only moves messages).

A :class:`Session` is the relay's downstream for one app-server connection that outlives client connections:
the app-server's messages go into its :class:`~proxy.serve.replay.ReplayLog`; while a client is attached, that
client's :class:`~proxy.serve.port.Port` pumps them out of the log into its
:class:`~proxy.serve.client.WebSocketEndpoint` (at most :data:`~proxy.serve.port.PUMP_LOW` bytes of frames wait
in the endpoint, so the log holds the rest and is the one place that counts). When the client drops without a
close frame (EOF, reset, a failed write, no pong) or is closed as a slow consumer, the session is *detached*: its
app-server connection stays open for ``--resume-window`` seconds and the log keeps everything (memory, then a
spool file). A client that resumes it attaches a new port (a connection still attached is closed with 1008
``session resumed on another connection``); past the window, or past ``--resume-spool-bytes``, or when the client
closes with a close frame, the session ends and its app-server connection is closed with 1001.

Each connection runs its endpoint and its pump in its own nursery (the caller's task); each session runs its
:class:`~proxy.relay.Relay` in the bridge's nursery, so it outlives the connection that created it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from ..ending import Ending
from ..errors import ExitStatus, ProxyError
from ..handshake import HandshakeResponse
from ..relay import Relay
from ..spool import Spool
from ..trace import Tap
from ..upstream import Text
from ..upstream_end import GOING_AWAY
from .client import POLICY_VIOLATION, SERVICE_RESTART, SHUTDOWN_FINISH_TIMEOUT, WebSocketEndpoint
from .notify_rules import event_of
from .options import ServeOptions
from .port import Port
from .replay import Appended, ReplayLog, RewindError
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
from .roles import FULL_ACCESS, REVOKED_CODE, REVOKED_REASON, Identity

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .devicehub import DeviceHub
    from .notify import Notifier

log = logging.getLogger("codex_appserver")
access = logging.getLogger("codex_appserver.access")

#: The endpoint's own slow-consumer limit is not used for resumable clients: the log decides.
NO_LIMIT = 1 << 62
SHUTDOWN_REASON = "the bridge is shutting down"


def credentials_of(token_required: bool, device_sha256: str | None = None) -> str:
    """The identity a session is bound to: a device's own token digest (issue 13), else every client that
    passed the bridge's one token check shares it (no token on loopback: every client)."""
    if device_sha256 is not None:
        return f"device:{device_sha256}"
    return SHARED_TOKEN if token_required else ANONYMOUS


class Session:
    """One resumable session: the relay's downstream, its replay log, and the port attached now (if any)."""

    upstream_gone_code: int | None = SERVICE_RESTART

    def __init__(self, sessions: Sessions, identity: str) -> None:
        options = sessions.options
        self._sessions = sessions
        self.identity = identity
        self.log = ReplayLog(
            options.client_queue_bytes,
            options.resume_spool_bytes,
            lambda: Spool(options.resume_spool_bytes),
        )
        self.id, self.token = sessions.table.create(identity, self)
        self.port: Port | None = None
        #: Messages of the client's relayed to the app-server (M in the resume response).
        self.forwarded = 0
        #: Why the session ended, for a late resume's refusal; set by every ending but the app-server's own.
        self.why_ended = "its app-server connection ended"
        self._changed = trio.lowlevel.ParkingLot()
        self.relay: Relay

    # -- the relay's downstream ------------------------------------------------------------------------

    async def run(self, relay: Relay) -> None:
        """Wait while the session lives; end it when it stays detached for ``--resume-window`` seconds."""
        window = self._sessions.options.resume_window
        while True:
            since = self._sessions.table.detached_since(self.id)
            if self.port is not None or since is None:
                await self._changed.park()
                continue
            if trio.current_time() >= since + window:
                self.why_ended = "nobody resumed it within --resume-window"
                relay.end(
                    Ending(ExitStatus.OK, f"session {self.id}: nobody resumed it within {window:g} s; ended"),
                    GOING_AWAY,
                )
                return
            with trio.move_on_at(since + window):
                await self._changed.park()

    def deliver(self, texts: list[Text]) -> None:
        for text in texts:
            appended = self.log.append(text)
            if appended is Appended.OVERFLOW:
                self._overflow()
                return
            if self.port is None:
                notifier = self._sessions.notifier
                if notifier is not None:
                    event = event_of(text, self.id)
                    if event is not None:
                        notifier.notify(event, self.id)
            elif appended is Appended.SLOW:
                self.port.slow_consumer(self._sessions.options.client_queue_bytes)
        if self.port is not None:
            self.port.wake()

    def _overflow(self) -> None:
        limit = self._sessions.options.resume_spool_bytes
        self.why_ended = "more than --resume-spool-bytes waited for its client"
        self.relay.end(
            Ending(
                ExitStatus.SESSION_FAILED,
                f"session {self.id}: more than --resume-spool-bytes ({limit}) waited for its client; ended",
                POLICY_VIOLATION,
                "slow consumer",
            ),
            GOING_AWAY,
        )

    def stop_receiving(self) -> None:
        if self.port is not None:
            self.port.stop()

    async def finish(self, ending: Ending) -> None:
        if (ending.downstream_code, ending.downstream_reason) == (REVOKED_CODE, REVOKED_REASON):
            self.why_ended = "its device was revoked"
        port, self.port = self.port, None
        if port is not None:
            port.session_over(ending)

    def abandon(self) -> None:
        self.why_ended = "its spool file failed"

    def close(self) -> None:
        self.log.close()
        self._sessions.ended(self)

    # -- what ports and the manager do -----------------------------------------------------------------

    def forward_all(self, texts: Sequence[Text]) -> None:
        self.forwarded += len(texts)
        self.relay.forward_all(texts)

    def take(self, port: Port, max_bytes: int) -> list[Text]:
        """The next messages for *port*, if it is the one attached."""
        if port is not self.port:
            return []
        try:
            return self.log.take(max_bytes)
        except ProxyError as exc:  # the spool file cannot be read back
            self.abandon()
            self.relay.end(Ending(exc.status, f"session {self.id}: {exc.message}"), GOING_AWAY)
            return []

    def attach(self, port: Port) -> None:
        self.port = port
        port.session = self
        self.log.attached = True
        self._sessions.table.attached(self.id)
        self._changed.unpark_all()
        port.wake()

    def detach(self, port: Port) -> None:
        """*port*'s client dropped: keep the session for ``--resume-window`` seconds."""
        if self.port is not port:
            return
        self.port = None
        self.log.attached = False
        for evicted in self._sessions.table.detached(self.id, trio.current_time()):
            evicted.end("too many sessions were waiting for their clients (--max-clients)")
        self._changed.unpark_all()

    def end(self, why: str, ending: Ending | None = None) -> None:
        self.why_ended = why
        self.relay.end(ending or Ending(ExitStatus.OK), GOING_AWAY)


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
