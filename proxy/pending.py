"""Sans-I/O table of the server-initiated requests a client has seen, for exactly-once delivery across reconnects.

Codex sends its client requests of its own (``item/commandExecution/requestApproval``,
``item/fileChange/requestApproval``, ``item/tool/requestUserInput``...); the client answers with the same id and
the server then sends ``serverRequest/resolved`` (``params.requestId``). Measured on 0.169.0: after a dropped
connection, ``thread/resume`` on a new connection re-sends each still-pending request with its original id and
identical params; a restarted server has forgotten them, and numbers its own requests from 0 again.

So a request that arrives on a later connection is a *re-send* only when its method and params equal those of a
request the client has already seen; an equal id alone is not enough (the restarted server's first request of a
new turn has id 0 again, with another ``turnId``). A re-send is not delivered again: the client's answer, if it
gave one, is sent again (rewritten to the id the server used this time); otherwise the answer it gives later is.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass

from .inflight import Text
from .session import IdKey, id_key

#: How many seen server requests are kept (the oldest is forgotten first); Codex rarely has more than a few pending.
MAX_REMEMBERED = 1024


def signature(method: str, params: object) -> str:
    """The method and params of a request as one comparable string (keys sorted, so key order does not matter)."""
    return json.dumps([method, params], sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def with_id(message: dict[str, object], new_id: object) -> str:
    """*message* as compact JSON text with its ``id`` replaced by *new_id* (non-ASCII kept raw, as Codex writes)."""
    return json.dumps({**message, "id": new_id}, separators=(",", ":"), ensure_ascii=False)


@dataclass
class Seen:
    """A server request the client has seen, under the id the client saw (``client_id``)."""

    client_id: object
    signature: str
    #: The id the server used on the connection of ``generation`` (the same as ``client_id`` unless it re-sent the
    #: request under another id).
    upstream_id: object
    generation: int
    #: The client's answer, once it gave one, as a parsed message (kept until ``serverRequest/resolved``).
    answer: dict[str, object] | None = None


@dataclass(frozen=True)
class Deliver:
    """Pass the server's request on to the client."""


@dataclass(frozen=True)
class Suppress:
    """A re-sent request the client has seen: do not deliver it; send *answer* (if any) to the server."""

    answer: str | None


@dataclass(frozen=True)
class Forward:
    """Send the client's answer to the server as *text* now."""

    text: Text


@dataclass(frozen=True)
class Park:
    """Keep the client's answer: its request belongs to a lost connection and has not been re-sent (yet)."""


class ServerRequests:
    """The server requests a client has seen, keyed by the id it saw; at most :data:`MAX_REMEMBERED`."""

    def __init__(self, limit: int = MAX_REMEMBERED) -> None:
        self._seen: OrderedDict[IdKey, Seen] = OrderedDict()
        self._limit = limit

    def __len__(self) -> int:
        return len(self._seen)

    def from_server(self, message: dict[str, object], generation: int) -> Deliver | Suppress:
        """A request from the server on the connection of *generation*: deliver it, or suppress a re-send."""
        method = message.get("method")
        upstream_id = message.get("id")
        key = id_key(upstream_id)
        if key is None or not isinstance(method, str):
            return Deliver()
        sig = signature(method, message.get("params"))
        for seen in self._seen.values():
            if seen.signature == sig and seen.generation < generation:
                seen.upstream_id = upstream_id
                seen.generation = generation
                if seen.answer is None:
                    return Suppress(None)
                return Suppress(with_id(seen.answer, upstream_id))
        self._seen.pop(key, None)  # a restarted server reuses ids: the new request replaces the lost one
        self._seen[key] = Seen(upstream_id, sig, upstream_id, generation)
        while len(self._seen) > self._limit:
            self._seen.popitem(last=False)
        return Deliver()

    def from_client(self, message: dict[str, object], text: Text, generation: int) -> Forward | Park:
        """The client's answer *text* (a response, parsed as *message*) while the connection of *generation* is
        open: forward it (under the server's current id for that request), or park it."""
        key = id_key(message.get("id"))
        seen = self._seen.get(key) if key is not None else None
        if seen is None:
            return Forward(text)
        seen.answer = message
        if seen.generation < generation:
            return Park()  # never send it to a server that may have given the same id to another request
        if id_key(seen.upstream_id) == key:
            return Forward(text)
        return Forward(with_id(message, seen.upstream_id))

    def resolved(self, request_id: object, generation: int) -> None:
        """``serverRequest/resolved`` for *request_id* (the server's id) arrived on the connection of *generation*."""
        key = id_key(request_id)
        for client_key, seen in list(self._seen.items()):
            if seen.generation == generation and id_key(seen.upstream_id) == key:
                del self._seen[client_key]
