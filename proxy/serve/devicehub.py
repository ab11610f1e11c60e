"""The bridge's devices at run time (trio side): who a client is, its live connections, revocation, the state file,
the control socket and ``POST /pair``.

- :meth:`DeviceHub.identify` (the :class:`~proxy.serve.rules.Gate`'s identity check) costs one ``stat`` of the
  device store per upgrade request; :meth:`DeviceHub.run` also checks it every :data:`POLL_INTERVAL` seconds, and
  at once when ``devices revoke`` says so on the control socket. A device that is no longer in the store has
  its connections closed with 1008 ``device revoked``; its token gets 401 from then on.
- Every device connection is logged (``device NAME (role R) connected``) and counted in ``bridge.json``.
- Join codes: ``devices add --join`` offers one on the control socket and stays connected; ``POST /pair`` with
  that code (rate-limited per address) asks the command to confirm, and answers with the token it made, or 410.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import trio

from ..ending import Ending
from ..errors import ExitStatus, LocalIOError
from ..relay import Relay
from ..upstream import GOING_AWAY
from .auth import Offer, Token
from .devices import DeviceStore, DeviceWatch, check_name, ensure_state_dir, identify, utc_now
from .http import BadRequest, ServerHandshake
from .pairing import JoinBook, JoinOffer, parse_pair_body
from .roles import Identity, Role
from .rules import HttpRequest, Respond
from .state import CONTROL_SOCKET, BridgeState, Presence, read_state, write_state

log = logging.getLogger("codex_appserver")
access = logging.getLogger("codex_appserver.access")

#: Seconds between two looks at the device store (revocation reaches live connections within this long).
POLL_INTERVAL = 1.0
#: Close code and reason for a revoked device's connections (RFC 6455 §7.4.1: policy violation).
REVOKED_CODE = 1008
REVOKED_REASON = "device revoked"
#: How long ``POST /pair`` waits for the terminal's y/N, in seconds.
CONFIRM_TIMEOUT = 120.0
#: How long a ``POST /pair`` body may take to arrive, in seconds.
BODY_TIMEOUT = 10.0
#: The longest control-socket line, in bytes.
MAX_CONTROL_LINE = 64 * 1024
#: AF_UNIX sun_path holds 108 bytes on Linux, with the terminating NUL.
MAX_SOCKET_PATH = 107

GONE_BODY = b"gone: this join code is unknown, used, refused or expired\n"


class LineReader:
    """Newline-delimited JSON objects from a stream, at most :data:`MAX_CONTROL_LINE` bytes each."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self._stream = stream
        self._buffer = bytearray()

    async def read(self) -> dict[str, Any] | None:
        """The next object; None at EOF, on an over-long line, or on one that is not a JSON object."""
        while b"\n" not in self._buffer:
            if len(self._buffer) > MAX_CONTROL_LINE:
                return None
            try:
                data = await self._stream.receive_some(4096)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return None
            if not data:
                return None
            self._buffer += data
        line, _, rest = bytes(self._buffer).partition(b"\n")
        self._buffer = bytearray(rest)
        try:
            value = json.loads(line)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None


async def send_json(stream: trio.abc.Stream, value: dict[str, Any]) -> bool:
    """Write *value* as one line; False when the peer is gone."""
    try:
        await stream.send_all(json.dumps(value).encode("utf-8") + b"\n")
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return False
    return True


