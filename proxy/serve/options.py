"""The settings of one ``codex-appserver serve`` run, as parsed by the CLI."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path

from ..options import MiB
from ..target import Target
from .auth import Token


@dataclass(frozen=True)
class ServeOptions:
    """What ``serve`` was asked to do. Times are in seconds, sizes in bytes."""

    host: str
    port: int
    target: Target
    token: Token | None = None
    tls: ssl.SSLContext | None = None
    allowed_origins: frozenset[str] = field(default_factory=frozenset)
    max_clients: int = 32
    client_queue_bytes: int = 64 * MiB
    ping_interval: float = 30.0
    ping_timeout: float = 20.0
    wait: float = 0.0
    start: bool = False
    codex_bin: str = "codex"
    #: Resumable sessions (issue 12): how long one waits for its client, and how much it spools meanwhile.
    resume_window: float = 300.0
    resume_spool_bytes: int = 1024 * MiB
    #: ``--notify-command`` as argv (empty: none).
    notify_command: tuple[str, ...] = ()
    #: A client's TLS handshake and request head must complete within this long.
    header_timeout: float = 10.0
    #: Connecting to the app-server and its opening handshake, per client.
    connect_timeout: float = 10.0
    #: The largest message a client may send (Codex's own cap).
    max_client_message: int = 64 * MiB
    #: The largest message accepted from the app-server.
    max_incoming_size: int = 256 * MiB
    #: The closing handshake with the app-server.
    close_timeout: float = 2.0
    #: ``$CODEX_HOME/codex-appserver``: device tokens, state file, control socket (None: no devices).
    state_dir: Path | None = None
    #: SHA-256 (hex) of the TLS certificate, announced for pinning.
    fingerprint: str | None = None
    #: --reconnect: each client's upstream connection survives a restart of the app-server (proxy.reconnect).
    reconnect: bool = False
    reconnect_timeout: float = 60.0
    notify_reconnect: bool = False
