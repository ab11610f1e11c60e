"""The command line: parse options, run the proxy, map its ending to an exit status. Nothing else.

Startup is part of the product (issue 14: spawn to first echoed line within 1.25x of importing trio, wsproto,
h11 and click): ``serve`` is imported only when it runs (:class:`LazyGroup`), and the proxy command imports
what runs it (trio, the relay) only once its options are parsed, so ``--help``, ``--version`` and each TAB of
a shell completion import neither.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click

from . import __version__
from .clitypes import FiniteFloat, exit_status_help
from .errors import ProxyError, descriptor_limit_error
from .lazygroup import LazyGroup
from .options import MiB
from .reconnect_cli import check_reconnect, reconnect_options

PROG = "codex-appserver"
log = logging.getLogger("codex_appserver")


# Each --help ends with a few examples and the man page (issue 6); tests/unit/test_manpage.py checks both.
GROUP_EPILOG = """\b
Examples:
  codex-appserver proxy < session.jsonl > replies.jsonl
  codex-appserver proxy --help
  eval "$(_CODEX_APPSERVER_COMPLETE=bash_source codex-appserver)"    # tab completion in this bash

See 'man codex-appserver' for the full reference.
"""

PROXY_EPILOG = f"""{exit_status_help()}

\b
Examples:
  printf '%s\\n' '{{"method":"initialize","id":1,"params":{{"clientInfo":{{"name":"sh","version":"1"}}}}}}' \\
    | codex-appserver proxy
  codex-appserver proxy --until turn/completed < turn.jsonl > turn.out.jsonl
  codex-appserver proxy --remote ws://127.0.0.1:4500 --remote-auth-token-env CODEX_TOKEN < session.jsonl

