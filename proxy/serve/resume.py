"""Sans-I/O rules of lossless resume (subprotocol ``codex-appserver.resume.v1``): the bridge's own messages, the
``bridge/resume`` request, the session table, and the error codes a refused resume gets.

The protocol, as the README specifies it:

- a client opts in by offering the subprotocol :data:`RESUME_SUBPROTOCOL`; the bridge selects it in its 101;
- the bridge's first message is ``{"method":"bridge/session","params":{"sessionId":S,"resumeToken":T}}``;
  the app-server's messages that follow are counted from 1 (the bridge's own messages are not counted);
- a client whose connection dropped reconnects (same credentials, subprotocol offered) and sends as its first
  message ``{"method":"bridge/resume","id":X,"params":{"sessionId":S,"resumeToken":T,"received":N}}``; the
  answer is ``{"id":X,"result":{"received":M}}`` (M: how many of the client's own messages the bridge relayed
  to the app-server), then every message after N, in order, once, then the live stream;
- a refusal is ``{"id":X,"error":{"code":C,"message":...}}`` with one of :class:`ResumeCode`; the connection
  then simply goes on as the new session its ``bridge/session`` announced.

The resume token is a fresh 256-bit secret per session (:func:`secrets.token_urlsafe`), kept only as its SHA-256
digest and compared with :func:`hmac.compare_digest`. Nothing here logs, and no message text holds a token
except the ``bridge/session`` notification itself.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import secrets
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from ..upstream import Text

#: The subprotocol a client offers to opt in.
RESUME_SUBPROTOCOL = "codex-appserver.resume.v1"
SESSION_METHOD = "bridge/session"
RESUME_METHOD = "bridge/resume"
#: Bytes of randomness in a resume token (256 bits) and in a session id (128 bits).
TOKEN_BYTES = 32
SESSION_ID_BYTES = 16
#: Sessions that ended and are remembered, so that a late resume hears "ended" rather than "unknown".
MAX_ENDED = 4096

#: The client's credentials as far as resuming goes: a session is resumed only with the credentials that
#: created it. The bridge has one shared token (or none on loopback), so every client that passed the token
#: check has the same identity; per-device credentials give each device its own.
ANONYMOUS = "anonymous"
SHARED_TOKEN = "token"


class ResumeCode(enum.IntEnum):
    """JSON-RPC error codes of a refused ``bridge/resume`` (the server-error range, JSON-RPC 2.0 §5.1)."""

    #: No session has this id (never, or forgotten long ago).
    UNKNOWN_SESSION = -32010
    #: The session ended: its resume window passed, it kept more than --resume-spool-bytes, its client
    #: closed it, or its app-server connection ended.
    SESSION_ENDED = -32011
    #: The resume token is not this session's.
    WRONG_TOKEN = -32012
    #: The session was created with other credentials.
    OTHER_CREDENTIALS = -32013
    #: The messages after ``received`` are no longer held, or ``received`` is more than the bridge sent.
    CANNOT_REPLAY = -32014
    #: ``params`` are missing or of the wrong type.
    INVALID_PARAMS = -32602


def compact(message: dict[str, Any]) -> str:
    """*message* as JSON text without spaces, as Codex writes its messages (no ``jsonrpc`` field)."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)


def session_notification(session_id: str, token: str) -> str:
    return compact({"method": SESSION_METHOD, "params": {"sessionId": session_id, "resumeToken": token}})


def resume_result(request_id: int | str, forwarded: int) -> str:
    return compact({"id": request_id, "result": {"received": forwarded}})


def error_response(request_id: int | str | None, code: int, message: str) -> str:
    return compact({"id": request_id, "error": {"code": code, "message": message}})


@dataclass(frozen=True)
class ResumeRequest:
    """A well-formed ``bridge/resume`` request."""

    id: int | str
    session_id: str
    token: str = field(repr=False)
    received: int


@dataclass(frozen=True)
class Refusal:
    """A refused resume: the error response to send."""

    code: ResumeCode
    message: str

    def response(self, request_id: int | str | None) -> str:
        return error_response(request_id, int(self.code), self.message)


