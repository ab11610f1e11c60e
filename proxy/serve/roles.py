"""Sans-I/O role rule: what a device with role ``observer`` may send to the app-server.

``full`` is unrestricted. ``observer`` may read and follow: the requests in :data:`OBSERVER_ALLOWLIST` (with the
parameters each allows), the ``initialized`` notification, and nothing else. A refused request is answered by
the bridge with a JSON-RPC error (:data:`ROLE_FORBIDDEN`, a message naming the role) and never reaches the
app-server; a refused notification, a response (an observer's answer to an approval request), or anything that
is not a JSON object is dropped. The README's roles table is this table.

Messages are JSON-RPC 2.0 as Codex speaks it, without the ``"jsonrpc"`` member (measured on 0.169.0); the error
answer follows the same style.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass


class Role(enum.Enum):
    """A device's role."""

    FULL = "full"
    OBSERVER = "observer"


@dataclass(frozen=True)
class Identity:
    """Who a client is: a device (its name and token digest, hex), or, with *device* None, a holder of the shared
    ``--token-file``/``--token-env`` token or a client of an open loopback bridge (role ``full``)."""

    role: Role
    device: str | None = None
    sha256: str | None = None

    @property
    def label(self) -> str:
        """Names the client in log lines: ``device NAME`` or ``shared token``; never a token."""
        return f"device {self.device}" if self.device is not None else "shared token"


#: The shared token's (and an open bridge's) identity.
FULL_ACCESS = Identity(Role.FULL)

#: JSON-RPC error code of a request the role does not allow: in the -32000..-32099 range JSON-RPC 2.0 §5.1
#: leaves to the implementation, and unused by Codex (it uses -32600 and -32001).
ROLE_FORBIDDEN = -32040
#: Close code and reason for a revoked device's connections (RFC 6455 §7.4.1: policy violation).
REVOKED_CODE = 1008
REVOKED_REASON = "device revoked"

#: ANY: every parameter is allowed.
ANY: frozenset[str] | None = None

#: Requests an observer may send -> the parameter names allowed (None: any). ``thread/resume`` takes settings
#: overrides (model, approval policy, sandbox, cwd...) that would change the live thread for everyone, so an
#: observer may only name the thread.
OBSERVER_ALLOWLIST: dict[str, frozenset[str] | None] = {
    "initialize": ANY,
    "thread/list": ANY,
    "thread/loaded/list": ANY,
    "thread/read": ANY,
    "thread/turns/list": ANY,
    "thread/items/list": ANY,
    "thread/resume": frozenset({"threadId", "excludeTurns"}),
    "thread/unsubscribe": ANY,
    "model/list": ANY,
}
#: Notifications an observer may send.
OBSERVER_NOTIFICATIONS = frozenset({"initialized"})


@dataclass(frozen=True)
class Forward:
    """Send the message to the app-server unchanged."""


@dataclass(frozen=True)
class Refuse:
    """Do not send it; answer the client with :attr:`reply` (a JSON-RPC error response, one text message)."""

    reply: str
    method: str


@dataclass(frozen=True)
class Drop:
    """Do not send it and answer nothing (a notification, a response, or not JSON-RPC); :attr:`what` is for the
    log line (a method name or a kind, never a payload)."""

    what: str


Verdict = Forward | Refuse | Drop


def _refuse(request_id: object, method: str, role: Role, detail: str = "") -> Refuse:
    message = f"{method} is not allowed for role {role.value}{detail}"
    error = {"id": request_id, "error": {"code": ROLE_FORBIDDEN, "message": message, "data": {"role": role.value}}}
    return Refuse(json.dumps(error, separators=(",", ":")), method)


def check(role: Role, text: str | bytes | bytearray) -> Verdict:
    """What to do with *text*, one message (str, or its UTF-8 bytes) from a client with *role*."""
    if role is Role.FULL:
        return Forward()
    try:
        message = json.loads(text)
    except ValueError:
        return Drop("a message that is not JSON")
    if not isinstance(message, dict):
        return Drop("a message that is not a JSON object")
    method = message.get("method")
    has_id = "id" in message
    if not isinstance(method, str):
        return Drop("a response to a server request" if has_id else "a message without a method")
    if not has_id:
        return Forward() if method in OBSERVER_NOTIFICATIONS else Drop(f"notification {method}")
    request_id = message["id"]
    if method not in OBSERVER_ALLOWLIST:
        return _refuse(request_id, method, role)
    allowed = OBSERVER_ALLOWLIST[method]
    params = message.get("params")
    if allowed is not None and isinstance(params, dict):
        extra = sorted(set(params) - allowed)
        if extra:
            return _refuse(request_id, method, role, f" with {', '.join(extra)} (only {', '.join(sorted(allowed))})")
    return Forward()