See 'man codex-appserver-proxy' for the full reference.
"""


def _check_combinations(
    sock: str | None, remote: str | None, token_env: str | None, cacert: str | None, raw: bool, start: bool
) -> None:
    if remote is not None:
        for given, name in ((sock, "--sock"), (raw or None, "--raw"), (start or None, "--start")):
            if given is not None:
                raise click.UsageError(f"--remote cannot be combined with {name}")
    else:
        for given, name in ((token_env, "--remote-auth-token-env"), (cacert, "--cacert")):
            if given is not None:
                raise click.UsageError(f"{name} needs --remote")


@click.group(
    cls=LazyGroup,
    lazy={"serve": ".serve.command:serve"},  # its options, rules and server load only for 'codex-appserver serve'
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=GROUP_EPILOG,
)
@click.version_option(__version__, prog_name=PROG)
def main() -> None:
    """Reach a running Codex app-server from anything that speaks JSONL."""


@main.command(epilog=PROXY_EPILOG)
@click.option(
    "--sock",
    type=click.Path(dir_okay=False, readable=False),  # connect(2) needs write access, checked by connecting
    metavar="PATH",
    help="Control socket to connect to.  [default: $CODEX_HOME/app-server-control/app-server-control.sock]",
)
@click.option(
    "--remote",
    metavar="URL",
    help="A remote app-server instead of the socket: ws://HOST:PORT[/PATH] or wss://HOST:PORT[/PATH].",
)
@click.option(
    "--remote-auth-token-env",
    metavar="VAR",
    help="Send 'Authorization: Bearer' with the token in this environment variable (wss://, or ws:// to loopback).",
)
@click.option(
    "--cacert",
    type=click.Path(dir_okay=False, exists=True),
    metavar="FILE",
    help="Also trust the CA certificates in this PEM file for wss:// (system trust store is always used).",
)
@click.option(
    "--raw",
    is_flag=True,
    help="Copy bytes to and from the socket unchanged, like 'codex app-server proxy' (the client speaks WebSocket).",
)
@click.option(
    "--drain-timeout",
    type=FiniteFloat(min=0),
    default=None,
    metavar="SECONDS",
    help="After stdin EOF, how long to wait for the responses still owed (and an --until notification).  "
    "[default: 10, or 600 with --until]",
)
@click.option(
    "--connect-timeout",
    type=FiniteFloat(min=0, min_open=True),
    default=10.0,
    show_default=True,
    metavar="SECONDS",
    help="How long connecting and the opening handshake may take.",
)
@click.option(
    "--max-message-size",
    type=click.IntRange(min=1),
    default=64 * MiB,
    show_default=True,
    metavar="BYTES",
    help="Longest stdin line sent; a longer one is reported and skipped.",
)
@click.option(
    "--max-incoming-size",
    type=click.IntRange(min=1),
    default=256 * MiB,
    show_default=True,
    metavar="BYTES",
    help="Largest message accepted from the app-server; a larger one closes with 1009.",
)
@click.option(
    "--ping-interval",
    type=FiniteFloat(min=0),
    default=30.0,
    show_default=True,
    metavar="SECONDS",
    help="Send a ping after this long with nothing received (0: never).",
)
@click.option(
    "--ping-timeout",
    type=FiniteFloat(min=0, min_open=True),
    default=20.0,
    show_default=True,
    metavar="SECONDS",
    help="Give up when a ping gets no answer within this long.",
)
@click.option(
    "--spool-limit",
    type=click.IntRange(min=0),
    default=1024 * MiB,
    show_default=True,
    metavar="BYTES",
    help="Disk the proxy may use ($TMPDIR) for output stdout has not taken yet; past it, exit 74.",
)
@click.option(
    "--overload-retries",
    type=click.IntRange(min=0),
    default=8,
    show_default=True,
    metavar="N",
    help="Resend a request answered -32001 (server overloaded) up to N times, backing off 50 ms doubling to 2 s.",
)
@click.option("--no-overload-retry", is_flag=True, help="Pass -32001 errors on at once (same as --overload-retries 0).")
@click.option(
    "--wait",
    type=FiniteFloat(min=0),
    default=None,
    metavar="SECONDS",
    help="While nothing listens on the socket, keep trying this long (backoff 50 ms doubling to 1 s).  "
    "[default: 0, or 30 with --start]",
)
@click.option(
    "--start",
    is_flag=True,
    help="When nothing listens, run 'codex app-server daemon start' (the daemon keeps running), then wait.",
)
@click.option(
    "--codex-bin",
    type=click.Path(dir_okay=False),
    default="codex",
    show_default=True,
    metavar="PATH",
    help="The codex executable --start runs.",
)
@click.option(
    "--until",
    multiple=True,
    metavar="METHOD",
    help="After stdin EOF, also wait for a notification with this method, e.g. turn/completed (repeatable).",
)
@click.option(
    "--trace",
    type=click.Path(dir_okay=False, writable=True),
    metavar="FILE",
    help="Append a JSON record per message and connection event to FILE (never tokens).",
)
@click.option("--strict", is_flag=True, help="Stop at the first stdin line that is not valid UTF-8 JSON.")
@reconnect_options
@click.option("-v", "--verbose", count=True, help="Say more on stderr: -v connection events, -vv each message.")
@click.option("-q", "--quiet", is_flag=True, help="Print errors only.")
def proxy(
    sock: str | None,
    remote: str | None,
    remote_auth_token_env: str | None,
    cacert: str | None,
    raw: bool,
    drain_timeout: float | None,
    connect_timeout: float,
    max_message_size: int,
    max_incoming_size: int,
    ping_interval: float,
    ping_timeout: float,
    spool_limit: int,
    overload_retries: int,
    no_overload_retry: bool,
    wait: float | None,
    start: bool,
    codex_bin: str,
    until: tuple[str, ...],
    trace: str | None,
    strict: bool,
    reconnect: bool,
    reconnect_timeout: float,
    notify_reconnect: bool,
    verbose: int,
    quiet: bool,
) -> None:
    """Relay JSONL on stdin/stdout to the Codex app-server's WebSocket.

    Each stdin line is sent as one text message; each message from the app-server is written to stdout as one
    line. At stdin EOF the proxy waits for the responses to the requests it sent, then closes.
    """
    import trio  # what runs the proxy loads once the options are parsed (see the module docstring)

    from .ending import Ending
    from .logs import setup_logging
    from .options import ProxyOptions
    from .redact import SECRETS
    from .runner import run_proxy
    from .target import RemoteTarget, Target, UnixTarget, remote_target, socket_path

    setup_logging(verbose, quiet)
    _check_combinations(sock, remote, remote_auth_token_env, cacert, raw, start)
    check_reconnect(reconnect, notify_reconnect)
    if reconnect and raw:
        raise click.UsageError("--reconnect cannot be combined with --raw (raw mode does not read the messages)")
    try:
        target: Target = (
            remote_target(remote, remote_auth_token_env, os.environ, cacert)
            if remote is not None
            else UnixTarget(socket_path(sock, os.environ, Path.cwd()))
        )
    except ProxyError as exc:
        log.error("%s", exc.message)
        sys.exit(exc.status)
    if isinstance(target, RemoteTarget) and target.token:
        SECRETS.add(target.token)  # redacted from every log line and trace record from here on (issue 9 #18)
    options = ProxyOptions(
        target=target,
        raw=raw,
        # A model turn takes minutes: --until waits for one, so it gets a longer default.
        drain_timeout=drain_timeout if drain_timeout is not None else (600.0 if until else 10.0),
        connect_timeout=connect_timeout,
        max_message_size=max_message_size,
        max_incoming_size=max_incoming_size,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        strict=strict,
        spool_limit=spool_limit,
        overload_retries=0 if no_overload_retry else overload_retries,
        until=frozenset(until),
        wait=wait if wait is not None else (30.0 if start else 0.0),
        start=start,
        codex_bin=codex_bin,
        trace=trace,
        reconnect=reconnect,
        reconnect_timeout=reconnect_timeout,
        notify_reconnect=notify_reconnect,
    )
    try:
        ending = trio.run(run_proxy, options)
    except OSError as exc:  # trio's own epoll and wakeup descriptors, before run_proxy could catch it (#9)
        limit = descriptor_limit_error(exc)
        if limit is None:
            raise
        ending = Ending(limit.status, limit.message)
    if ending.message:
        log.log(logging.ERROR if ending.status else logging.WARNING, "%s", ending.message)
    sys.exit(ending.status)
