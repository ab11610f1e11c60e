"""Sans-I/O opening handshake of a WebSocket client (RFC 6455 §4.1), on h11.

:class:`ClientHandshake` gives the request bytes, takes response bytes in, and returns a
:class:`HandshakeResponse` once the server has switched protocols. Bytes that arrived after the 101 response
are kept in :attr:`HandshakeResponse.trailing_data` for the WebSocket connection, never dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NoReturn

import h11
from wsproto.utilities import generate_accept_token, generate_nonce

from . import __version__
from .errors import HandshakeFailed, PermissionDenied
from .redact import SECRETS

#: How much of a refusal's body goes into the error message, in characters.
REFUSAL_BODY_BYTES = 200
#: How much of a refusal's body is read, in bytes: enough to redact a secret echoed across the cut.
REFUSAL_READ_BYTES = 4096
#: How long a refusal's body may take once its status line is in, in seconds: the status decides the outcome,
#: the body only adds detail to the message (issue 9 #17).
REFUSAL_BODY_WAIT = 0.5
#: The most digits the frame-limit header may hold; a longer value is malformed (int() refuses > 4300 digits).
MAX_LIMIT_DIGITS = 20

#: Codex's response header giving the largest frame it accepts, in bytes.
MAX_UNFRAGMENTED_HEADER = "x-codex-websocket-max-unfragmented-message-bytes"


@dataclass(frozen=True)
class HandshakeResponse:
    """The server's 101 answer.

    ``headers`` are (lower-case name, value) pairs as received; ``trailing_data`` is what followed the
    response in the same reads and belongs to the WebSocket connection.
    """

    headers: tuple[tuple[str, str], ...]
    trailing_data: bytes

    def header(self, name: str) -> str | None:
        """The first value of header *name* (case-insensitive), or None."""
        wanted = name.lower()
        return next((value for key, value in self.headers if key == wanted), None)

    @property
    def max_unfragmented_message_bytes(self) -> int | None:
        """Codex's advertised frame size limit in bytes, or None when absent or malformed."""
        value = self.header(MAX_UNFRAGMENTED_HEADER)
        if value is None:
            return None
        value = value.strip(" \t")  # RFC 9110 §5.5 optional whitespace
        # ASCII digits only: str.isdigit() also takes "²" and other digits int() refuses (issue 9 #6).
        if not (0 < len(value) <= MAX_LIMIT_DIGITS and value.isascii() and value.isdigit()):
            return None
        return int(value)


class ClientHandshake:
    """One client opening handshake.

    :param host: the ``Host`` header value (``localhost`` for a Unix socket).
    :param target: the request target, e.g. ``/``.
    :param extra_headers: more (name, value) pairs, e.g. ``Authorization``; never an ``Origin`` header,
        which Codex's TCP listener answers with 403.
    :param redact: applied to the refusal's reason and body before they are shortened for the message, so that
        an echoed secret never survives in part (default: :data:`proxy.redact.SECRETS`).
    """

    def __init__(
        self,
        host: str = "localhost",
        target: str = "/",
        extra_headers: Sequence[tuple[str, str]] = (),
        redact: Callable[[str], str] = SECRETS,
    ) -> None:
        self._redact = redact
        self._conn = h11.Connection(h11.CLIENT)
        self._key = generate_nonce()
        self._host = host
        self._target = target
        self._extra_headers = tuple(extra_headers)
        self._refusal: h11.Response | None = None
        self._refusal_body = bytearray()

    def request_bytes(self) -> bytes:
        """The HTTP/1.1 Upgrade request to send, in bytes."""
        headers = [
            ("Host", self._host),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", self._key.decode("ascii")),
            ("Sec-WebSocket-Version", "13"),
            ("User-Agent", f"codex-appserver-proxy/{__version__}"),
            *self._extra_headers,
        ]
        request = h11.Request(method="GET", target=self._target, headers=headers)
        return self._conn.send(request) + self._conn.send(h11.EndOfMessage())

    def receive_data(self, data: bytes) -> HandshakeResponse | None:
        """Feed response bytes (``b""`` at EOF); return the response once complete, else None.

        :raises HandshakeFailed: not HTTP, a refusal (non-101), a bad ``Sec-WebSocket-Accept``, EOF early.
        :raises PermissionDenied: the refusal was 401 or 403.
        """
        if not data and self._refusal is None:
            self._eof()
        try:
            self._conn.receive_data(data)
            while True:
                event = self._conn.next_event()
                if event is h11.NEED_DATA:
                    if not data:
                        self._eof()
                    return None
                if isinstance(event, h11.InformationalResponse):
                    if event.status_code == 101:
                        return self._switched(event)
                    continue  # 1xx other than 101 precede the real answer (RFC 9110 §15.2)
                if isinstance(event, h11.Response):
                    self._refusal = event
                elif isinstance(event, h11.Data):
                    self._refusal_body += event.data
                    if len(self._refusal_body) >= REFUSAL_READ_BYTES:
                        self._refused()
                elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                    self._refused()
        except h11.RemoteProtocolError as exc:
            raise HandshakeFailed(f"the server did not answer with HTTP ({exc})") from None

    @property
    def refusal_pending(self) -> bool:
        """True once a refusal's status line has arrived: its outcome is known, only its body may still come.

        The caller waits at most :data:`REFUSAL_BODY_WAIT` for the rest, then calls :meth:`refuse`.
        """
        return self._refusal is not None

    def refuse(self) -> NoReturn:
        """Give up on the rest of the refusal's body and raise its error now.

        :raises PermissionDenied: 401 or 403. :raises HandshakeFailed: any other status.
        """
        self._refused()

    def _eof(self) -> NoReturn:
        if self._refusal is not None:
            self._refused()
        raise HandshakeFailed("the server closed the connection during the opening handshake")

    def _switched(self, event: h11.InformationalResponse) -> HandshakeResponse:
        headers = tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in event.headers)
        response = HandshakeResponse(headers=headers, trailing_data=self._conn.trailing_data[0])
        upgrade = (response.header("upgrade") or "").lower()
        connection = {token.strip().lower() for token in (response.header("connection") or "").split(",")}
        if upgrade != "websocket" or "upgrade" not in connection:
            raise HandshakeFailed("the server's 101 response does not upgrade to websocket")
        if response.header("sec-websocket-accept") != generate_accept_token(self._key).decode("ascii"):
            raise HandshakeFailed("the server's Sec-WebSocket-Accept does not match our key (RFC 6455 §4.1)")
        if response.header("sec-websocket-extensions") or response.header("sec-websocket-protocol"):
            raise HandshakeFailed("the server chose an extension or subprotocol that was not offered")
        return response

    def _refused(self) -> NoReturn:
        assert self._refusal is not None
        status = self._refusal.status_code
        reason = " ".join(self._redact(self._refusal.reason.decode("latin-1")).split())[:REFUSAL_BODY_BYTES]
        body = bytes(self._refusal_body[:REFUSAL_READ_BYTES]).decode("utf-8", "replace")
        words = self._redact(body).split()
        if len(self._refusal_body) >= REFUSAL_READ_BYTES and words:
            words.pop()  # cut at the read bound: the last word may be the start of a secret, unrecognisable
        body = " ".join(words)[:REFUSAL_BODY_BYTES]
        detail = f"{status} {reason}".strip() + (f": {body}" if body else "")
        if status in (401, 403):
            raise PermissionDenied(f"the server refused the opening handshake with {detail}")
        raise HandshakeFailed(f"the server refused the opening handshake with {detail}")