class _Join:
    """A join code's control connection: the command that issued it, and its answers."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.send_answer, self.answers = trio.open_memory_channel[dict[str, Any]](1)


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
        self._book = JoinBook()
        self._joins: dict[int, _Join] = {}
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
        #: Pairing requests waiting for the terminal's answer: cancelled when the bridge shuts down.
        self._waits: set[trio.CancelScope] = set()
        self._stopping = False

    @property
    def required(self) -> bool:
        """True when a client needs a token: off loopback, with a shared token, or once a device store exists."""
        return not self._loopback or self._token is not None or self.watch.seen

    @property
    def has_credentials(self) -> bool:
        """True when some token can get in (the bind policy's "has a token")."""
        return self._token is not None or bool(self.watch.devices)

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
        """A client is relayed now: log who it is and count it."""
        self._live[relay] = identity
        access.info("%s: %s (role %s) connected", peer, identity.label, identity.role.value)
        if identity.device is not None:
            presence = self.state.devices.setdefault(identity.device, Presence())
            presence.connected += 1
            presence.last_seen = utc_now()
            self._save()
        if identity.sha256 is not None and identity.sha256 not in {d.sha256 for d in self.watch.devices}:
            self._enforce()  # revoked between its upgrade and now

    def detach(self, relay: Relay) -> None:
        identity = self._live.pop(relay, None)
        if identity is not None and identity.device is not None:
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
        """The bridge is shutting down: pairing requests waiting for an answer get 410 now."""
        self._stopping = True
        for scope in self._waits:
            scope.cancel()

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
        self._control_sock = await self._control_listener()

    async def run(self) -> None:
        """Poll the device store and serve the control socket until cancelled."""
        async with trio.open_nursery() as nursery:
            if self._control_sock is not None:
                nursery.start_soon(self._accept_control, self._control_sock)
            while True:
                await trio.sleep(POLL_INTERVAL)
                self.check()

    async def _control_listener(self) -> trio.socket.SocketType | None:
        path = self.folder / CONTROL_SOCKET
        if len(os.fsencode(path)) > MAX_SOCKET_PATH:
            log.warning("the control socket path %s is too long for AF_UNIX; join codes are not available", path)
            return None
        try:
            ensure_state_dir(self.folder)
        except LocalIOError as exc:
            log.warning("%s; join codes are not available", exc.message)
            return None
        if path.exists() or path.is_symlink():
            try:
                probe = await trio.open_unix_socket(str(path))
            except OSError:
                with contextlib.suppress(OSError):
                    path.unlink()  # left by a bridge that did not stop cleanly
            else:
                await probe.aclose()
                log.info("another bridge serves the control socket %s; join codes go to it", path)
                return None
        sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            await sock.bind(str(path))
            sock.listen(16)
        except OSError as exc:
            sock.close()
            log.warning("cannot listen on the control socket %s: %s; join codes are not available", path, exc.strerror)
            return None
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        self._control_path = path
        return sock

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
                await self._join(stream, reader, request)
            else:
                await send_json(stream, {"ok": False, "error": f"unknown operation {op!r}"})

    async def _join(self, stream: trio.SocketStream, reader: LineReader, request: dict[str, Any]) -> None:
        try:
            name = check_name(str(request["name"]))
            role = Role(request["role"]).value
            digest = bytes.fromhex(str(request["code_sha256"]))
            ttl = float(request["ttl"])
            if len(digest) != 32 or not 0 < ttl <= 86400:
                raise ValueError("bad code or ttl")
        except (KeyError, ValueError, TypeError, LocalIOError) as exc:
            await send_json(stream, {"ok": False, "error": f"bad join request: {exc}"})
            return
        offer = JoinOffer(name, role, digest, trio.current_time() + ttl)
        join = _Join(stream)
        self._book.offer(offer)
        self._joins[id(offer)] = join
        try:
            if not await send_json(stream, {"ok": True, "url": self.state.url, "sha256": self.state.sha256}):
                return
            with trio.move_on_after(ttl + CONFIRM_TIMEOUT):
                while True:
                    answer = await reader.read()
                    if answer is None:
                        return
                    with contextlib.suppress(trio.WouldBlock):
                        join.send_answer.send_nowait(answer)
        finally:
            self._book.withdraw(offer)
            self._joins.pop(id(offer), None)
            join.send_answer.close()

    # -- POST /pair ------------------------------------------------------------------------------------

    async def pair(
        self, stream: trio.abc.Stream, handshake: ServerHandshake, request: HttpRequest, address: str
    ) -> Respond:
        """Answer ``POST /pair``: 200 with the device's token, 410 for a bad code or a refusal, 429 past the limit."""
        now = trio.current_time()
        if request.method != b"POST":
            return Respond(405, b'method not allowed: POST a JSON body {"code": CODE}\n', (("Allow", "POST"),))
        if self._book.limited(address, now):
            wait = self._book.retry_after(address, now)
            return Respond(429, b"too many pairing requests; try again later\n", (("Retry-After", str(wait)),))
        body = await self._read_body(stream, handshake)
        if isinstance(body, Respond):
            return body
        code = parse_pair_body(body)
        if code is None:
            return Respond(400, b'bad request: the body must be JSON {"code": CODE}\n')
        offer = self._book.take(code, trio.current_time())
        join = self._joins.get(id(offer)) if offer is not None else None
        if offer is None or join is None:
            return Respond(410, GONE_BODY)
        log.warning("pairing request for device %s from %s; waiting for the terminal's answer", offer.name, address)
        answer: dict[str, Any] | None = None
        waiting = trio.CancelScope(deadline=trio.current_time() + CONFIRM_TIMEOUT)
        self._waits.add(waiting)
        if self._stopping:
            waiting.cancel()
        try:
            with waiting, contextlib.suppress(trio.EndOfChannel):
                if await send_json(join.stream, {"op": "confirm", "address": address}):
                    answer = await join.answers.receive()
        finally:
            self._waits.discard(waiting)
        token = answer.get("token") if answer is not None and answer.get("approve") is True else None
        if not isinstance(token, str):
            log.warning("pairing of device %s from %s refused", offer.name, address)
            return Respond(410, GONE_BODY)
        self.check()
        device = self.watch.match(token.encode("ascii", "replace"))
        if device is None or device.name != offer.name:
            await send_json(join.stream, {"op": "done", "paired": False})
            log.warning("pairing of device %s failed: the device store does not hold its token", offer.name)
            return Respond(410, GONE_BODY)
        payload = {
            "name": device.name,
            "role": device.role.value,
            "token": token,
            "url": self.state.url,
            "sha256": self.state.sha256,
        }
        await send_json(join.stream, {"op": "done", "paired": True})
        log.warning("paired device %s (role %s) from %s", device.name, device.role.value, address)
        return Respond(
            200, (json.dumps(payload) + "\n").encode("utf-8"), content_type="application/json; charset=utf-8"
        )

    async def _read_body(self, stream: trio.abc.Stream, handshake: ServerHandshake) -> bytes | Respond:
        try:
            body = handshake.receive_body()
        except BadRequest as exc:
            return _body_refusal(exc)
        reading = trio.CancelScope(deadline=trio.current_time() + BODY_TIMEOUT)
        self._waits.add(reading)
        if self._stopping:
            reading.cancel()
        try:
            with reading:
                while body is None:
                    try:
                        data = await stream.receive_some(4096)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        data = b""
                    body = handshake.receive_body(bytes(data))
        except BadRequest as exc:
            return _body_refusal(exc)
        finally:
            self._waits.discard(reading)
        if body is None:
            return Respond(400, b"bad request: the body did not arrive in time\n")
        return body


def _body_refusal(exc: BadRequest) -> Respond:
    if exc.status == 413:
        return Respond(413, b"content too large\n")
    return Respond(400, b"bad request: incomplete body\n")
