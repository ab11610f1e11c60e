"""Which app-server to connect to: the local control socket, or a remote ``ws://``/``wss://`` URL.

Codex keeps its control socket at ``$CODEX_HOME/app-server-control/app-server-control.sock`` with
``CODEX_HOME`` defaulting to ``~/.codex`` (Codex's own rule). That path is usually a symlink into
``/tmp/codex-daemon-<uid>/``; we connect to the resolved path, which also keeps deep ``CODEX_HOME`` folders
under the 107-byte ``sun_path`` limit of AF_UNIX.

Remote app-servers listen with ``codex app-server --listen ws://IP:PORT``, optionally behind a bearer token.
Like Codex's own ``--remote``, a token is sent over plain ``ws://`` only to a loopback host.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from .errors import PermissionDenied, UsageError

#: Linux ``sizeof(sun_path)`` minus the terminating NUL, in bytes.
MAX_UNIX_PATH_BYTES = 107

SOCKET_RELATIVE_PATH = Path("app-server-control") / "app-server-control.sock"
DEFAULT_PORTS = {"ws": 80, "wss": 443}


def codex_home(env: Mapping[str, str]) -> Path:
    """``$CODEX_HOME`` with ``~`` expanded, or ``~/.codex`` when unset or empty."""
    value = env.get("CODEX_HOME") or "~/.codex"
    return Path(os.path.expanduser(value))


def default_socket_path(env: Mapping[str, str]) -> Path:
    """The control socket Codex creates: ``$CODEX_HOME/app-server-control/app-server-control.sock``."""
    return codex_home(env) / SOCKET_RELATIVE_PATH


def socket_path(sock: str | None, env: Mapping[str, str], cwd: Path) -> Path:
    """The socket to use: ``--sock`` (``~`` expanded, relative to *cwd*) or the default one.

    The result is absolute but not resolved, so that messages name the path the user knows.
    """
    path = Path(os.path.expanduser(sock)) if sock else default_socket_path(env)
    return path if path.is_absolute() else cwd / path


def connect_path(path: Path) -> str:
    """The path to hand to ``connect(2)``: *path* with symlinks resolved when that is shorter.

    A dangling or missing path is returned as given, so ``connect`` reports ENOENT for it.
    """
    resolved = os.path.realpath(path)
    return resolved if len(os.fsencode(resolved)) <= len(os.fsencode(path)) else str(path)


@dataclass(frozen=True)
class UnixTarget:
    """The local control socket."""

    path: Path

    def __str__(self) -> str:
        return str(self.path)


@dataclass(frozen=True)
class RemoteTarget:
    """A ``ws://`` or ``wss://`` app-server. ``token`` never shows in ``repr`` or ``str``."""

    scheme: str
    host: str
    port: int
    resource: str  # the request target: path and query, e.g. "/" or "/rpc?x=1"
    token: str | None = field(default=None, repr=False)
    cacert: str | None = None

    @property
    def tls(self) -> bool:
        return self.scheme == "wss"

    @property
    def host_header(self) -> str:
        """``Host`` (RFC 9110 §7.2): host and port, an IPv6 literal in brackets."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.scheme}://{self.host_header}{self.resource}"


Target = UnixTarget | RemoteTarget


def is_loopback(host: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ::1: the hosts a token may reach over plain ``ws://``."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def remote_target(url: str, token_env: str | None, env: Mapping[str, str], cacert: str | None = None) -> RemoteTarget:
    """Parse ``--remote URL`` and apply the token rules.

    :param token_env: the variable holding the bearer token (``--remote-auth-token-env``), or None.
    :raises UsageError: not a ws/wss URL, credentials in the URL, a missing or empty token variable, a token
        with characters outside RFC 6750's b64token (visible ASCII), ``--cacert`` with ``ws://`` (exit status 2).
    :raises PermissionDenied: a token for a non-loopback host over plain ``ws://`` (77): nothing is sent.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UsageError(f"--remote is not a valid URL ({exc}); use ws://HOST:PORT or wss://HOST:PORT") from None
    # The URL is not echoed in these messages: a user may have put a token in it.
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise UsageError("--remote is not a ws:// or wss:// URL with a host; use ws://HOST:PORT[/PATH]")
    if parts.username is not None or parts.password is not None:
        raise UsageError(
            "--remote must not carry credentials; put the token in a variable named by --remote-auth-token-env"
        )
    if cacert is not None and parts.scheme != "wss":
        raise UsageError("--cacert applies to wss:// only")
    token = None
    if token_env is not None:
        token = env.get(token_env, "").strip()  # as Codex trims its token file: `$(cat F)` of a CRLF file works
        if not token:
            raise UsageError(f"the token variable {token_env} (--remote-auth-token-env) is unset or empty; export it")
        if not all(0x21 <= ord(char) <= 0x7E for char in token):
            # RFC 6750 §2.1 b64token; the value is never echoed.
            raise UsageError(
                f"the token in {token_env} has a character a bearer token cannot hold (space, control or non-ASCII); "
                "check how the variable was set"
            )
    host = parts.hostname
    if token is not None and parts.scheme == "ws" and not is_loopback(host):
        raise PermissionDenied(
            f"refusing to send a bearer token to {host} over plain ws://, where anyone on the path can read it; "
            "use wss:// or an SSH tunnel to a loopback port (ssh -L)"
        )
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return RemoteTarget(parts.scheme, host, port or DEFAULT_PORTS[parts.scheme], resource, token, cacert)
