"""Running each WebSocket client the bridge admitted (an :class:`~proxy.serve.rules.Upgrade`), trio side.

Per client: a new connection to the app-server (503 when there is none, 502 when it refuses; with ``--start`` the
daemon is started once for clients arriving together), the 101, then either a :class:`~proxy.relay.Relay` with a
:class:`~proxy.serve.client.WebSocketEndpoint` downstream and no session bookkeeping (messages pass unchanged), or,
for a client that offered the resume subprotocol, a session that can outlive it (:mod:`proxy.serve.sessions`).
One access log line at open and one at close per client, never a token or a payload. The live relays are kept
so that :meth:`UpgradedClients.shut_down` can close every client with 1001.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import trio

from ..connect import open_connection
from ..daemon import start_daemon
from ..ending import Ending
from ..errors import ExitStatus, ProxyError, ServerUnavailable
from ..handshake import HandshakeResponse
from ..reconnect import Reconnect
from ..relay import Relay
from ..trace import Tap
from ..upstream_end import GOING_AWAY
from .client import SHUTDOWN_FINISH_TIMEOUT, SHUTDOWN_REASON, WebSocketEndpoint
from .http import ServerHandshake
from .listen import printable, respond
from .notify import Notifier
from .options import ServeOptions
from .resume import RESUME_SUBPROTOCOL
from .roles import Identity
from .rules import HttpRequest, Respond, Upgrade
from .sessions import Sessions, credentials_of

if TYPE_CHECKING:
    from .devicehub import DeviceHub

log = logging.getLogger("codex_appserver")
#: One line per connection at open and at close, shown at the default verbosity.
access = logging.getLogger("codex_appserver.access")


class UpgradedClients:
    """The WebSocket clients past their upgrade: how many there are, how each one runs, and how they all end."""

    def __init__(self, options: ServeOptions, hub: DeviceHub | None) -> None:
        self._options = options
        self._hub = hub
        notifier = Notifier(options.notify_command) if options.notify_command else None
        self._sessions = Sessions(options, notifier, hub)
        self._count = 0
        self._relays: dict[Relay, WebSocketEndpoint] = {}
        self._stopping = False
        self._start_lock = trio.Lock()
        self._last_start = -float("inf")

    @property
    def count(self) -> int:
        """Clients connected now, counting those whose app-server connection is still opening (``--max-clients``)."""
        return self._count

    def start(self, nursery: trio.Nursery) -> None:
        """Run the resumable sessions' tasks in *nursery*, the bridge's."""
        self._sessions.start(nursery)

    def shut_down(self) -> None:
        """Close every client with 1001, and every client that arrives from now on."""
        self._stopping = True
        for relay, endpoint in self._relays.items():
            endpoint.finish_timeout = SHUTDOWN_FINISH_TIMEOUT
            relay.end(Ending(ExitStatus.OK, None, GOING_AWAY, SHUTDOWN_REASON), GOING_AWAY)
        self._sessions.shut_down()

    def _reconnect(self, peer: str) -> Reconnect | None:
        """With ``--reconnect``: how this client's relay connects again (the same target, one try per attempt)."""
        options = self._options
        if not options.reconnect:
            return None

        async def connect_again() -> tuple[trio.abc.Stream, HandshakeResponse]:
            return await open_connection(options.target, options.connect_timeout)

        return Reconnect(connect_again, options.reconnect_timeout, options.notify_reconnect, f"{peer}: ")

    async def _start_daemon(self) -> None:
        # Clients arriving together start the daemon once; a later outage may start it again.
        async with self._start_lock:
            if trio.current_time() - self._last_start < max(self._options.wait, 1.0):
                return
            self._last_start = trio.current_time()
            await start_daemon(self._options.codex_bin, os.environ)

    async def run(
        self,
        stream: trio.abc.Stream,
        handshake: ServerHandshake,
        upgrade: Upgrade,
        peer: str,
        started: float,
        request: HttpRequest,
    ) -> None:
        """Serve one admitted client on *stream* until it ends; *started* is when it connected (trio clock)."""
        options = self._options
        self._count += 1  # the slot is taken while the app-server connection opens
        try:
            start: Callable[[], Awaitable[None]] | None = self._start_daemon if options.start else None
            try:
                upstream, response = await open_connection(options.target, options.connect_timeout, options.wait, start)
            except ProxyError as exc:
                log.warning("%s: no app-server connection for this client: %s", peer, exc.message)
                unavailable = isinstance(exc, ServerUnavailable)
                body = b"the app-server is not running; try again later\n" if unavailable else b"bad gateway\n"
                await respond(stream, handshake, Respond(503 if unavailable else 502, body))
                access.info("%s: GET %s -> %d", peer, printable(request.path), 503 if unavailable else 502)
                return
            accept = handshake.accept(upgrade.key, upgrade.subprotocol)
            if accept is None:
                await trio.aclose_forcefully(upstream)
                await respond(stream, handshake, Respond(400, b"bad request: an upgrade has no body\n"))
                return
            if upgrade.subprotocol == RESUME_SUBPROTOCOL:
                await self._resumable(
                    stream, handshake, accept, upstream, response, peer, started, request, upgrade.identity
                )
                return
            async with upstream:
                await self._relay(
                    stream, handshake, accept, upstream, response, peer, started, request, upgrade.identity
                )
        finally:
            self._count -= 1

    async def _relay(
        self,
        stream: trio.abc.Stream,
        handshake: ServerHandshake,
        accept: bytes,
        upstream: trio.abc.Stream,
        response: HandshakeResponse,
        peer: str,
        started: float,
        request: HttpRequest,
        identity: Identity,
    ) -> None:
        options = self._options
        try:
            await stream.send_all(accept)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            access.info("%s: left before the 101", peer)
            return
        clients = f"{self._count} client{'' if self._count == 1 else 's'}"
        access.info("%s: GET %s -> 101, open (%s connected)", peer, printable(request.path), clients)
        endpoint = WebSocketEndpoint(
            stream,
            handshake.trailing_data,
            peer,
            queue_bytes=options.client_queue_bytes,
            max_message_bytes=options.max_client_message,
            ping_interval=options.ping_interval,
            ping_timeout=options.ping_timeout,
        )
        from .guard import make_relay

        relay = make_relay(
            identity,
            f"{peer} ({identity.label})",
            endpoint,
            upstream,
            response,
            str(options.target),
            max_incoming_size=options.max_incoming_size,
            ping_interval=options.ping_interval,
            ping_timeout=options.ping_timeout,
            close_timeout=options.close_timeout,
            tap=Tap(None, log.isEnabledFor(logging.DEBUG), f"{peer}: "),
            reconnect=self._reconnect(peer),
            announce=lambda ending: log.warning("%s: %s", peer, ending.message) if ending.message else None,
        )
        self._relays[relay] = endpoint
        if self._hub is not None:
            self._hub.attach(relay, identity, peer)
        if self._stopping:
            endpoint.finish_timeout = SHUTDOWN_FINISH_TIMEOUT
            relay.end(Ending(ExitStatus.OK, None, GOING_AWAY, SHUTDOWN_REASON), GOING_AWAY)
        try:
            await relay.run()
        finally:
            del self._relays[relay]
            if self._hub is not None:
                self._hub.detach(relay)
        access.info(
            "%s: closed %d after %.1f s, %s from the client, %d to it",
            peer,
            endpoint.close_code,
            trio.current_time() - started,
            f"{endpoint.from_client} message{'' if endpoint.from_client == 1 else 's'}",
            endpoint.to_client,
        )

    async def _resumable(
        self,
        stream: trio.abc.Stream,
        handshake: ServerHandshake,
        accept: bytes,
        upstream: trio.abc.Stream,
        response: HandshakeResponse,
        peer: str,
        started: float,
        request: HttpRequest,
        device: Identity,
    ) -> None:
        """A client that offered the resume subprotocol: its app-server connection becomes a session that can
        outlive it (:mod:`proxy.serve.sessions`)."""
        try:
            await stream.send_all(accept)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            await trio.aclose_forcefully(upstream)
            access.info("%s: left before the 101", peer)
            return
        access.info("%s: GET %s -> 101, open, resumable (%d clients)", peer, printable(request.path), self._count)
        identity = credentials_of(self._options.token is not None, device.sha256)
        endpoint, port = await self._sessions.connection(
            stream, handshake.trailing_data, upstream, response, peer, identity, device
        )
        if port.ending is not None and port.ending.message:
            log.warning("%s: %s", peer, port.ending.message)
        access.info(
            "%s: closed %d after %.1f s, %d messages from the client, %d to it; %s",
            peer,
            endpoint.close_code,
            trio.current_time() - started,
            endpoint.from_client,
            endpoint.to_client,
            port.outcome,
        )