def parse_resume(text: Text) -> ResumeRequest | tuple[int | str | None, Refusal] | None:
    """The client's first message (a str, or its UTF-8 bytes): a :class:`ResumeRequest`, (its id, a
    :class:`Refusal`) when it is a ``bridge/resume`` with bad params, or None when it is anything else (relayed
    as usual)."""
    if isinstance(text, str):
        if RESUME_METHOD not in text:
            return None
    elif RESUME_METHOD.encode() not in text:
        return None
    try:
        message = json.loads(text)
    except ValueError:
        return None
    if not isinstance(message, dict) or message.get("method") != RESUME_METHOD:
        return None
    request_id = message.get("id")
    if not isinstance(request_id, (int, str)) or isinstance(request_id, bool):
        return None, Refusal(ResumeCode.INVALID_PARAMS, "bridge/resume is a request: it needs an id")
    params = message.get("params")
    if isinstance(params, dict):
        session_id = params.get("sessionId")
        token = params.get("resumeToken")
        received = params.get("received")
        if (
            isinstance(session_id, str)
            and isinstance(token, str)
            and isinstance(received, int)
            and not isinstance(received, bool)
            and received >= 0
        ):
            return ResumeRequest(request_id, session_id, token, received)
    return request_id, Refusal(
        ResumeCode.INVALID_PARAMS,
        "bridge/resume needs params sessionId (string), resumeToken (string) and received (integer >= 0)",
    )


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


T = TypeVar("T")


@dataclass
class _Entry(Generic[T]):
    digest: bytes
    identity: str
    value: T
    detached_since: float | None = None


class SessionTable(Generic[T]):
    """The live resumable sessions (id -> token digest, creator's identity, the session object) and the
    recently ended ones (id -> why), at most *max_detached* sessions without a client at once.

    Times are seconds on any monotonic clock, passed in by the caller.
    """

    def __init__(self, max_detached: int, max_ended: int = MAX_ENDED) -> None:
        self._live: dict[str, _Entry[T]] = {}
        self._detached: OrderedDict[str, float] = OrderedDict()
        self._ended: OrderedDict[str, str] = OrderedDict()
        self._max_detached = max_detached
        self._max_ended = max_ended

    def __len__(self) -> int:
        return len(self._live)

    def create(self, identity: str, value: T) -> tuple[str, str]:
        """Register a new session; return its id and its resume token (the only time the token is seen)."""
        session_id = secrets.token_urlsafe(SESSION_ID_BYTES)
        while session_id in self._live or session_id in self._ended:  # pragma: no cover - 128 random bits
            session_id = secrets.token_urlsafe(SESSION_ID_BYTES)
        token = secrets.token_urlsafe(TOKEN_BYTES)
        self._live[session_id] = _Entry(_digest(token), identity, value)
        return session_id, token

    def check(self, request: ResumeRequest, identity: str) -> T | Refusal:
        """The session *request* may resume, or why not.

        The token is compared in constant time (on digests) whether or not the session exists, so the time
        taken does not say which check failed; the checks are: unknown, ended, token, credentials.
        """
        entry = self._live.get(request.session_id)
        expected = entry.digest if entry is not None else _digest("")
        token_ok = hmac.compare_digest(_digest(request.token), expected)
        if entry is None:
            why = self._ended.get(request.session_id)
            if why is None:
                return Refusal(ResumeCode.UNKNOWN_SESSION, "unknown session; start a new one")
            return Refusal(ResumeCode.SESSION_ENDED, f"the session ended ({why}); start a new one")
        if not token_ok:
            return Refusal(ResumeCode.WRONG_TOKEN, "wrong resume token for this session")
        if not hmac.compare_digest(entry.identity.encode(), identity.encode()):
            return Refusal(ResumeCode.OTHER_CREDENTIALS, "this session was created with other credentials")
        return entry.value

    def get(self, session_id: str) -> T | None:
        entry = self._live.get(session_id)
        return entry.value if entry is not None else None

    def detached(self, session_id: str, now: float) -> list[T]:
        """The session lost its client at *now*; return the sessions that must end to stay within
        *max_detached* (those detached longest, oldest first)."""
        entry = self._live[session_id]
        entry.detached_since = now
        self._detached[session_id] = now
        evicted: list[T] = []
        while len(self._detached) > self._max_detached:
            oldest, _ = self._detached.popitem(last=False)
            evicted.append(self._live[oldest].value)
        return evicted

    def attached(self, session_id: str) -> None:
        """A client is attached to the session again."""
        self._live[session_id].detached_since = None
        self._detached.pop(session_id, None)

    def detached_since(self, session_id: str) -> float | None:
        entry = self._live.get(session_id)
        return entry.detached_since if entry is not None else None

    def ended(self, session_id: str, why: str) -> None:
        """The session is over (*why*: a few words for the refusal message)."""
        if self._live.pop(session_id, None) is None:
            return
        self._detached.pop(session_id, None)
        self._ended[session_id] = why
        while len(self._ended) > self._max_ended:
            self._ended.popitem(last=False)
