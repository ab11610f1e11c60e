"""The settings of one proxy run, as parsed by the CLI."""

from __future__ import annotations

from dataclasses import dataclass

from .target import Target

MiB = 1024 * 1024

#: Codex's largest accepted frame when its 101 response does not say, in bytes.
DEFAULT_MAX_FRAME_BYTES = 16 * MiB


@dataclass(frozen=True)
class ProxyOptions:
    """What ``codex-appserver proxy`` was asked to do. Times are in seconds, sizes in bytes."""

    target: Target
    drain_timeout: float = 10.0
    connect_timeout: float = 10.0
    close_timeout: float = 2.0
    max_message_size: int = 64 * MiB
    max_incoming_size: int = 256 * MiB
    ping_interval: float = 30.0
    ping_timeout: float = 20.0
    strict: bool = False
    overload_retries: int = 8
    spool_limit: int = 1024 * MiB
    spool_dir: str | None = None
    until: frozenset[str] = frozenset()
    wait: float = 0.0
    start: bool = False
    codex_bin: str = "codex"
    trace: str | None = None
    raw: bool = False
    #: --reconnect: survive a lost upstream connection (:mod:`proxy.continuity`, :mod:`proxy.reconnect`).
    reconnect: bool = False
    reconnect_timeout: float = 60.0
    notify_reconnect: bool = False
