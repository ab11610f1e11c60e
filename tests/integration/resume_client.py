"""A `websockets` client playing the phone for ``serve``'s lossless resume (subprotocol
``codex-appserver.resume.v1``), and an app-server stand-in that talks on its own.

:class:`Phone` keeps what a native client keeps: the session id and resume token from ``bridge/session``, the
messages it received (counted from 1, the bridge's own messages apart) and the messages it sent. It can vanish
without a close frame (:meth:`Phone.cut`: SO_LINGER 0, so the bridge sees a TCP reset) and resume on a new
connection (:meth:`Phone.resume`).
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Subprotocol

from .bridge_process import BridgeProcess
from .websockets_peer import PeerLog

RESUME = "codex-appserver.resume.v1"
JsonObject = dict[str, Any]
TIMEOUT = 60.0


def compact(message: JsonObject) -> str:
    return json.dumps(message, separators=(",", ":"))


class Phone:
    """A resumable client of the bridge at *url*."""

    def __init__(self, url: str, headers: list[tuple[str, str]] | None = None, max_queue: int | None = 16) -> None:
        self.url = url
        self.max_queue = max_queue
        self.headers = headers or []
        self.received: list[str] = []  # counted messages, in order
        self.bridge: list[JsonObject] = []  # the bridge's own messages on the current connection
        self.sent = 0
        self.session_id = ""
        self.token = ""
        self.ws = self._connect()
        first = json.loads(self.ws.recv(timeout=TIMEOUT))
        assert first["method"] == "bridge/session", first
        self.bridge.append(first)
        self.session_id = first["params"]["sessionId"]
        self.token = first["params"]["resumeToken"]

    def _connect(self) -> ClientConnection:
        ws = connect(
            self.url,
            subprotocols=[Subprotocol(RESUME)],
            additional_headers=self.headers,
            open_timeout=TIMEOUT,
            close_timeout=10,
            max_size=None,
            max_queue=self.max_queue,
            legacy=True,
        )
        assert ws.subprotocol == RESUME
        return ws

    def send(self, message: JsonObject | str) -> None:
        self.ws.send(message if isinstance(message, str) else compact(message))
        self.sent += 1

    def recv(self, timeout: float = TIMEOUT) -> JsonObject:
        """The next counted message (parsed), kept in :attr:`received`."""
        text = self.ws.recv(timeout=timeout)
        assert isinstance(text, str)
        self.received.append(text)
        message = json.loads(text)
        assert not str(message.get("method", "")).startswith("bridge/"), message
        return message  # type: ignore[no-any-return]

    def recv_until(self, done: Callable[[JsonObject], bool], timeout: float = TIMEOUT) -> list[JsonObject]:
        """Counted messages up to and including the first for which *done* is true."""
        deadline = time.monotonic() + timeout
        messages = []
        while True:
            message = self.recv(max(0.01, deadline - time.monotonic()))
            messages.append(message)
            if done(message):
                return messages

    def cut(self) -> None:
        """Vanish without a close frame: the bridge sees a TCP reset."""
        self.ws.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.ws.close_socket()

    def resume(
        self, received: int | None = None, token: str | None = None, session_id: str | None = None
    ) -> JsonObject:
        """Reconnect and send ``bridge/resume``; return the bridge's answer (result or error).

        The new connection's own ``bridge/session`` is in :attr:`bridge`; after an error the phone carries on as
        that new session.
        """
        self.ws = self._connect()
        announced = json.loads(self.ws.recv(timeout=TIMEOUT))
        assert announced["method"] == "bridge/session", announced
        self.bridge = [announced]
        count = len(self.received) if received is None else received
        del self.received[count:]
        self.ws.send(
            compact(
                {
                    "method": "bridge/resume",
                    "id": "resume",
                    "params": {
                        "sessionId": self.session_id if session_id is None else session_id,
                        "resumeToken": self.token if token is None else token,
                        "received": count,
                    },
                }
            )
        )
        answer = json.loads(self.ws.recv(timeout=TIMEOUT))
        assert answer["id"] == "resume", answer
        self.bridge.append(answer)
        if "error" in answer:
            self.session_id = announced["params"]["sessionId"]
            self.token = announced["params"]["resumeToken"]
            self.received = []
            self.sent = 0
        return answer  # type: ignore[no-any-return]

    def close_code(self, timeout: float = TIMEOUT) -> tuple[int | None, str | None]:
        """Read (keeping counted messages) until the bridge closes; its close frame (code, reason)."""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                self.recv(max(0.01, deadline - time.monotonic()))
        except ConnectionClosed:
            pass
        received = self.ws.protocol.close_rcvd
        return (None, None) if received is None else (int(received.code), received.reason)

    def close(self) -> None:
        self.ws.close()


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Poll *condition* every 20 ms; AssertionError naming *what* after *timeout* seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)


def phone(bridge: BridgeProcess, headers: list[tuple[str, str]] | None = None, max_queue: int | None = 16) -> Phone:
    """A phone whose `websockets` client stops reading the socket while *max_queue* messages wait for it."""
    return Phone(bridge.ws_url(), headers, max_queue)


# -- an app-server stand-in that sends messages of its own ---------------------------------------------------


def tick(index: int, pad: int = 0) -> str:
    return compact({"method": "tick", "params": {"i": index, "pad": "x" * pad}})


async def chatty(connection: ServerConnection, log: PeerLog) -> None:
    """Requests get an empty result, after these notifications when the method says so:

    - ``burst`` (params ``n``, ``pad``, ``from``): ``n`` ``tick`` notifications with ``i`` = from, from+1, ...;
    - ``later`` (params ``delay``, ``messages``): the response at once, then after ``delay`` seconds each text
      of ``messages`` (while the client may be away).
    """
    async for message in connection:
        assert isinstance(message, str)
        log.received(message)
        parsed = json.loads(message)
        params = parsed.get("params") or {}
        if parsed.get("method") == "burst":
            start = params.get("from", 1)
            for index in range(start, start + params["n"]):
                await connection.send(tick(index, params.get("pad", 0)))
        if "id" in parsed and "method" in parsed:
            await connection.send(compact({"id": parsed["id"], "result": {}}))
        if parsed.get("method") == "later":
            await asyncio.sleep(params["delay"])
            for text in params["messages"]:
                await connection.send(text)
