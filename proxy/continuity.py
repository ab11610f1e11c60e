"""Sans-I/O session continuity for ``--reconnect``: what to remember, replay, hide, hold and answer when the
connection to the app-server is lost and made again.

The trio side feeds every message of one client's session through a :class:`Continuity` and does what the
returned :class:`Step` says; it only reconnects (:func:`reconnect_delay` paces the attempts) and moves bytes.

- **Remembered**: the client's ``initialize`` request (once it was answered with a result), its ``initialized``
  notification, and the ids of the threads it started, resumed or forked (``result.thread.id`` of the responses to
  ``thread/start``, ``thread/resume``, ``thread/fork``; forgotten again after ``thread/unsubscribe``,
  ``thread/archive`` or ``thread/delete``).
- **Lost**: each request that had no response when the connection went gets a JSON-RPC error response with its
  id, code :data:`CONNECTION_LOST` and :data:`CONNECTION_LOST_MESSAGE`. It is never sent again: a lost
  ``turn/start`` acknowledgement must not start a second turn.
- **Held**: messages from the client while there is no restored session are kept, in order, and sent once it is
  restored. The trio side stops reading the client past :data:`HOLD_LIMIT_BYTES` (backpressure), so nothing is
  dropped and memory stays bounded.
- **Replayed**: on a new connection, ``initialize`` (the client's own params), then, after its result,
  ``initialized`` and one ``thread/resume`` (``excludeTurns``: the client has the history) per thread. Their ids
  are strings :data:`REPLAY_ID_PREFIX` + a counter, and their responses are never delivered. They cannot be
  confused with the client's own requests, whatever ids the client uses (strings with that prefix included): the
  client has nothing in flight on the new connection until the replay is over, because its requests of the old
  connection were answered with errors and its new ones are held until then. A replayed ``thread/resume``
  answered ``-32600 "thread … is closing"`` is sent again after a backoff, as Codex's own TUI does; another error
  drops that thread (measured on 0.169.0: a thread without a turn has no rollout, and ``thread/resume`` answers
  ``-32600 no rollout found``).
- **Server requests** (approvals...) re-sent after ``thread/resume`` reach the client exactly once: see
  :mod:`proxy.pending`.
- **Notifications** ``proxy/reconnecting``, ``proxy/reconnected`` and ``proxy/reconnectFailed`` (see
  :meth:`Continuity.lost`, :meth:`Continuity.connected`, :meth:`Continuity.gave_up`), only when asked for
  (``--notify-reconnect``), so strict clients see nothing unknown by default.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from .inflight import InFlight, Text, compact, parse_object
from .pending import Deliver, Forward, ServerRequests, with_id

#: JSON-RPC error code of the response a request gets when the connection was lost before its response came
#: (in the range JSON-RPC 2.0 §5.1 leaves to implementations; Codex uses -32001 and the reserved codes).
CONNECTION_LOST = -32099
CONNECTION_LOST_MESSAGE = "the connection to the app-server was lost; the request may or may not have run"
#: Ids of the proxy's own replayed requests: this prefix and a counter (``codex-appserver-proxy:replay:1``).
REPLAY_ID_PREFIX = "codex-appserver-proxy:replay:"
#: The client is not read while this many bytes of its messages are held during a reconnect (backpressure).
HOLD_LIMIT_BYTES = 16 * 1024 * 1024
#: Backoff between reconnect attempts: 100 ms doubling, at most 5 s, each drawn from its upper half, in seconds.
RECONNECT_FIRST = 0.1
RECONNECT_CAP = 5.0
#: What belongs to one connection on the app-server and does not survive a reconnect.
NOT_RESTORED = ("command/exec processes", "fs/watch watches")

#: Requests whose response names a thread the client then follows (``result.thread.id``).
THREAD_METHODS = frozenset({"thread/start", "thread/resume", "thread/fork"})
#: Requests after whose success the thread in ``params.threadId`` is no longer resumed.
FORGET_METHODS = frozenset({"thread/unsubscribe", "thread/archive", "thread/delete"})
#: Codex's answer to ``thread/resume`` for a thread still being unloaded; retried (Codex's TUI does the same).
INVALID_REQUEST = -32600


def reconnect_delay(attempt: int, rng: random.Random) -> float:
    """Seconds to wait before reconnect attempt *attempt* + 1 (*attempt* = 1, 2, ...): exponential from
    :data:`RECONNECT_FIRST`, capped at :data:`RECONNECT_CAP`, drawn from the upper half ("equal jitter")."""
    base = min(RECONNECT_CAP, RECONNECT_FIRST * 2 ** (attempt - 1))
    return rng.uniform(base / 2, base)


class Phase(enum.Enum):
    CONNECTED = "connected"  # the session is restored (or was never lost): messages pass
    DISCONNECTED = "disconnected"  # no connection: client messages are held
    REPLAYING = "replaying"  # a new connection, the replay in progress: client messages are still held


@dataclass
class Step:
    """What the trio side does after one event, in this order."""

    #: Texts to send to the app-server, in order: the proxy's own (replay, a client's answer sent again) and, in
    #: the step that handles a client message, that message.
    to_server: list[Text] = field(default_factory=list)
    #: Texts to deliver to the client, in order.
    to_client: list[Text] = field(default_factory=list)
    #: The client's held messages, to send after :attr:`to_server`, in order.
    held: list[Text] = field(default_factory=list)
    #: Call :meth:`Continuity.retry_resumes` after this many seconds if the connection is still the same.
    retry_after: float | None = None
    #: The new connection refused the replay: the session cannot be restored; why, in words.
    failed: str | None = None
    #: The session was restored by this step: the client may be read again.
    restored: bool = False


def _may_matter(text: Text) -> bool:
    """False when *text* cannot be a response, a server request or ``serverRequest/resolved``: it has no ``"id"``
    key (nor an escape that could spell one) and is not that notification."""
    if isinstance(text, str):
        return '"id"' in text or "\\u" in text or "serverRequest/resolved" in text
    return b'"id"' in text or b"\\u" in text or b"serverRequest/resolved" in text


def _error_text(message: dict[str, object]) -> str:
    error = message.get("error")
    if isinstance(error, dict):
        return f"{error.get('code')} {error.get('message')}"
    return "no result"


def _is_closing(message: dict[str, object]) -> bool:
    error = message.get("error")
    return (
        isinstance(error, dict)
        and error.get("code") == INVALID_REQUEST
        and isinstance(error.get("message"), str)
        and "is closing" in error["message"]
    )


class Continuity:
    """The continuity bookkeeping of one client session.

    :param notify: send ``proxy/*`` notifications to the client (``--notify-reconnect``).
    :param clock: seconds from any fixed point (the trio side passes ``trio.current_time``).
    :param rng: randomness for the ``thread/resume`` retry backoff.
    """

    def __init__(self, clock: Callable[[], float], notify: bool = False, rng: random.Random | None = None) -> None:
        self._clock = clock
        self._notify = notify
        self._rng = rng or random.Random()
        self.phase = Phase.CONNECTED
        #: Counts connections: 0 for the first, then one more for each reconnect.
        self.generation = 0
        self._requests = ServerRequests()
        self._in_flight = InFlight()
        self._initialize: dict[str, object] | None = None  # once answered with a result
        self._initialized: Text | None = None
        self._threads: dict[str, None] = {}  # an ordered set
        self._held: list[Text] = []
        self.held_bytes = 0
        # The replay of the current outage.
        self._replay_ids: dict[str, str | None] = {}  # id -> thread id (None: the initialize)
        self._counter = 0
        self._retrying: list[str] = []
        self._retries = 0
        self._resumed: list[str] = []
        self._dropped: list[dict[str, str]] = []
        self._lost_at = 0.0
        self._attempts = 0

    # -- what it knows ---------------------------------------------------------------------------------

    @property
    def threads(self) -> tuple[str, ...]:
        """The thread ids a reconnect resumes, in the order the client came to them."""
        return tuple(self._threads)

    @property
    def in_flight(self) -> int:
        """Client requests sent on the current connection and not answered yet."""
        return len(self._in_flight)

    @property
    def holding(self) -> bool:
        """True while client messages are held (no restored session)."""
        return self.phase is not Phase.CONNECTED

    # -- the client's messages -------------------------------------------------------------------------

    def client_message(self, text: Text) -> Step:
        """A message from the client: sent now, or held until the session is restored."""
        if self.phase is not Phase.CONNECTED:
            self._held.append(text)
            self.held_bytes += len(text.encode("utf-8")) if isinstance(text, str) else len(text)
            return Step()
        return Step(to_server=self._outgoing(text))

    def _outgoing(self, text: Text) -> list[Text]:
        message = parse_object(text)
        if message is None:
            return [text]
        method = message.get("method")
        if isinstance(method, str):
            if "id" in message:
                self._in_flight.sent(message, method)
            elif method == "initialized":
                self._initialized = bytes(text) if isinstance(text, bytearray) else text  # kept: never changed
            return [text]
        if "id" in message and ("result" in message or "error" in message):
            answer = self._requests.from_client(message, text, self.generation)
            return [answer.text] if isinstance(answer, Forward) else []
        return [text]

    # -- the server's messages -------------------------------------------------------------------------

    def server_message(self, text: Text) -> Step:
        """A message from the app-server: delivered to the client, or kept from it (replay responses, re-sent
        requests the client has seen)."""
        if not _may_matter(text):
            return Step(to_client=[text])  # a notification with nothing to note: skip the parse on the hot path
        message = parse_object(text)
        if message is None:
            return Step(to_client=[text])
        method = message.get("method")
        if isinstance(method, str):
            if "id" in message:
                action = self._requests.from_server(message, self.generation)
                if isinstance(action, Deliver):
                    return Step(to_client=[text])
                return Step(to_server=[action.answer] if action.answer is not None else [])
            if method == "serverRequest/resolved":
                params = message.get("params")
                if isinstance(params, dict):
                    self._requests.resolved(params.get("requestId"), self.generation)
            return Step(to_client=[text])
        raw_id = message.get("id")
        if isinstance(raw_id, str) and raw_id in self._replay_ids:
            return self._replay_response(raw_id, message)
        self._answered(raw_id, message)
        return Step(to_client=[text])

    def _answered(self, raw_id: object, message: dict[str, object]) -> None:
        entry = self._in_flight.answered(raw_id)
        result = message.get("result")
        if entry is None or not isinstance(result, dict):
            return
        if entry.initialize is not None:
            self._initialize = entry.initialize
        elif entry.method in THREAD_METHODS:
            thread = result.get("thread")
            thread_id = thread.get("id") if isinstance(thread, dict) else None
            if isinstance(thread_id, str):
                self._threads[thread_id] = None
        elif entry.method in FORGET_METHODS and isinstance(entry.thread_id, str):
            self._threads.pop(entry.thread_id, None)

    # -- losing and restoring the connection -----------------------------------------------------------

    def lost(self, reason: str, timeout: float) -> Step:
        """The connection to the app-server is gone (*reason*, in words); a reconnect of up to *timeout* s follows.

        Each client request in flight is answered with a :data:`CONNECTION_LOST` error, in the order sent. With
        ``notify``, a ``proxy/reconnecting`` notification comes first: ``{"reason", "timeoutMs",
        "unansweredRequests"}`` (the number of those errors).
        """
        entries = self._in_flight.take_all()
        self._replay_ids.clear()
        self._retrying.clear()
        step = Step()
        if self.phase is Phase.CONNECTED:  # a new outage (not a second loss during a replay)
            self._lost_at = self._clock()
            self._resumed = []
            self._dropped = []
            self._retries = 0
            if self._notify:
                params = {"reason": reason, "timeoutMs": round(timeout * 1000), "unansweredRequests": len(entries)}
                step.to_client.append(compact({"method": "proxy/reconnecting", "params": params}))
        self.phase = Phase.DISCONNECTED
        for entry in entries:
            error = {"code": CONNECTION_LOST, "message": CONNECTION_LOST_MESSAGE, "data": {"method": entry.method}}
            step.to_client.append(compact({"id": entry.raw_id, "error": error}))
        return step

    def connected(self, attempts: int) -> Step:
        """A new connection is open (after *attempts* attempts in this outage): start the replay."""
        self.generation += 1
        self.phase = Phase.REPLAYING
        self._attempts = attempts
        self._resumed = []
        self._dropped = []
        if self._initialize is None:
            return self._restore()  # the client had not initialized: it does so itself, from the held messages
        return Step(to_server=[with_id(self._initialize, self._replay_id(None))])

    def _replay_id(self, thread_id: str | None) -> str:
        self._counter += 1
        replay_id = f"{REPLAY_ID_PREFIX}{self._counter}"
        self._replay_ids[replay_id] = thread_id
        return replay_id

    def _resume(self, thread_id: str) -> str:
        params = {"threadId": thread_id, "excludeTurns": True}
        return compact({"method": "thread/resume", "id": self._replay_id(thread_id), "params": params})

    def _replay_response(self, replay_id: str, message: dict[str, object]) -> Step:
        thread_id = self._replay_ids.pop(replay_id)
        if thread_id is None:  # the initialize
            if not isinstance(message.get("result"), dict):
                return Step(failed=f"the app-server refused the replayed initialize ({_error_text(message)})")
            step = Step(to_server=[self._initialized] if self._initialized else [])
            step.to_server.extend(self._resume(thread) for thread in self._threads)
            if not self._threads:
                return self._restore(step)
            return step
        step = Step()
        if isinstance(message.get("result"), dict):
            self._resumed.append(thread_id)
        elif _is_closing(message):
            self._retrying.append(thread_id)
            self._retries += 1
            step.retry_after = reconnect_delay(self._retries, self._rng)
        else:
            self._threads.pop(thread_id, None)
            self._dropped.append({"threadId": thread_id, "error": _error_text(message)})
        if self._replay_ids or self._retrying:
            return step
        return self._restore(step)

    def retry_resumes(self) -> Step:
        """Send the ``thread/resume`` requests answered "is closing" again (see :attr:`Step.retry_after`)."""
        if self.phase is not Phase.REPLAYING:
            return Step()
        retrying, self._retrying = self._retrying, []
        return Step(to_server=[self._resume(thread) for thread in retrying])

    def _restore(self, step: Step | None = None) -> Step:
        """The replay is done: notify, then send the held messages in order."""
        step = step or Step()
        self.phase = Phase.CONNECTED
        step.restored = True
        if self._notify:
            params: dict[str, object] = {
                "attempts": self._attempts,
                "durationMs": round((self._clock() - self._lost_at) * 1000),
                "resumedThreads": list(self._resumed),
                "droppedThreads": list(self._dropped),
                "notRestored": list(NOT_RESTORED),
            }
            step.to_client.append(compact({"method": "proxy/reconnected", "params": params}))
        held, self._held = self._held, []
        self.held_bytes = 0
        for text in held:
            step.held.extend(self._outgoing(text))
        return step

    def gave_up(self, reason: str, attempts: int) -> Step:
        """The reconnect failed for good (*reason*, in words, after *attempts* attempts); the session ends.

        With ``notify``: a ``proxy/reconnectFailed`` notification ``{"reason", "attempts", "durationMs"}``.
        """
        self.phase = Phase.DISCONNECTED
        step = Step()
        if self._notify:
            params = {
                "reason": reason,
                "attempts": attempts,
                "durationMs": round((self._clock() - self._lost_at) * 1000),
            }
            step.to_client.append(compact({"method": "proxy/reconnectFailed", "params": params}))
        return step
