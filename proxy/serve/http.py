"""Sans-I/O server side of the opening handshake (RFC 6455 §4.2) and the bridge's plain HTTP answers, on h11.

:class:`ServerHandshake` takes request bytes and returns an :class:`~proxy.serve.rules.HttpRequest` once its
head is complete (at most ``max_header_bytes``: h11 refuses a longer head), then gives the bytes of the answer:
the 101 for an upgrade (:meth:`ServerHandshake.accept`; bytes that followed the request belong to the
WebSocket connection, :attr:`ServerHandshake.trailing_data`), or a refusal with a one-line body
(:meth:`ServerHandshake.respond`). Every refusal closes the connection.
"""

from __future__ import annotations

import h11
from wsproto.utilities import generate_accept_token

from .. import __version__
from .rules import HttpRequest, Respond

#: The longest request head accepted, in bytes (slowloris and header floods).
MAX_HEADER_BYTES = 16 * 1024
#: Bytes handed to h11 at a time.
FEED_BYTES = 256
#: The longest request body kept, in bytes (only ``POST /pair`` reads one).
MAX_BODY_BYTES = 4 * 1024

SERVER_HEADER = f"codex-appserver/{__version__}"

REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    410: "Gone",
    413: "Content Too Large",
    426: "Upgrade Required",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


class BadRequest(Exception):
    """The bytes are not an HTTP/1.1 request h11 accepts; :attr:`response` is the whole answer to send."""

    def __init__(self, status: int, response: bytes) -> None:
        super().__init__(status)
        self.status = status
        self.response = response


def _fixed(status: int, body: bytes) -> bytes:
    # h11 cannot answer a request it could not parse (no request, no response state), so these two are fixed.
    return (
        f"HTTP/1.1 {status} {REASONS[status]}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode("ascii") + body


class ServerHandshake:
    """One incoming connection's HTTP request and our answer to it."""

    def __init__(self, max_header_bytes: int = MAX_HEADER_BYTES) -> None:
        # h11 refuses an incomplete head past its limit. Fed FEED_BYTES at a time, a head over max_header_bytes is
        # incomplete past max_header_bytes - FEED_BYTES at some point, so it is always refused.
        self._conn = h11.Connection(h11.SERVER, max_incomplete_event_size=max_header_bytes - FEED_BYTES)
        self._request: HttpRequest | None = None
        self._complete = False
        self._body = bytearray()
        self._body_over = False

    def receive_data(self, data: bytes) -> HttpRequest | None:
        """Feed bytes (``b""`` at EOF); return the request once its head has arrived, else None.

        :raises BadRequest: not HTTP/1.1, a head over the limit (431), or EOF before a whole head.
        """
        # h11 checks its limit only while a head is incomplete: fed in small pieces, a head over the limit is
        # caught even when it arrives in one read (see __init__).
        for start in range(0, len(data), FEED_BYTES):
            request = self._feed(data[start : start + FEED_BYTES])
            if request is not None:
                rest = data[start + FEED_BYTES :]
                if rest:  # the client's first frames (or a body), kept; b"" would tell h11 the client hung up
                    self._conn.receive_data(rest)
                return request
        return self._feed(data) if not data else None

    def _feed(self, data: bytes) -> HttpRequest | None:
        try:
            self._conn.receive_data(data)
            while True:
                event = self._conn.next_event()
                if isinstance(event, h11.Request):
                    self._request = HttpRequest(
                        method=bytes(event.method),
                        target=bytes(event.target),
                        headers=tuple((bytes(k), bytes(v)) for k, v in event.headers),
                    )
                elif isinstance(event, h11.Data):
                    self._keep_body(bytes(event.data))
                elif isinstance(event, h11.EndOfMessage):
                    self._complete = True
                elif event is h11.NEED_DATA or event is h11.PAUSED:
                    if self._request is None and not data:
                        raise BadRequest(400, b"")  # EOF before a whole head: nothing to answer
                    return self._request
                else:  # ConnectionClosed
                    if self._request is None:
                        raise BadRequest(400, b"")
                    return self._request
        except h11.RemoteProtocolError as exc:
            if not data:
                raise BadRequest(400, b"") from None  # EOF in the middle of a head: nobody to answer
            status = 431 if exc.error_status_hint == 431 else 400
            body = b"request header fields too large\n" if status == 431 else b"bad request: not HTTP/1.1\n"
            raise BadRequest(status, _fixed(status, body)) from None

    def _keep_body(self, data: bytes) -> None:
        # Kept for receive_body (POST /pair) up to MAX_BODY_BYTES; any other request's body is never read.
        if len(self._body) + len(data) > MAX_BODY_BYTES:
            self._body_over = True
        else:
            self._body += data

    def receive_body(self, data: bytes | None = None) -> bytes | None:
        """After the head: feed *data* (``b""`` at EOF, None: only look at what came with the head); the whole
        body once its end has arrived, else None.

        :raises BadRequest: the body is over ``MAX_BODY_BYTES`` (413, answer with :meth:`respond`), the bytes are
            not HTTP/1.1, or the connection ended before the body did (400).
        """
        try:
            if data is not None and not self._complete:
                self._conn.receive_data(data)
            while not self._complete:
                event = self._conn.next_event()
                if isinstance(event, h11.Data):
                    self._keep_body(bytes(event.data))
                elif isinstance(event, h11.EndOfMessage):
                    self._complete = True
                elif event is h11.NEED_DATA or event is h11.PAUSED:
                    if data == b"":
                        raise BadRequest(400, b"")
                    break
                else:
                    raise BadRequest(400, b"")
        except h11.RemoteProtocolError:
            raise BadRequest(400, b"") from None
        if self._body_over:
            raise BadRequest(413, b"")
        return bytes(self._body) if self._complete else None

    @property
    def trailing_data(self) -> bytes:
        """Bytes received after the request, once :meth:`accept` has switched protocols."""
        return bytes(self._conn.trailing_data[0])

    def accept(self, key: bytes, subprotocol: str | None) -> bytes | None:
        """The 101 response for a checked upgrade request (RFC 6455 §4.2.2); None when the request is not over
        (it announced a body), which the caller answers with :meth:`respond` 400."""
        if not self._complete:
            return None
        headers = [
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Accept", generate_accept_token(key).decode("ascii")),
        ]
        if subprotocol is not None:
            headers.append(("Sec-WebSocket-Protocol", subprotocol))
        headers.append(("Server", SERVER_HEADER))
        try:
            return bytes(
                self._conn.send(
                    h11.InformationalResponse(status_code=101, headers=headers, reason=b"Switching Protocols")
                )
                or b""
            )
        except h11.LocalProtocolError:  # h11 saw no Connection: Upgrade it could switch on
            return None

    def respond(self, answer: Respond) -> bytes:
        """The whole answer *answer* as bytes (no body for HEAD), with ``Connection: close``."""
        head_only = self._request is not None and self._request.method == b"HEAD"
        headers = [
            ("Content-Type", answer.content_type),
            ("Content-Length", str(len(answer.body))),
            ("Connection", "close"),
            ("Cache-Control", "no-store"),
            ("Server", SERVER_HEADER),
            *answer.headers,
        ]
        if self._request is None or self._conn.our_state is not h11.SEND_RESPONSE:
            return _fixed(answer.status, answer.body)
        out = self._conn.send(h11.Response(status_code=answer.status, headers=headers, reason=REASONS[answer.status]))
        if not head_only:
            out = (out or b"") + (self._conn.send(h11.Data(data=answer.body)) or b"")
        return (out or b"") + (self._conn.send(h11.EndOfMessage()) or b"")
