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
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit

from .errors import PermissionDenied, UsageError

#: Linux ``sizeof(sun_path)`` minus the terminating NUL, in bytes.
MAX_UNIX_PATH_BYTES = 107

SOCKET_RELATIVE_PATH = Path("app-server-control") / "app-server-control.sock"
DEFAULT_PORTS = {"ws": 80, "wss": 443}

#: RFC 3986 §3.3/§3.4 characters a path or query holds as they are; "%" only starts a valid escape (below).
URI_SAFE = "!$&'()*+,;=:@/?~-._"
#: A "%" that does not start a two-digit escape: encoded as %25, as a browser does.
_LONE_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
#: RFC 3986 §3.2.2 reg-name characters (an IDN host is IDNA-encoded to these first).
_REG_NAME = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=%]+")


def _encode_resource(text: str) -> str:
    """Percent-encode *text* (a path or query) as RFC 3986 requires: UTF-8, then %XX for every octet outside
    pchar. Valid escapes are kept as they are."""
    return quote(_LONE_PERCENT.sub("%25", text), safe=URI_SAFE + "%")


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
    The path and query are percent-encoded where RFC 3986 requires it (a space, ``é``), so any text the user
    means goes on the request line (issue 9 #8).

    :raises UsageError: not a ws/wss URL, a control character, port 0, a host that is not a DNS name or IP
        literal, credentials in the URL, a missing or empty token variable, a token
        with characters outside RFC 6750's b64token (visible ASCII), ``--cacert`` with ``ws://`` (exit status 2).
    :raises PermissionDenied: a token for a non-loopback host over plain ``ws://`` (77): nothing is sent.
    """
    # urlsplit() silently drops tabs and line breaks; control characters cannot go into a request line at all.
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in url):
        raise UsageError("--remote holds a control character; remove it (percent-encode it if it belongs there)")
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
    if port == 0:
        raise UsageError("--remote has port 0, which no server listens on; give the app-server's port")
    host = _checked_host(parts.hostname)
    if token is not None and parts.scheme == "ws" and not is_loopback(host):
        raise PermissionDenied(
            f"refusing to send a bearer token to {host} over plain ws://, where anyone on the path can read it; "
            "use wss:// or an SSH tunnel to a loopback port (ssh -L)"
        )
    resource = _encode_resource(parts.path or "/") + (f"?{_encode_resource(parts.query)}" if parts.query else "")
    return RemoteTarget(parts.scheme, host, port or DEFAULT_PORTS[parts.scheme], resource, token, cacert)


def _checked_host(host: str) -> str:
    """*host* as it goes on the wire: an IP literal, or a name (IDNA-encoded when not ASCII).

    :raises UsageError: a name with characters no host name can hold (a space, say).
    """
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    try:
        ascii_host = host if host.isascii() else host.encode("idna").decode("ascii")
    except UnicodeError:
        ascii_host = ""
    if not _REG_NAME.fullmatch(ascii_host):
        raise UsageError("--remote has a host that is neither a DNS name nor an IP address; check the URL")
    return ascii_host
