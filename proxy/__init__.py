"""codex-appserver-proxy: JSONL on stdio to the Codex app-server's WebSocket control socket.

Each stdin line becomes one WebSocket text message and each text message one stdout line, both directions at
once. The sans-I/O parts (:mod:`proxy.handshake`, :mod:`proxy.lines`, :mod:`proxy.session`) are importable on
their own, as in h11 and wsproto.
"""

from __future__ import annotations

__version__ = "0.1.0"

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs milliseconds before the handlers

# The names below are imported on first use (PEP 562), not with the package: the command's entry point
# (proxy.entry) must install its signal handlers before trio, h11 and click are imported (issue 9 #10).
_EXPORTS = {
    "EXIT_STATUSES": "errors",
    "ExitStatus": "errors",
    "ProxyError": "errors",
    "ClientHandshake": "handshake",
    "HandshakeResponse": "handshake",
    "LineSplitter": "lines",
    "message_line": "lines",
    "ProxyOptions": "options",
    "Session": "session",
}

if TYPE_CHECKING:
    from typing import Any

    from .errors import EXIT_STATUSES, ExitStatus, ProxyError
    from .handshake import ClientHandshake, HandshakeResponse
    from .lines import LineSplitter, message_line
    from .options import ProxyOptions
    from .session import Session


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'proxy' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f".{module}", __name__), name)


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
