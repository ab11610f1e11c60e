"""Sans-I/O JSON-RPC 2.0 bookkeeping for one proxy session.

Codex speaks JSON-RPC 2.0 without the ``"jsonrpc"`` field. A *request* has ``method`` and ``id``; a
*notification* has ``method`` and no ``id``; a *response* has ``id`` and ``result`` or ``error`` and no
``method``. The session validates stdin lines, remembers the ids of requests sent, crosses them off when their
responses arrive, and says when the session has drained after stdin EOF.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass

IdKey = tuple[str, object]


@dataclass(frozen=True)
class BadLine:
    """A stdin line that was not sent; ``reason`` completes "line N is ..."."""

    number: int
    reason: str


def id_key(value: object) -> IdKey | None:
    """A hashable key for a JSON-RPC id that keeps ``1`` and ``"1"`` apart; None for null or non-ids."""
    if isinstance(value, str):
        return ("s", value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return ("n", value)
    return None


class Session:
    """Requests in flight and the drain rule (stdin EOF and every forwarded request answered)."""

    def __init__(self) -> None:
        self._outstanding: Counter[IdKey] = Counter()
        self._stdin_closed = False

    @property
    def outstanding(self) -> int:
        """How many forwarded requests still await their response."""
        return sum(self._outstanding.values())

    @property
    def stdin_closed(self) -> bool:
        return self._stdin_closed

    @property
    def drained(self) -> bool:
        """True once stdin reached EOF and every forwarded request has its response."""
        return self._stdin_closed and not self._outstanding

    def close_stdin(self) -> None:
        """Record stdin EOF: no more requests will be sent."""
        self._stdin_closed = True

    def outgoing(self, number: int, line: bytes) -> str | BadLine:
        """Check stdin line *number*; return its text to send, or why it is not sent.

        A line must be UTF-8 and exactly one JSON value: Codex drops anything else without a reply.
        """
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            return BadLine(number, f"not valid UTF-8 (byte {exc.start + 1})")
        try:
            message = json.loads(text)
        except ValueError as exc:
            reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
            column = f" at column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
            return BadLine(number, f"not valid JSON ({reason}{column})")
        if isinstance(message, dict) and "method" in message:
            key = id_key(message.get("id"))
            if key is not None:
                self._outstanding[key] += 1
        return text

    def incoming(self, text: str) -> None:
        """Look at a message from the server; a response crosses its request off."""
        if not self._outstanding or ('"id"' not in text and "\\u" not in text):
            return  # cannot be a response we wait for: skip the parse on the hot path
        try:
            message = json.loads(text)
        except ValueError:
            return
        if not isinstance(message, dict) or "method" in message:
            return
        key = id_key(message.get("id"))
        if key is not None and self._outstanding[key]:
            self._outstanding[key] -= 1
            if not self._outstanding[key]:
                del self._outstanding[key]
