"""codex-appserver-proxy: JSONL on stdio to the Codex app-server's WebSocket control socket.

Each stdin line becomes one WebSocket text message and each text message one stdout line, both directions at
once. The sans-I/O parts (:mod:`proxy.handshake`, :mod:`proxy.lines`, :mod:`proxy.session`) are importable on
their own, as in h11 and wsproto.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import EXIT_STATUSES, ExitStatus, ProxyError
from .handshake import ClientHandshake, HandshakeResponse
from .lines import LineSplitter, message_line
from .options import ProxyOptions
from .session import Session

__all__ = [
    "EXIT_STATUSES",
    "ClientHandshake",
    "ExitStatus",
    "HandshakeResponse",
    "LineSplitter",
    "ProxyError",
    "ProxyOptions",
    "Session",
    "__version__",
    "message_line",
]
