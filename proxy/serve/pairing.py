"""Sans-I/O pairing: the ``codex-appserver-pair:`` URI, join codes, and the rules of ``POST /pair``.

The pairing URI (what the QR code holds; the README specifies it)::

    codex-appserver-pair:v1?url=<URL>&token=<TOKEN>&sha256=<FINGERPRINT>&name=<NAME>

- ``v1``: the format version (the URI's path);
- ``url``: the bridge's WebSocket URL (``wss://HOST:PORT/ws``), percent-encoded (RFC 3986 §2.1, every
  reserved character encoded);
- ``token``: the device token, 43 base64url characters (unreserved: never encoded);
- ``sha256``: the SHA-256 of the bridge certificate's DER bytes, 64 lowercase hex digits, for pinning; left out
  when the URL is ``ws://``;
- ``name``: the device's name (letters, digits, ``.``, ``_``, ``-``).
The parameters come in this order, each once.

A join code is 8 characters from Crockford's base32 alphabet (no I, L, O, U), shown as ``XXXX-XXXX`` (40 bits;
single use, it expires, every use is confirmed on the terminal, and tries are rate-limited). A client sends it
in any case, with or without the dash or spaces. The bridge keeps only its SHA-256 digest.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote

from .auth import RateLimiter

SCHEME = "codex-appserver-pair"
VERSION = "v1"
CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_LENGTH = 8
#: Pairing requests per client address per minute, at most.
PAIR_ATTEMPTS_PER_MINUTE = 10
#: The largest ``POST /pair`` body read, in bytes.
MAX_PAIR_BODY = 1024


@dataclass(frozen=True)
class PairingInfo:
    """What a pairing URI carries."""

    url: str
    token: str
    sha256: str | None
    name: str


def pairing_uri(info: PairingInfo) -> str:
    """The ``codex-appserver-pair:`` URI of *info* (format in the module docstring)."""
    parts = [f"url={quote(info.url, safe='')}", f"token={quote(info.token, safe='')}"]
    if info.sha256 is not None:
        parts.append(f"sha256={info.sha256}")
    parts.append(f"name={quote(info.name, safe='')}")
    return f"{SCHEME}:{VERSION}?{'&'.join(parts)}"


def parse_pairing_uri(uri: str) -> PairingInfo:
    """The inverse of :func:`pairing_uri`.

    :raises ValueError: not a version-1 pairing URI.
    """
    prefix = f"{SCHEME}:{VERSION}?"
    if not uri.startswith(prefix):
        raise ValueError(f"not a {SCHEME}:{VERSION} URI")
    fields = parse_qsl(uri[len(prefix) :], keep_blank_values=True, strict_parsing=True)
    names = [key for key, _ in fields]
    if len(set(names)) != len(names) or not {"url", "token", "name"} <= set(names):
        raise ValueError("url, token and name are required, each once")
    values = dict(fields)
    digest = values.get("sha256")
    if digest is not None and (len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest)):
        raise ValueError("sha256 is not 64 lowercase hex digits")
    return PairingInfo(values["url"], values["token"], digest, values["name"])


def new_join_code() -> str:
    """A fresh join code, ``XXXX-XXXX``."""
    raw = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
    return f"{raw[:4]}-{raw[4:]}"


def normalize_code(code: str) -> str:
    """*code* as compared: upper case, no dashes or spaces; Crockford's look-alikes read as digits."""
    cleaned = code.upper().replace("-", "").replace(" ", "")
    return cleaned.translate(str.maketrans("OIL", "011"))


def code_digest(code: str) -> bytes:
    """The SHA-256 of the normalized *code*: what the bridge keeps."""
    return hashlib.sha256(normalize_code(code).encode("utf-8", "replace")).digest()


def parse_pair_body(body: bytes) -> str | None:
    """The code in a ``POST /pair`` body ``{"code": "..."}``, or None when the body is not that."""
    try:
        document = json.loads(body)
    except ValueError:
        return None
    if not isinstance(document, dict) or not isinstance(document.get("code"), str):
        return None
    code: str = document["code"]
    return code if 0 < len(code) <= 64 else None


@dataclass
class JoinOffer:
    """One join code waiting for its client: the device it will create and when it expires (monotonic seconds)."""

    name: str
    role: str
    digest: bytes
    expires: float
    used: bool = False


class JoinBook:
    """The join codes a bridge accepts now, and the pairing rate limit.

    :meth:`take` finds and spends the offer for a code in constant time per offer: a code is used at most once,
    whatever the answer.
    """

    def __init__(self) -> None:
        self.offers: list[JoinOffer] = []
        self.limiter = RateLimiter(max_failures=PAIR_ATTEMPTS_PER_MINUTE, window=60.0)

    def offer(self, offer: JoinOffer) -> None:
        self.offers.append(offer)

    def withdraw(self, offer: JoinOffer) -> None:
        if offer in self.offers:
            self.offers.remove(offer)

    def limited(self, address: str, now: float) -> bool:
        """Count a pairing request from *address*; True when it is over the limit (429)."""
        if self.limiter.limited(address, now):
            return True
        self.limiter.failed(address, now)
        return False

    def retry_after(self, address: str, now: float) -> int:
        return self.limiter.retry_after(address, now)

    def take(self, code: str, now: float) -> JoinOffer | None:
        """The live, unused offer for *code*, now spent; None for an unknown, used or expired code (410)."""
        digest = code_digest(code)
        found = None
        for offer in self.offers:
            if hmac.compare_digest(offer.digest, digest):
                found = offer
        if found is None or found.used or found.expires <= now:
            return None
        found.used = True
        return found
