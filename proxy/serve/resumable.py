"""One resumable session of ``serve`` (subprotocol ``codex-appserver.resume.v1``; trio side: it only moves messages).

A :class:`Session` is the relay's downstream for one app-server connection that outlives client connections:
the app-server's messages go into its :class:`~proxy.serve.replay.ReplayLog`; while a client is attached, that
client's :class:`~proxy.serve.port.Port` pumps them out of the log into its
:class:`~proxy.serve.client.WebSocketEndpoint` (at most :data:`~proxy.serve.port.PUMP_LOW` bytes of frames wait
in the endpoint, so the log holds the rest and is the one place that counts). When the client drops without a
close frame (EOF, reset, a failed write, no pong) or is closed as a slow consumer, the session is *detached*: its
app-server connection stays open for ``--resume-window`` seconds and the log keeps everything (memory, then a
spool file). A client that resumes it attaches a new port (:meth:`proxy.serve.sessions.Sessions.resume`); past
the window, or past ``--resume-spool-bytes``, or when the client closes with a close frame, the session ends and
its app-server connection is closed with 1001.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from ..ending import Ending
from ..errors import ExitStatus, ProxyError
from ..relay import Relay
from ..spool import Spool
from ..upstream import Text
from ..upstream_end import GOING_AWAY
from .client import POLICY_VIOLATION, SERVICE_RESTART
from .notify_rules import event_of
from .port import Port
from .replay import Appended, ReplayLog
from .roles import REVOKED_CODE, REVOKED_REASON

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .sessions import Sessions


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
