"""``codex-appserver serve devices add|list|revoke``: the click commands of the device store.

``add`` prints the new token once (stdout), or a QR code and the pairing URI (``--qr``), or a join code that a
client trades for the token with ``POST /pair`` once this terminal confirms (``--join``: talks to the running
bridge over its control socket). ``segno`` and ``cryptography`` are imported only by ``--qr``.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ..errors import ProxyError, UsageError
from .roles import Role

if TYPE_CHECKING:
    from .pairing import PairingInfo

# The rest of the package (store, pairing, state, segno, cryptography) loads inside the commands, not when the CLI
# starts: startup time is measured.

T = TypeVar("T")
#: The URL put in a pairing URI when no bridge runs with this CODEX_HOME: the recipe's ``--bind 0.0.0.0:9100``.
DEFAULT_PORT = 9100
#: Default lifetime of a join code, in seconds.
DEFAULT_TTL = 300.0


def _fail(exc: ProxyError) -> None:
    click.echo(f"codex-appserver: {exc.message}", err=True)
    sys.exit(exc.status)


def _run(function: Callable[[], T]) -> T:
    try:
        return function()
    except ProxyError as exc:
        _fail(exc)
        raise AssertionError("unreachable") from None


def _folder() -> Path:
    from .statedir import state_dir

    return state_dir(os.environ)


DEVICES_EPILOG = """\b
Examples:
  codex-appserver serve devices add laptop                    # prints the token once
  codex-appserver serve devices add phone --qr                # QR code + codex-appserver-pair: URI
  codex-appserver serve devices add tablet --role observer --join --ttl 120
  codex-appserver serve devices list
  codex-appserver serve devices revoke phone

Devices live in $CODEX_HOME/codex-appserver/devices.json (hashed tokens, mode 0600); a running bridge sees
changes at once.

See 'man codex-appserver-serve-devices' for the full reference.
"""
SEE_MAN = "See 'man codex-appserver-serve-devices' for the full reference."


@click.group(epilog=DEVICES_EPILOG)
def devices() -> None:
    """Device tokens for the bridge: add (token, QR code or join code), list, revoke."""


@devices.command("add", epilog=SEE_MAN)
@click.argument("name")
@click.option(
    "--role",
    type=click.Choice([role.value for role in Role]),
    metavar="full|observer",
    default=Role.FULL.value,
    show_default=True,
    help="full: unrestricted; observer: read and follow only (see the roles table).",
)
@click.option("--qr", is_flag=True, help="Print a QR code and the codex-appserver-pair: URI (token, URL, fingerprint).")
@click.option(
    "--url",
    metavar="URL",
    help="The bridge URL in the pairing URI.  [default: the running bridge's, else wss://<host name>:9100/ws]",
)
@click.option(
    "--join",
    is_flag=True,
    help="Print a one-time join code for POST /pair on the running bridge; confirm the request here (y/N).",
)
@click.option(
    "--ttl",
    type=click.FloatRange(min=1, max=86400),
    default=DEFAULT_TTL,
    show_default=True,
    metavar="SECONDS",
    help="How long the --join code is valid.",
)
def add(name: str, role: str, qr: bool, url: str | None, join: bool, ttl: float) -> None:
    """Add device NAME; its 256-bit token is shown once, never stored in clear."""
    if qr and join:
        raise click.UsageError("--qr and --join cannot be combined")
    if url is not None and not qr:
        raise click.UsageError("--url needs --qr")
    if ttl != DEFAULT_TTL and not join:
        raise click.UsageError("--ttl needs --join")
    from .devices import DeviceStore, check_name
    from .pairing import PairingInfo, pairing_uri

    _run(lambda: check_name(name))
    folder = _folder()
    store = DeviceStore(folder)
    if join:
        from .joining import join as join_session

        sys.exit(_run(lambda: join_session(folder, store, name, Role(role), ttl)))
    if qr:
        info = _run(lambda: _pairing_info(folder, url, name))
    token = _run(lambda: store.add(name, Role(role)))
    if not qr:
        click.echo(token)
        click.echo(f"codex-appserver: added device {name} (role {role}); its token is above, shown once", err=True)
        return
    uri = pairing_uri(PairingInfo(info.url, token, info.sha256, name))
    click.echo(_qr_text(uri), nl=False)
    click.echo(uri)
    click.echo(f"codex-appserver: added device {name} (role {role}); scan the code or copy the URI above", err=True)


def _qr_text(uri: str) -> str:
    """*uri* as a QR code of Unicode half blocks, for a terminal."""
    import io

    import segno

    out = io.StringIO()
    segno.make(uri, error="m").terminal(out=out, compact=True, border=2)
    return out.getvalue()


def _pairing_info(folder: Path, url: str | None, name: str) -> PairingInfo:
    """The URL and fingerprint for a pairing URI (the token comes later)."""
    from .pairing import PairingInfo
    from .state import read_state

    state = read_state(folder)
    running = state.running and state.url is not None
    if url is None:
        url = state.url if running and state.url else f"wss://{socket.gethostname()}:{DEFAULT_PORT}/ws"
    if not url.startswith(("ws://", "wss://")):
        raise UsageError(f"--url {url} is not a ws:// or wss:// URL")
    digest: str | None = None
    if url.startswith("wss://"):
        if running and state.sha256:
            digest = state.sha256
        else:
            from .selfsigned import ensure

            digest = ensure(folder)[2]  # the certificate 'serve --tls-self-signed' will use
    return PairingInfo(url, "", digest, name)


@devices.command("list", epilog=SEE_MAN)
def list_devices() -> None:
    """List devices: name, role, created, last seen, connected now (never a token)."""
    from .devices import DeviceStore
    from .state import read_state

    folder = _folder()
    found = _run(lambda: DeviceStore(folder).load())
    state = read_state(folder)
    running = state.running
    rows = [("NAME", "ROLE", "CREATED", "LAST SEEN", "CONNECTED")]
    for device in found:
        presence = state.devices.get(device.name)
        connected = presence.connected if presence is not None and running else 0
        last_seen = "now" if connected else (presence.last_seen if presence and presence.last_seen else "never")
        rows.append((device.name, device.role.value, device.created, last_seen, str(connected) if connected else "no"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    if not running:
        click.echo("codex-appserver: no bridge is running with this CODEX_HOME; nobody is connected", err=True)


@devices.command("revoke", epilog=SEE_MAN)
@click.argument("name")
def revoke(name: str) -> None:
    """Revoke device NAME: a running bridge closes its connections (1008) and refuses its token (401)."""
    from .devices import DeviceStore

    folder = _folder()
    device = _run(lambda: DeviceStore(folder).revoke(name))
    told = _tell_bridge(folder, {"op": "reload"})
    where = "the running bridge closed its connections" if told else "no bridge is running"
    click.echo(f"codex-appserver: revoked device {device.name} (role {device.role.value}); {where}", err=True)


def _tell_bridge(folder: Path, message: dict[str, Any]) -> bool:
    """Send *message* to the running bridge's control socket and wait for its answer; False when none runs."""
    from .state import CONTROL_SOCKET

    path = folder / CONTROL_SOCKET
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5.0)
            sock.connect(str(path))
            sock.sendall(json.dumps(message).encode("utf-8") + b"\n")
            return bool(sock.recv(4096))
    except OSError:
        return False
