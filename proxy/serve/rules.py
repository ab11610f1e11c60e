"""Sans-I/O policy of the bridge: where it may listen, and what each HTTP request gets.

:func:`bind_refusal` is the bind policy (a non-loopback address needs a token and TLS, unless
``--allow-plain-ws`` says a TLS terminator or tunnel sits in front). :func:`admit` decides one request, in this
order: plain HTTP (``/healthz``, ``/readyz``, 426, 404); for an upgrade, the rate limiter (429), the upgrade
headers (RFC 6455 §4.2.1: 400, or 426 for another version), the Origin rule (403: cross-site WebSocket
hijacking), the token (401, the same body whether it was missing or wrong), ``--max-clients`` (503); then the
upgrade, with the subprotocol to select.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .auth import KNOWN_SUBPROTOCOLS, Offer, RateLimiter, Token, authorized, parse_subprotocols, split_header_list
from .roles import FULL_ACCESS, Identity

#: The one body of every 401: it never says whether the token was missing or wrong.
UNAUTHORIZED_BODY = b"unauthorized: send the bridge's token as a bearer token\n"
#: Paths that answer a plain GET with 426 (they upgrade); any other path without an upgrade gets 404.
WEBSOCKET_PATHS = frozenset({"/", "/ws"})


def parse_bind(value: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPV6]:PORT`` -> (host, port); port 0 picks a free port.

    :raises ValueError: with a message saying what is wrong.
    """
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        raise ValueError(f"{value!r} is not HOST:PORT (IPv6 as [::1]:9100)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} in {value!r} is not an IPv6 address") from None
    elif ":" in host:
        raise ValueError(f"{value!r}: write an IPv6 address in brackets, e.g. [::1]:9100")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{port!r} in {value!r} is not a port number (0-65535)")
    return host, int(port)


def url_host(host: str) -> str:
    """*host* as written in a URL: IPv6 addresses in brackets."""
    return f"[{host}]" if ":" in host else host


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``; any other name counts as non-loopback."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind_refusal(host: str, has_token: bool, tls: bool, allow_plain_ws: bool) -> str | None:
    """Why listening on *host* is refused (a stderr line), or None when it is allowed."""
    if is_loopback(host):
        return None
    if not has_token:
        return (
            f"--bind {host} is not a loopback address, so clients must authenticate: give a token with "
            "--token-file or --token-env (make one with 'codex-appserver serve --new-token FILE'), or add a device "
            "with 'codex-appserver serve devices add NAME'"
        )
    if not tls and not allow_plain_ws:
        return (
            f"--bind {host} is not a loopback address, so the token must not cross the network in clear: "
            "give --tls-cert and --tls-key, or --allow-plain-ws when a TLS terminator or tunnel sits in front "
            "(--tls-self-signed makes a certificate here)"
        )
    return None


@dataclass(frozen=True)
class HttpRequest:
    """A request's line and headers as received; header names in lower case, values as bytes."""

    method: bytes
    target: bytes
    headers: tuple[tuple[bytes, bytes], ...]

    def values(self, name: bytes) -> list[bytes]:
        """Every value of header *name* (lower case), in order."""
        return [value for key, value in self.headers if key == name]

    @property
    def path(self) -> str:
        """The target's path, without the query."""
        return self.target.split(b"?", 1)[0].decode("latin-1")


@dataclass(frozen=True)
class Respond:
    """Answer with *status* and a one-line *body*, then close. *outcome* goes into the connection log line."""

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()
    failed_auth: bool = False
    content_type: str = "text/plain; charset=utf-8"


@dataclass(frozen=True)
class Probe:
    """``/readyz``: answer 200 when the app-server accepts a connection right now, else 503."""


@dataclass(frozen=True)
class Upgrade:
    """Accept the WebSocket upgrade, selecting *subprotocol* (None: no ``Sec-WebSocket-Protocol`` in the 101)."""

    subprotocol: str | None
    key: bytes
    identity: Identity = FULL_ACCESS


