"""The bridge's trio side: listen, admit each connection, hand each WebSocket client on, and shut down on
SIGINT/SIGTERM.

Per accepted connection (one task each, :meth:`Bridge.handle`): the TLS handshake and the request head within
``header_timeout`` seconds (else the connection is dropped: slowloris), :func:`~proxy.serve.rules.admit`, then
the answer: ``POST /pair``, a probe, a 4xx, or for an upgrade :meth:`~proxy.serve.upgrade.UpgradedClients.run`,
which relays the client to its own app-server connection. One log line per answered request, never a token or a
payload.
"""

from __future__ import annotations

import logging
import signal
from typing import TYPE_CHECKING

import trio

from ..connect import connect
from ..errors import ExitStatus, ProxyError
from .auth import KNOWN_SUBPROTOCOLS
from .http import BadRequest, ServerHandshake
from .listen import close_stream, open_listener, peer_name, printable, respond, send_quietly
from .options import ServeOptions
from .resume import RESUME_SUBPROTOCOL
from .rules import Gate, HttpRequest, Probe, Respond, Upgrade, admit, is_loopback, url_host
from .upgrade import UpgradedClients

if TYPE_CHECKING:
    from .devicehub import DeviceHub

log = logging.getLogger("codex_appserver")
#: One line per connection at open and at close, shown at the default verbosity.
access = logging.getLogger("codex_appserver.access")
#: The one line that says the bridge accepts connections, shown whatever the verbosity.
listening = logging.getLogger("codex_appserver.listening")

