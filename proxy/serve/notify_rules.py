"""Sans-I/O rules of ``serve --notify-command``: which app-server messages are events, the JSON the command gets
on stdin, and the rate limit.

Events (only for a resumable session with no client attached; the caller checks that):

- ``approval``: a server request whose method ends in ``/requestApproval`` (``item/commandExecution/…``,
  ``item/fileChange/…``, ``item/permissions/…``);
- ``input``: the server request ``item/tool/requestUserInput``;
- ``turn-completed``: the notification ``turn/completed``.

The command's stdin is one line of JSON: ``{"event":E,"sessionId":S,"method":M,"threadId":…,"turnId":…,
"message":{…the app-server's message as received…}}`` (``threadId``/``turnId`` null when the message has none).

Rate limit: at most :data:`MAX_RUNS` runs within any :data:`RATE_WINDOW` seconds for the whole bridge, and at
most :data:`MAX_RUNNING` commands at once; an event past either limit runs nothing (a log line says so). Each
event runs the command at most once: there is no retry.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass
from typing import Any

from ..upstream import Text

#: Runs allowed within :data:`RATE_WINDOW` seconds.
MAX_RUNS = 10
RATE_WINDOW = 60.0
#: Commands running at once, at most.
MAX_RUNNING = 4
#: Seconds a command may run before it is killed (with its process group).
NOTIFY_TIMEOUT = 10.0

APPROVAL = "approval"
INPUT = "input"
TURN_COMPLETED = "turn-completed"
#: Cheap substring test before any JSON parsing: a message that holds none of these is no event.
_MARKERS = ("requestApproval", "requestUserInput", "turn/completed")
_BYTE_MARKERS = tuple(marker.encode() for marker in _MARKERS)


@dataclass(frozen=True)
class NotifyEvent:
    """One event: its kind (``CODEX_APPSERVER_EVENT``) and the bytes for the command's stdin."""

    kind: str
    stdin: bytes


def _kind(message: dict[str, Any]) -> str | None:
    method = message.get("method")
    if not isinstance(method, str):
        return None
    is_request = "id" in message
    if is_request and method.endswith("/requestApproval"):
        return APPROVAL
    if is_request and method == "item/tool/requestUserInput":
        return INPUT
    if not is_request and method == "turn/completed":
        return TURN_COMPLETED
    return None


def event_of(text: Text, session_id: str) -> NotifyEvent | None:
    """The event a message from the app-server (a str, or its UTF-8 bytes) is, or None."""
    if isinstance(text, str):
        if not any(marker in text for marker in _MARKERS):
            return None
    elif not any(marker in text for marker in _BYTE_MARKERS):
        return None
    try:
        message = json.loads(text)
    except ValueError:
        return None
    if not isinstance(message, dict):
        return None
    kind = _kind(message)
    if kind is None:
        return None
    params = message.get("params")
    params = params if isinstance(params, dict) else {}
    turn = params.get("turn")
    turn_id = params.get("turnId", turn.get("id") if isinstance(turn, dict) else None)
    payload = {
        "event": kind,
        "sessionId": session_id,
        "method": message["method"],
        "threadId": params.get("threadId"),
        "turnId": turn_id,
        "message": message,
    }
    return NotifyEvent(kind, json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode() + b"\n")


class RunLimiter:
    """At most *max_runs* starts within *window* seconds, and *max_running* at once.

    Times are seconds on any monotonic clock, passed in by the caller.
    """

    def __init__(self, max_runs: int = MAX_RUNS, window: float = RATE_WINDOW, max_running: int = MAX_RUNNING) -> None:
        self._starts: deque[float] = deque()
        self._max_runs = max_runs
        self._window = window
        self._max_running = max_running
        self.running = 0

    def start(self, now: float) -> str | None:
        """Record a start and return None when allowed now; else say why not (for the log line)."""
        while self._starts and self._starts[0] <= now - self._window:
            self._starts.popleft()
        if self.running >= self._max_running:
            return f"{self._max_running} notify commands are still running"
        if len(self._starts) >= self._max_runs:
            return f"{self._max_runs} notify commands ran within {self._window:g} s"
        self._starts.append(now)
        self.running += 1
        return None

    def finished(self) -> None:
        self.running -= 1