@dataclass
class Gate:
    """What :func:`admit` needs to know about the bridge."""

    token: Token | None
    allowed_origins: frozenset[str] = frozenset()
    max_clients: int = 32
    known_subprotocols: Sequence[str] = KNOWN_SUBPROTOCOLS
    limiter: RateLimiter = field(default_factory=RateLimiter)
    #: Who presents these credentials (``Authorization`` values, subprotocol offer), None when nobody: device
    #: tokens (:mod:`.devices`). None here: only :attr:`token` counts.
    identify: Callable[[Sequence[bytes], Offer], Identity | None] | None = None

    def identity(self, authorization: Sequence[bytes], offer: Offer) -> Identity | None:
        """The client's identity, or None for a 401."""
        if self.identify is not None:
            return self.identify(authorization, offer)
        return FULL_ACCESS if authorized(self.token, authorization, offer) else None


def _is_upgrade(request: HttpRequest) -> bool:
    return any(entry.lower() == "websocket" for entry in split_header_list(request.values(b"upgrade")))


def _plain(request: HttpRequest) -> Respond | Probe:
    path = request.path
    if request.method in (b"GET", b"HEAD"):
        if path == "/healthz":
            return Respond(200, b"ok\n")
        if path == "/readyz":
            return Probe()
    if path in WEBSOCKET_PATHS or path.startswith("/ws/"):
        return Respond(426, b"upgrade required: this is a WebSocket endpoint\n", (("Upgrade", "websocket"),))
    return Respond(404, b"not found\n")


def _bad_upgrade(request: HttpRequest) -> Respond | None:
    """RFC 6455 §4.2.1 checks of the upgrade headers."""
    if request.method != b"GET":
        return Respond(400, b"bad request: a WebSocket upgrade must be a GET\n")
    connection = {entry.lower() for entry in split_header_list(request.values(b"connection"))}
    if "upgrade" not in connection:
        return Respond(400, b"bad request: Connection: Upgrade is missing\n")
    versions = request.values(b"sec-websocket-version")
    if [v.strip() for v in versions] != [b"13"]:
        return Respond(426, b"upgrade required: WebSocket version 13\n", (("Sec-WebSocket-Version", "13"),))
    keys = request.values(b"sec-websocket-key")
    if len(keys) != 1 or len(keys[0].strip()) != 24:  # base64 of 16 bytes
        return Respond(400, b"bad request: Sec-WebSocket-Key is missing or malformed\n")
    return None


def admit(request: HttpRequest, gate: Gate, address: str, now: float, clients: int) -> Respond | Probe | Upgrade:
    """Decide what *request* from *address* gets, with *clients* WebSocket clients connected now.

    A 401 is recorded in the rate limiter as a failure (:attr:`Respond.failed_auth`).
    """
    if not _is_upgrade(request):
        return _plain(request)
    if gate.limiter.limited(address, now):
        wait = gate.limiter.retry_after(address, now)
        return Respond(429, b"too many failed attempts; try again later\n", (("Retry-After", str(wait)),))
    bad = _bad_upgrade(request)
    if bad is not None:
        return bad
    origins = request.values(b"origin")
    if origins and (len(origins) != 1 or origins[0].decode("latin-1") not in gate.allowed_origins):
        return Respond(403, b"forbidden: this Origin is not allowed (see --allow-origin)\n")
    offer = parse_subprotocols(request.values(b"sec-websocket-protocol"))
    identity = gate.identity(request.values(b"authorization"), offer)
    if identity is None:
        gate.limiter.failed(address, now)
        return Respond(401, UNAUTHORIZED_BODY, (("WWW-Authenticate", "Bearer"),), failed_auth=True)
    if clients >= gate.max_clients:
        return Respond(503, b"too many clients; try again later\n", (("Retry-After", "5"),))
    return Upgrade(offer.select(gate.known_subprotocols), request.values(b"sec-websocket-key")[0].strip(), identity)