RECEIVE_BYTES = 16 * 1024
#: Connections still in their TLS or HTTP handshake, at most; more are closed at once (header floods).
MAX_PENDING = 256
#: How long /readyz may take to connect to the app-server, in seconds.
PROBE_TIMEOUT = 2.0
#: Signals that shut the bridge down.
SHUTDOWN_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Bridge:
    """The running bridge: its listener, its clients, and how it shuts down."""

    def __init__(self, options: ServeOptions, listener: trio.SocketListener) -> None:
        self._options = options
        self._listener = listener
        from .devicehub import DeviceHub  # loaded when the bridge runs, not when the CLI starts

        self.hub: DeviceHub | None = (
            DeviceHub(options.state_dir, options.token, is_loopback(options.host), options.fingerprint)
            if options.state_dir is not None
            else None
        )
        identify = self.hub.identify if self.hub is not None else None
        self._gate = Gate(
            options.token,
            options.allowed_origins,
            options.max_clients,
            known_subprotocols=(*KNOWN_SUBPROTOCOLS, RESUME_SUBPROTOCOL),
            identify=identify,
        )
        self._clients = UpgradedClients(options, self.hub)
        self._pending = 0
        self._handshakes: set[trio.CancelScope] = set()
        self._accepting = trio.CancelScope()
        self._stopping = False

    @property
    def url(self) -> str:
        """``ws://HOST:PORT/ws`` (``wss://`` with TLS) with the port actually bound."""
        port = self._listener.socket.getsockname()[1]
        scheme = "wss" if self._options.tls is not None else "ws"
        return f"{scheme}://{url_host(self._options.host)}:{port}/ws"

    @property
    def stopping(self) -> bool:
        return self._stopping

    async def serve(self) -> None:
        """Accept connections until :meth:`shut_down`, then wait for every connection to end."""
        async with trio.open_nursery() as nursery:
            self._clients.start(nursery)
            with self._accepting:
                while True:
                    try:
                        stream = await self._listener.accept()
                    except OSError as exc:  # EMFILE, ENFILE, ENOBUFS: out of resources for now
                        log.error("cannot accept a connection: %s; trying again in 0.1 s", exc.strerror or exc)
                        await trio.sleep(0.1)
                        continue
                    nursery.start_soon(self.handle, stream)
            await self._listener.aclose()

    def shut_down(self) -> None:
        """Stop accepting, drop connections still in their handshake, close every client with 1001."""
        self._stopping = True
        self._accepting.cancel()
        if self.hub is not None:
            self.hub.stop()
        for scope in self._handshakes:
            scope.cancel()
        self._clients.shut_down()

    # -- one connection --------------------------------------------------------------------------------

    async def handle(self, tcp: trio.SocketStream) -> None:
        """Serve one connection; a failure here is logged and ends this connection only, never the bridge."""
        try:
            await self._handle(tcp)
        except Exception as exc:  # a bug must not take every other client down with it
            log.error("%s: internal error, connection dropped: %s: %s", peer_name(tcp)[1], type(exc).__name__, exc)
            log.debug("internal error", exc_info=True)
            await trio.aclose_forcefully(tcp)

    async def _handle(self, tcp: trio.SocketStream) -> None:
        address, peer = peer_name(tcp)
        if self._pending >= MAX_PENDING:
            await trio.aclose_forcefully(tcp)
            access.info("%s: dropped: %d connections are already in their handshake", peer, MAX_PENDING)
            return
        started = trio.current_time()
        stream: trio.abc.Stream = tcp
        try:
            self._pending += 1
            try:
                handshake, request, stream = await self._read_request(tcp, peer)
            finally:
                self._pending -= 1
            if request is None:
                return
            if self.hub is not None and request.path == "/pair":
                answer = await self.hub.pair(stream, handshake, request, address)
                await respond(stream, handshake, answer)
                access.info("%s: %s /pair -> %d", peer, request.method.decode("latin-1"), answer.status)
                return
            decision = admit(request, self._gate, address, trio.current_time(), self._clients.count)
            if isinstance(decision, Upgrade):
                await self._clients.run(stream, handshake, decision, peer, started, request)
                return
            if isinstance(decision, Probe):
                decision = await self._probe()
            await respond(stream, handshake, decision)
            access.info(
                "%s: %s %s -> %d", peer, request.method.decode("latin-1"), printable(request.path), decision.status
            )
        finally:
            await close_stream(stream)

    async def _read_request(
        self, tcp: trio.SocketStream, peer: str
    ) -> tuple[ServerHandshake, HttpRequest | None, trio.abc.Stream]:
        handshake = ServerHandshake()
        stream: trio.abc.Stream = tcp
        scope = trio.CancelScope(deadline=trio.current_time() + self._options.header_timeout)
        self._handshakes.add(scope)
        if self._stopping:
            scope.cancel()
        try:
            with scope:
                if self._options.tls is not None:
                    stream = trio.SSLStream(tcp, self._options.tls, server_side=True)
                    try:
                        await stream.do_handshake()
                    except trio.BrokenResourceError as exc:
                        access.info("%s: TLS handshake failed: %s", peer, exc.__cause__ or exc)
                        return handshake, None, stream
                while True:
                    try:
                        data = await stream.receive_some(RECEIVE_BYTES)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        data = b""
                    try:
                        request = handshake.receive_data(bytes(data))
                    except BadRequest as exc:
                        if exc.response:
                            await send_quietly(stream, exc.response)
                            access.info("%s: -> %d", peer, exc.status)
                        return handshake, None, stream
                    if request is not None:
                        return handshake, request, stream
        finally:
            self._handshakes.discard(scope)
        if not self._stopping:
            access.info("%s: dropped: no whole request within %g s", peer, self._options.header_timeout)
        return handshake, None, stream

    async def _probe(self) -> Respond:
        target = self._options.target
        try:
            with trio.fail_after(PROBE_TIMEOUT):
                probe = await connect(target, PROBE_TIMEOUT)
        except (ProxyError, trio.TooSlowError):
            return Respond(503, b"not ready: the app-server does not accept connections\n")
        await trio.aclose_forcefully(probe)
        return Respond(200, b"ready\n")


async def run_bridge(options: ServeOptions) -> int:
    """Run ``serve`` until SIGINT or SIGTERM; return the exit status.

    The first signal stops accepting, closes every client with 1001 and its app-server connection, and returns 0
    once they are done; a second one ends at once with 128+N.

    :raises ProxyError: the bridge cannot listen (69, 77).
    """
    status: int = ExitStatus.OK
    with trio.open_signal_receiver(*SHUTDOWN_SIGNALS) as signals:
        listener = await open_listener(options.host, options.port)
        bridge = Bridge(options, listener)
        hub = bridge.hub
        if hub is not None:
            await hub.open_control()
            hub.announce(bridge.url)
        listening.info("listening on %s", bridge.url)
        try:
            async with trio.open_nursery() as nursery:
                if hub is not None:
                    nursery.start_soon(hub.run)

                async def watch_signals() -> None:
                    nonlocal status
                    async for signum in signals:
                        if not bridge.stopping:
                            log.warning("%s: closing every client with 1001", signal.Signals(signum).name)
                            bridge.shut_down()
                        else:
                            status = 128 + signum
                            nursery.cancel_scope.cancel()

                nursery.start_soon(watch_signals)
                await bridge.serve()
                nursery.cancel_scope.cancel()
        finally:
            if hub is not None:
                hub.close()
    return status
