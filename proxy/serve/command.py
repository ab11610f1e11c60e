"""``codex-appserver serve``: parse options, run the bridge, turn errors into exit statuses. Nothing else: what the
options build (log levels, TLS, token, bind policy, :class:`~proxy.serve.options.ServeOptions`) is in
:mod:`proxy.serve.configure`."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import TypeVar

import click
import trio

from ..allocator import tune_for_streaming
from ..clitypes import FiniteFloat, exit_status_help
from ..errors import ProxyError
from ..options import MiB
from ..reconnect_cli import check_reconnect, reconnect_options
from .configure import serve_options, setup_serve_logging
from .devices_cli import devices
from .rules import parse_bind
from .server import run_bridge
from .tokenfile import write_new_token

log = logging.getLogger("codex_appserver")

DEFAULT_BIND = "127.0.0.1:9100"
T = TypeVar("T")


SERVE_EPILOG = f"""{exit_status_help()}

\b
Examples:
  codex-appserver serve                                   # ws://127.0.0.1:9100/ws, no token (loopback)
  codex-appserver serve --new-token ~/.codex/bridge.token
  codex-appserver serve --bind 0.0.0.0:9100 --token-file ~/.codex/bridge.token \\
    --tls-cert cert.pem --tls-key key.pem

See 'man codex-appserver-serve' for the full reference.
"""


def _bind(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, int]:
    try:
        return parse_bind(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.group(epilog=SERVE_EPILOG, invoke_without_command=True)
@click.pass_context
@click.option(
    "--bind",
    default=DEFAULT_BIND,
    show_default=True,
    metavar="HOST:PORT",
    callback=_bind,
    help="Address to listen on; port 0 picks a free port; IPv6 as [::1]:9100. Non-loopback needs a token and TLS.",
)
@click.option(
    "--sock",
    type=click.Path(dir_okay=False, readable=False),
    metavar="PATH",
    help="Control socket each client is relayed to.  [default: $CODEX_HOME/app-server-control/app-server-control.sock]",
)
@click.option(
    "--remote",
    metavar="URL",
    help="Relay each client to a remote app-server instead of the socket: ws://HOST:PORT[/PATH] or wss://...",
)
@click.option(
    "--remote-auth-token-env",
    metavar="VAR",
    help="Send the remote app-server 'Authorization: Bearer' with the token in this environment variable.",
)
@click.option(
    "--cacert",
    type=click.Path(dir_okay=False, exists=True),
    metavar="FILE",
    help="Also trust the CA certificates in this PEM file for a wss:// --remote.",
)
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="Clients must send the token in this file (trimmed; at least 32 bytes).",
)
@click.option("--token-env", metavar="VAR", help="Clients must send the token in this environment variable.")
@click.option(
    "--new-token",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="Write a fresh 256-bit token (base64url) to FILE, mode 0600, and exit; never overwrites.",
)
@click.option(
    "--tls-cert",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="Serve wss:// with this PEM certificate chain.",
)
@click.option(
    "--tls-key",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="The private key of --tls-cert (PEM).  [default: in the --tls-cert file]",
)
@click.option(
    "--tls-self-signed",
    is_flag=True,
    help="Serve wss:// with a certificate for this machine made once in $CODEX_HOME/codex-appserver, then "
    "reused; prints its SHA-256 fingerprint for clients to pin.",
)
@click.option(
    "--allow-plain-ws",
    is_flag=True,
    help="Allow a non-loopback --bind without TLS, when a TLS terminator or tunnel sits in front.",
)
@click.option(
    "--allow-origin",
    multiple=True,
    metavar="ORIGIN",
    help="Accept WebSocket requests with this exact Origin, e.g. https://app.example (repeatable); others get 403.",
)
@click.option(
    "--max-clients",
    type=click.IntRange(min=1),
    default=32,
    show_default=True,
    metavar="N",
    help="WebSocket clients at once; more get 503.",
)
@click.option(
    "--client-queue-bytes",
    type=click.IntRange(min=1),
    default=64 * MiB,
    show_default=True,
    metavar="BYTES",
    help="Messages waiting for one client, at most; past it the client is closed with 1008 (slow consumer).",
)
@click.option(
    "--resume-window",
    type=click.FloatRange(min=0),
    default=300.0,
    show_default=True,
    metavar="SECONDS",
    help="A client that offered codex-appserver.resume.v1 and dropped may resume within this long; its "
    "app-server connection waits meanwhile.",
)
@click.option(
    "--resume-spool-bytes",
    type=click.IntRange(min=0),
    default=1024 * MiB,
    show_default=True,
    metavar="BYTES",
    help="Messages kept for a dropped resumable client past --client-queue-bytes go to a spool file of at most "
    "this size; past it the session ends.",
)
@click.option(
    "--notify-command",
    metavar="CMD",
    help="While a resumable session has no client, run CMD (split like a shell, no shell) for each approval, "
    "input request and turn/completed, with the event as JSON on stdin.",
)
@click.option(
    "--ping-interval",
    type=FiniteFloat(min=0),
    default=30.0,
    show_default=True,
    metavar="SECONDS",
    help="Ping a client or the app-server after this long with nothing received (0: never).",
)
@click.option(
    "--ping-timeout",
    type=FiniteFloat(min=0, min_open=True),
    default=20.0,
    show_default=True,
    metavar="SECONDS",
    help="Close a connection whose ping gets no answer within this long.",
)
@click.option(
    "--wait",
    type=FiniteFloat(min=0),
    default=None,
    metavar="SECONDS",
    help="When a client arrives and nothing listens on the socket, keep trying this long before 503.  "
    "[default: 0, or 30 with --start]",
)
@click.option(
    "--start",
    is_flag=True,
    help="When a client arrives and nothing listens, run 'codex app-server daemon start', then wait.",
)
@click.option(
    "--codex-bin",
    type=click.Path(dir_okay=False),
    default="codex",
    show_default=True,
    metavar="PATH",
    help="The codex executable --start runs.",
)
@reconnect_options
@click.option(
    "-v", "--verbose", count=True, help="Say more on stderr: -v connection events, -vv each message (method, size)."
)
@click.option("-q", "--quiet", is_flag=True, help="Print errors only (and the listening line).")
def serve(
    ctx: click.Context,
    bind: tuple[str, int],
    sock: str | None,
    remote: str | None,
    remote_auth_token_env: str | None,
    cacert: str | None,
    token_file: str | None,
    token_env: str | None,
    new_token: str | None,
    tls_cert: str | None,
    tls_key: str | None,
    tls_self_signed: bool,
    allow_plain_ws: bool,
    allow_origin: tuple[str, ...],
    max_clients: int,
    client_queue_bytes: int,
    resume_window: float,
    resume_spool_bytes: int,
    notify_command: str | None,
    ping_interval: float,
    ping_timeout: float,
    wait: float | None,
    start: bool,
    codex_bin: str,
    reconnect: bool,
    reconnect_timeout: float,
    notify_reconnect: bool,
    verbose: int,
    quiet: bool,
) -> None:
    """Share the app-server with WebSocket clients over TCP: phones, browsers, other machines' codex --remote.

    Each client that completes the opening handshake gets its own connection to the control socket (or to
    --remote), so every client shares the daemon's live threads. Once listening, prints one line on stderr:
    'codex-appserver: listening on ws://HOST:PORT/ws'.
    """
    if ctx.invoked_subcommand is not None:
        passed = [f"--{p.name.replace('_', '-')}" for p in ctx.command.params if p.name and _given(ctx, p.name)]
        if passed:
            raise click.UsageError(f"{', '.join(passed)} cannot be combined with '{ctx.invoked_subcommand}'")
        return
    setup_serve_logging(verbose, quiet)
    if new_token is not None:
        _run_or_exit(lambda: write_new_token(new_token))
        sys.exit(0)
    check_reconnect(reconnect, notify_reconnect)
    if token_file is not None and token_env is not None:
        raise click.UsageError("--token-file and --token-env cannot be combined")
    if tls_key is not None and tls_cert is None:
        raise click.UsageError("--tls-key needs --tls-cert")
    if remote is not None:
        if sock is not None:
            raise click.UsageError("--remote cannot be combined with --sock")
        if start:
            raise click.UsageError("--remote cannot be combined with --start")
    else:
        for given, name in ((remote_auth_token_env, "--remote-auth-token-env"), (cacert, "--cacert")):
            if given is not None:
                raise click.UsageError(f"{name} needs --remote")
    if tls_self_signed:
        if tls_cert is not None or tls_key is not None:
            raise click.UsageError("--tls-self-signed cannot be combined with --tls-cert or --tls-key")
        from .selfsigned import use_self_signed

        tls_cert, tls_key = _run_or_exit(use_self_signed)
    options = _run_or_exit(
        lambda: serve_options(
            bind=bind,
            sock=sock,
            remote=remote,
            remote_auth_token_env=remote_auth_token_env,
            cacert=cacert,
            token_file=token_file,
            token_env=token_env,
            tls_cert=tls_cert,
            tls_key=tls_key,
            allow_plain_ws=allow_plain_ws,
            allow_origin=allow_origin,
            max_clients=max_clients,
            client_queue_bytes=client_queue_bytes,
            resume_window=resume_window,
            resume_spool_bytes=resume_spool_bytes,
            notify_command=notify_command,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            wait=wait,
            start=start,
            codex_bin=codex_bin,
            reconnect=reconnect,
            reconnect_timeout=reconnect_timeout,
            notify_reconnect=notify_reconnect,
        )
    )
    tune_for_streaming()
    try:
        status = trio.run(run_bridge, options)
    except ProxyError as exc:
        log.error("%s", exc.message)
        sys.exit(exc.status)
    sys.exit(status)


def _given(ctx: click.Context, name: str) -> bool:
    source = ctx.get_parameter_source(name)
    return source is not None and source is not click.core.ParameterSource.DEFAULT


def _run_or_exit(function: Callable[[], T]) -> T:
    try:
        return function()
    except ProxyError as exc:
        log.error("%s", exc.message)
        sys.exit(exc.status)


serve.add_command(devices)
