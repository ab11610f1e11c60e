"""Sans-I/O: the client's requests in flight on one connection to the app-server (for ``--reconnect``).

A request is in flight from when it is sent until its response arrives. JSON-RPC ids are matched as
:func:`proxy.session.id_key` does (``1`` and ``"1"`` differ); a client may reuse an id while an earlier request
with it is in flight, so each id holds a queue, answered first in, first out. When the connection is lost,
:meth:`InFlight.take_all` hands over what is left, in the order sent, for the error responses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from .session import IdKey, id_key

#: A message's text: str, or its UTF-8 bytes (the relay passes bytes on its hot paths).
Text = str | bytes | bytearray


@dataclass(frozen=True)
class Request:
    """A request the client sent, as much as the bookkeeping needs of it."""

    raw_id: object
    method: str
    order: int
    #: ``params.threadId``, when it has one.
    thread_id: object = None
    #: The whole request, for an ``initialize`` (to be replayed once it succeeded).
    initialize: dict[str, object] | None = None


class InFlight:
    """The requests sent on the current connection that have no response yet."""

    def __init__(self) -> None:
        self._queues: dict[IdKey, list[Request]] = {}
        self._order = 0

    def __len__(self) -> int:
        return sum(len(queue) for queue in self._queues.values())

    def sent(self, message: dict[str, object], method: str) -> None:
        """The request *message* (with *method* and an ``id``) went out; a null or odd id is not tracked."""
        key = id_key(message.get("id"))
        if key is None:
            return
        params = message.get("params")
        thread_id = params.get("threadId") if isinstance(params, dict) else None
        self._order += 1
        initialize = message if method == "initialize" else None
        request = Request(message["id"], method, self._order, thread_id, initialize)
        self._queues.setdefault(key, []).append(request)

    def answered(self, raw_id: object) -> Request | None:
        """A response with *raw_id* arrived: the request it answers (the oldest with that id), or None."""
        key = id_key(raw_id)
        if key is None or key not in self._queues:
            return None
        queue = self._queues[key]
        request = queue.pop(0)
        if not queue:
            del self._queues[key]
        return request

    def take_all(self) -> list[Request]:
        """Every request still in flight, in the order sent; none is in flight afterwards."""
        requests = sorted((r for queue in self._queues.values() for r in queue), key=lambda r: r.order)
        self._queues.clear()
        return requests


def parse_object(text: Text) -> dict[str, object] | None:
    """*text* as a JSON object, or None when it is not one."""
    try:
        message = json.loads(text)
    except ValueError:
        return None
    return message if isinstance(message, dict) else None


def compact(message: dict[str, object]) -> str:
    """*message* as compact JSON text, non-ASCII kept raw (as Codex writes it)."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)
