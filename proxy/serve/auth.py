"""Sans-I/O authentication rules of the bridge: the capability token, where a client may put it, the rate limiter.

A client proves it holds the token with ``Authorization: Bearer <token>`` (RFC 6750 §2.1), or, for browsers
whose WebSocket API cannot set headers, with a ``Sec-WebSocket-Protocol`` entry ``codex-appserver.bearer.<token>``
(RFC 6455 §4.1: a subprotocol name is an RFC 7230 token, which base64url tokens are). That entry is never echoed:
the 101 selects only a protocol from :data:`KNOWN_SUBPROTOCOLS` the client offered alongside, or none.

Tokens are compared in constant time on their SHA-256 digests (:func:`hmac.compare_digest`), so neither the
token's length nor a prefix leaks through timing. Nothing here logs, and no message holds a token.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import OrderedDict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

#: Shortest accepted token, in bytes (Codex's own rule for WebSocket secrets).
MIN_TOKEN_BYTES = 32
#: Prefix of the subprotocol entry that carries a token.
BEARER_SUBPROTOCOL_PREFIX = "codex-appserver.bearer."
#: Subprotocols the bridge speaks and may select in its 101: plain JSON-RPC messages, as without one.
#: A browser that offers a bearer entry must offer one of these too (Chrome fails a handshake whose
#: 101 selects none of the protocols it offered).
KNOWN_SUBPROTOCOLS: tuple[str, ...] = ("codex-appserver.v1",)

#: Failed attempts from one address within :data:`FAILURE_WINDOW` seconds before it gets 429.
MAX_FAILURES = 10
#: The rate limiter's window, in seconds.
FAILURE_WINDOW = 60.0
#: Addresses the rate limiter remembers at most (the oldest is forgotten first), so it cannot grow without bound.
MAX_TRACKED_ADDRESSES = 4096


class TokenTooShort(ValueError):
    """The token has fewer than :data:`MIN_TOKEN_BYTES` bytes."""


class Token:
    """The bridge's capability token, kept only as its SHA-256 digest.

    :param secret: the token's bytes (already trimmed).
    :raises TokenTooShort: under :data:`MIN_TOKEN_BYTES` bytes.
    """

    def __init__(self, secret: bytes) -> None:
        if len(secret) < MIN_TOKEN_BYTES:
            raise TokenTooShort(f"{len(secret)} bytes, under the {MIN_TOKEN_BYTES} required")
        self._digest = hashlib.sha256(secret).digest()

    def matches(self, candidate: bytes) -> bool:
        """True when *candidate* is the token; constant time whatever the candidate's length or content."""
        return hmac.compare_digest(hashlib.sha256(candidate).digest(), self._digest)

    def __repr__(self) -> str:
        return "Token(<hidden>)"


def split_header_list(values: Iterable[bytes]) -> list[str]:
    """The entries of a comma-separated header list (RFC 9110 §5.6.1) over all its fields, trimmed, empty
    entries dropped. Bytes that are not ASCII make the entry unusable, so it is dropped too."""
    entries: list[str] = []
    for value in values:
        for part in value.split(b","):
            part = part.strip()
            if part and part.isascii():
                entries.append(part.decode("ascii"))
    return entries


def bearer_from_authorization(values: Sequence[bytes]) -> bytes | None:
    """The token of a single ``Authorization: Bearer <token>`` header (scheme case-insensitive), else None."""
    if len(values) != 1:
        return None
    scheme, _, credentials = values[0].strip().partition(b" ")
    if scheme.lower() != b"bearer":
        return None
    credentials = credentials.strip()
    return credentials or None


@dataclass(frozen=True)
class Offer:
    """What a client offered in ``Sec-WebSocket-Protocol``: tokens from bearer entries, and the other entries."""

    tokens: tuple[bytes, ...]
    protocols: tuple[str, ...]

    def select(self, known: Sequence[str] = KNOWN_SUBPROTOCOLS) -> str | None:
        """The protocol for the 101: the first offered entry the bridge speaks (never a bearer entry), or None."""
        return next((protocol for protocol in self.protocols if protocol in known), None)


def parse_subprotocols(values: Iterable[bytes]) -> Offer:
    """Split the ``Sec-WebSocket-Protocol`` entries into bearer tokens and ordinary protocols."""
    tokens: list[bytes] = []
    protocols: list[str] = []
    for entry in split_header_list(values):
        if entry.startswith(BEARER_SUBPROTOCOL_PREFIX):
            secret = entry[len(BEARER_SUBPROTOCOL_PREFIX) :]
            if secret:
                tokens.append(secret.encode("ascii"))
        else:
            protocols.append(entry)
    return Offer(tuple(tokens), tuple(protocols))


def authorized(token: Token | None, authorization: Sequence[bytes], offer: Offer) -> bool:
    """True when no token is required, or the request carries it in the header or in one subprotocol entry.

    Every candidate is compared, so the time taken does not say which one matched.
    """
    if token is None:
        return True
    candidates = list(offer.tokens)
    bearer = bearer_from_authorization(authorization)
    if bearer is not None:
        candidates.append(bearer)
    results = [token.matches(candidate) for candidate in candidates]
    return any(results)


class RateLimiter:
    """Failed authentication attempts per client address: after :data:`MAX_FAILURES` within
    :data:`FAILURE_WINDOW` seconds, the address is limited until the oldest of them is a window old.

    Times are seconds on any monotonic clock, passed in by the caller. Refused (limited) attempts are not
    counted, so the limit lifts at the end of the minute even for a client that keeps trying.
    """

    def __init__(
        self,
        max_failures: int = MAX_FAILURES,
        window: float = FAILURE_WINDOW,
        max_addresses: int = MAX_TRACKED_ADDRESSES,
    ) -> None:
        self._max = max_failures
        self._window = window
        self._max_addresses = max_addresses
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, address: str, now: float) -> deque[float] | None:
        times = self._failures.get(address)
        if times is None:
            return None
        while times and times[0] <= now - self._window:
            times.popleft()
        if not times:
            del self._failures[address]
            return None
        return times

    def limited(self, address: str, now: float) -> bool:
        """True when *address* must get 429 now."""
        times = self._recent(address, now)
        return times is not None and len(times) >= self._max

    def retry_after(self, address: str, now: float) -> int:
        """Whole seconds until *address* may try again (0 when it may now), for ``Retry-After``."""
        times = self._recent(address, now)
        if times is None or len(times) < self._max:
            return 0
        return max(1, int(times[0] + self._window - now + 0.999))

    def failed(self, address: str, now: float) -> None:
        """Record a failed attempt from *address*."""
        times = self._recent(address, now)
        if times is None:
            if len(self._failures) >= self._max_addresses:
                self._failures.popitem(last=False)
            times = self._failures[address] = deque(maxlen=self._max)
        else:
            self._failures.move_to_end(address)
        times.append(now)
