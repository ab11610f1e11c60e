"""What a ``serve`` client endpoint (:class:`~proxy.serve.client.WebSocketEndpoint`) talks to: a
:class:`RelayPort` (a :class:`~proxy.relay.Relay`, or a resumable connection's :class:`~proxy.serve.port.Port`)
and, through it, an :class:`UpstreamPort` (the app-server connection's side the endpoint needs). Protocols only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ..ending import Ending
from ..upstream import Text


class UpstreamPort(Protocol):
    """The side of the upstream connection an endpoint needs: is it open, backpressure, and gathering the
    messages of one read into one write (:meth:`proxy.upstream.Upstream.cork`)."""

    @property
    def open(self) -> bool: ...

    async def wait_writable(self) -> None: ...

    def cork(self) -> None: ...

    def uncork(self) -> None: ...


class RelayPort(Protocol):
    """What a :class:`~proxy.serve.client.WebSocketEndpoint` talks to: a :class:`~proxy.relay.Relay`, or a
    resumable session's port (:class:`~proxy.serve.port.Port`), which routes the client to whichever session it
    is attached to."""

    @property
    def upstream(self) -> UpstreamPort: ...

    def forward_all(self, texts: Sequence[Text]) -> None: ...

    def end(self, ending: Ending, close_code: int | None = None) -> None: ...
