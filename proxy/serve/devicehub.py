"""The bridge's devices at run time (trio side): who a client is, its live connections, revocation, the state file,
and the control socket.

- :meth:`DeviceHub.identify` (the :class:`~proxy.serve.rules.Gate`'s identity check) costs one ``stat`` of the
  device store per upgrade request; :meth:`DeviceHub.run` also checks it every :data:`POLL_INTERVAL` seconds, and
  at once when ``devices revoke`` says so on the control socket. A device that is no longer in the store has
  its connections closed with 1008 ``device revoked``; its token gets 401 from then on.
- Every device connection is logged (``device NAME (role R) connected``) and counted in ``bridge.json``.
- Join codes and ``POST /pair``: :class:`~proxy.serve.pairdesk.PairDesk`.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import trio

from ..ending import Ending
from ..errors import ExitStatus, LocalIOError
from ..relay import Relay
from ..upstream_end import GOING_AWAY
from .auth import Offer, Token
from .control import LineReader, open_control_socket, send_json
from .devices import DeviceStore, DeviceWatch, identify, utc_now
from .http import ServerHandshake
from .pairdesk import PairDesk
from .roles import REVOKED_CODE, REVOKED_REASON, Identity
from .rules import HttpRequest, Respond
from .state import BridgeState, Presence, read_state, write_state
from .statedir import ensure_state_dir

log = logging.getLogger("codex_appserver")
access = logging.getLogger("codex_appserver.access")

#: Seconds between two looks at the device store (revocation reaches live connections within this long).
POLL_INTERVAL = 1.0


class DeviceHub:
    """The devices of one running bridge.

    :param folder: ``$CODEX_HOME/codex-appserver``.
    :param token: the shared ``--token-file``/``--token-env`` token, if any (role ``full``).
    :param loopback: the bridge listens on loopback only: without a token or device store it lets anyone in.
    :param fingerprint: the SHA-256 (hex) of the bridge's certificate, None without TLS.
    """

    def __init__(self, folder: Path, token: Token | None, loopback: bool, fingerprint: str | None) -> None:
        self.folder = folder
        self.watch = DeviceWatch(DeviceStore(folder))
        self.watch.refresh()
        self._token = token
        self._loopback = loopback
        self._problem: str | None = None
        self._live: dict[Relay, Identity] = {}
        self.desk = PairDesk(self)
        previous = read_state(folder)
        self.state = BridgeState(
            os.getpid(),
            None,
            fingerprint,
            {name: Presence(0, presence.last_seen) for name, presence in previous.devices.items()},
        )
        self._state_problem = False
        self._control_path: Path | None = None
        self._control_sock: trio.socket.SocketType | None = None

    @property
    def required(self) -> bool:
        """True when a client needs a token: off loopback, with a shared token, or once a device store exists."""
        return not self._loopback or self._token is not None or self.watch.seen

    # -- identity and revocation -----------------------------------------------------------------------

    def identify(self, authorization: Sequence[bytes], offer: Offer) -> Identity | None:
        self.check()
        return identify(self._token, self.watch, self.required, authorization, offer)

    def check(self) -> None:
        """Re-read the store if it changed; close the connections of devices no longer in it."""
        if self.watch.refresh():
            self._enforce()
        if self.watch.problem != self._problem:
            self._problem = self.watch.problem
            if self._problem:
                log.warning("%s; keeping the devices read before", self._problem)

    def _enforce(self) -> None:
        current = {device.sha256 for device in self.watch.devices}
        for relay, identity in list(self._live.items()):
            if identity.sha256 is not None and identity.sha256 not in current and not relay.ending_decided:
                log.warning("%s was revoked; closing its connection with %d", identity.label, REVOKED_CODE)
                relay.end(Ending(ExitStatus.OK, None, REVOKED_CODE, REVOKED_REASON), GOING_AWAY)

    def attach(self, relay: Relay, identity: Identity, peer: str) -> None:
        """A client is relayed now by *relay*: log who it is, count it, end the relay if the device is revoked."""
        self.arrive(identity, peer)
        self.guard(relay, identity)

    def detach(self, relay: Relay) -> None:
        identity = self._live.pop(relay, None)
        if identity is not None:
            self.leave(identity)

    def guard(self, relay: Relay, identity: Identity) -> None:
        """End *relay* (1008) when *identity*'s device is revoked, until :meth:`release`; a resumable session's
        relay is guarded for its whole life, attached to a client or not."""
        self._live[relay] = identity
        if identity.sha256 is not None and identity.sha256 not in {d.sha256 for d in self.watch.devices}:
            self._enforce()  # revoked between its upgrade and now

    def release(self, relay: Relay) -> None:
        self._live.pop(relay, None)

    def arrive(self, identity: Identity, peer: str) -> None:
        """A client connection of *identity* is open: log it and count it as connected now (``devices list``)."""
        access.info("%s: %s (role %s) connected", peer, identity.label, identity.role.value)
        if identity.device is not None:
            presence = self.state.devices.setdefault(identity.device, Presence())
            presence.connected += 1
            presence.last_seen = utc_now()
            self._save()

    def leave(self, identity: Identity) -> None:
        """A client connection of *identity* closed (a detached session does not count as connected)."""
        if identity.device is not None:
            presence = self.state.devices.setdefault(identity.device, Presence())
            presence.connected = max(0, presence.connected - 1)
            presence.last_seen = utc_now()
            self._save()

    # -- state file ------------------------------------------------------------------------------------

    def announce(self, url: str) -> None:
        """The bridge listens at *url*: write ``bridge.json``."""
        self.state.url = url
        self._save()

    def _save(self) -> None:
        try:
            ensure_state_dir(self.folder)
            write_state(self.folder, self.state)
        except LocalIOError as exc:
            if not self._state_problem:
                log.warning("%s; 'devices list' and 'devices add --qr' will not see this bridge", exc.message)
                self._state_problem = True

    def stop(self) -> None:
        """The bridge is shutting down: pairing requests still waiting get their answer now."""
        self.desk.stop()

    def close(self) -> None:
        """The bridge stops: mark the state file as not running, remove the control socket."""
        for presence in self.state.devices.values():
            presence.connected = 0
        self.state.pid = None
        self._save()
        if self._control_path is not None:
            with contextlib.suppress(OSError):
                self._control_path.unlink()

    # -- tasks -----------------------------------------------------------------------------------------

    async def open_control(self) -> None:
        """Listen on the control socket (before the bridge says it listens, so a command may use it at once)."""
        opened = await open_control_socket(self.folder)
        if opened is not None:
            self._control_sock, self._control_path = opened

    async def run(self) -> None:
        """Poll the device store and serve the control socket until cancelled."""
        async with trio.open_nursery() as nursery:
            if self._control_sock is not None:
                nursery.start_soon(self._accept_control, self._control_sock)
            while True:
                await trio.sleep(POLL_INTERVAL)
                self.check()

    async def _accept_control(self, sock: trio.socket.SocketType) -> None:
        listener = trio.SocketListener(sock)
        async with listener, trio.open_nursery() as nursery:
            while True:
                stream = await listener.accept()
                nursery.start_soon(self._control, stream)

    async def _control(self, stream: trio.SocketStream) -> None:
        async with stream:
            reader = LineReader(stream)
            request = await reader.read()
            if request is None:
                return
            op = request.get("op")
            if op == "reload":
                self.check()
                await send_json(stream, {"ok": True})
            elif op == "join":
                await self.desk.join(stream, reader, request)
            else:
                await send_json(stream, {"ok": False, "error": f"unknown operation {op!r}"})

    async def pair(
        self, stream: trio.abc.Stream, handshake: ServerHandshake, request: HttpRequest, address: str
    ) -> Respond:
        """Answer a request for ``/pair`` (:meth:`~proxy.serve.pairdesk.PairDesk.pair`)."""
        return await self.desk.pair(stream, handshake, request, address)
