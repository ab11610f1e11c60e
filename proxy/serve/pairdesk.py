"""Join codes at run time (trio side): the codes ``devices add --join`` offers on the control socket, and
``POST /pair``, which trades one for a device token once the command's terminal says yes.

The command stays connected while its code is valid: the bridge asks it ``{"op": "confirm", "address": ...}``
when a client sends the code, it answers ``{"approve": true, "token": ...}`` (it made the device) or
``{"approve": false}``, and the bridge says ``{"op": "done", "paired": ...}``. A code is spent at its first use,
whatever the answer; pairing requests are rate-limited per address (:class:`~proxy.serve.pairing.JoinBook`).
"""

from __future__ import annotations

import contextlib
import json
import logging
from typing import TYPE_CHECKING, Any

import trio

from ..errors import LocalIOError
from .control import LineReader, send_json
from .devices import check_name
from .http import BadRequest, ServerHandshake
from .pairing import JoinBook, JoinOffer, parse_pair_body
from .roles import Role
from .rules import HttpRequest, Respond

if TYPE_CHECKING:
    from .devicehub import DeviceHub

log = logging.getLogger("codex_appserver")

#: How long ``POST /pair`` waits for the terminal's y/N, in seconds.
CONFIRM_TIMEOUT = 120.0
#: How long a ``POST /pair`` body may take to arrive, in seconds.
BODY_TIMEOUT = 10.0

GONE_BODY = b"gone: this join code is unknown, used, refused or expired\n"


class _Join:
    """A join code's control connection: the command that issued it, and its answers."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.send_answer, self.answers = trio.open_memory_channel[dict[str, Any]](1)


class PairDesk:
    """The join codes of one running bridge, and its answers to ``POST /pair``."""

    def __init__(self, hub: DeviceHub) -> None:
        self._hub = hub
        self._book = JoinBook()
        self._joins: dict[int, _Join] = {}
        #: Pairing requests waiting for a body or an answer: cancelled when the bridge shuts down.
        self._waits: set[trio.CancelScope] = set()
        self._stopping = False

    def stop(self) -> None:
        """The bridge is shutting down: pairing requests still waiting get their answer now."""
        self._stopping = True
        for scope in self._waits:
            scope.cancel()

    def _scope(self, seconds: float) -> trio.CancelScope:
        scope = trio.CancelScope(deadline=trio.current_time() + seconds)
        self._waits.add(scope)
        if self._stopping:
            scope.cancel()
        return scope

    # -- the command's side ----------------------------------------------------------------------------

    async def join(self, stream: trio.abc.Stream, reader: LineReader, request: dict[str, Any]) -> None:
        """Serve one ``{"op": "join", "name", "role", "code_sha256", "ttl"}`` control connection to its end."""
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
        state = self._hub.state
        try:
            if not await send_json(stream, {"ok": True, "url": state.url, "sha256": state.sha256}):
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
        waiting = self._scope(CONFIRM_TIMEOUT)
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
        hub = self._hub
        hub.check()
        device = hub.watch.match(token.encode("ascii", "replace"))
        if device is None or device.name != offer.name:
            await send_json(join.stream, {"op": "done", "paired": False})
            log.warning("pairing of device %s failed: the device store does not hold its token", offer.name)
            return Respond(410, GONE_BODY)
        payload = {
            "name": device.name,
            "role": device.role.value,
            "token": token,
            "url": hub.state.url,
            "sha256": hub.state.sha256,
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
        reading = self._scope(BODY_TIMEOUT)
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
