"""What ``codex-appserver serve`` builds from its parsed command line before the bridge runs: the log levels, the
TLS context, the token and the bind policy, the target, and the :class:`~proxy.serve.options.ServeOptions`.

The click command (:mod:`proxy.serve.command`) only parses; the functions here read files and the environment and
report what is wrong as a :class:`~proxy.errors.ProxyError`, which the command turns into one line on stderr and
its exit status.
"""

from __future__ import annotations

import logging
import os
import ssl
from pathlib import Path

from ..errors import UsageError
from ..logs import setup_logging
from ..redact import SECRETS
from ..target import RemoteTarget, Target, UnixTarget, remote_target, socket_path
from .auth import Token
from .notify import parse_notify_command
from .options import ServeOptions
from .rules import bind_refusal
from .tokenfile import read_token_file, token_from_env

access = logging.getLogger("codex_appserver.access")


def setup_serve_logging(verbose: int, quiet: bool) -> None:
    """The log levels of ``serve``: those of :func:`proxy.logs.setup_logging` for *verbose* (``-v`` count) and
    *quiet* (``-q``), plus the connection lines at the default verbosity and the listening line always."""
    setup_logging(verbose, quiet)
    # The connection lines show at the default verbosity; -q keeps errors only. The listening line always shows.
    access.setLevel(logging.ERROR if quiet else logging.INFO)
    logging.getLogger("codex_appserver.listening").setLevel(logging.INFO)


def tls_context(cert: str, key: str | None) -> ssl.SSLContext:
    """A server-side TLS context with the PEM certificate chain in the file *cert* and its private key in the file
    *key* (None: in *cert*).

    :raises UsageError: they cannot be read or loaded (2).
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        files = f"{cert} and {key}" if key else cert
        raise UsageError(
            f"cannot load the TLS certificate and key from {files} (--tls-cert, --tls-key): {reason}; "
            "give a PEM certificate chain and its private key"
        ) from None
    return context


def serve_options(
    *,
    bind: tuple[str, int],
    sock: str | None,
    remote: str | None,
    remote_auth_token_env: str | None,
    cacert: str | None,
    token_file: str | None,
    token_env: str | None,
    tls_cert: str | None,
    tls_key: str | None,
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
) -> ServeOptions:
    """The settings of this ``serve`` run, from the values of its options of the same names (*bind*: host and
    port; times in seconds, sizes in bytes; *wait* None: 0, or 30 with *start*). Reads the token
    (``--token-file``, ``--token-env``), the device store in ``$CODEX_HOME/codex-appserver`` and the TLS files,
    and checks the bind policy.

    :raises LocalIOError: the token file or the device store cannot be read (74).
    :raises UsageError: a token too short or missing, a bind the policy refuses, TLS files that do not load, a bad
        ``--remote`` or ``--notify-command`` (2).
    :raises PermissionDenied: ``--remote-auth-token-env`` for a non-loopback plain ``ws://`` host (77).
    """
    from .devices import DeviceStore
    from .selfsigned import file_fingerprint
    from .statedir import state_dir

    host, port = bind
    folder = state_dir(os.environ)
    token: Token | None = None
    if token_file is not None:
        token = read_token_file(token_file)
    elif token_env is not None:
        token = token_from_env(token_env, os.environ)
    has_devices = bool(DeviceStore(folder).load())  # device tokens count as tokens for the bind policy
    refusal = bind_refusal(host, token is not None or has_devices, tls_cert is not None, allow_plain_ws)
    if refusal is not None:
        raise UsageError(refusal)
    tls = tls_context(tls_cert, tls_key) if tls_cert is not None else None
    target: Target = (
        remote_target(remote, remote_auth_token_env, os.environ, cacert)
        if remote is not None
        else UnixTarget(socket_path(sock, os.environ, Path.cwd()))
    )
    if isinstance(target, RemoteTarget) and target.token:
        SECRETS.add(target.token)  # redacted from every log line from here on
    notify_argv = parse_notify_command(notify_command) if notify_command is not None else ()
    return ServeOptions(
        host=host,
        port=port,
        target=target,
        token=token,
        tls=tls,
        allowed_origins=frozenset(allow_origin),
        max_clients=max_clients,
        client_queue_bytes=client_queue_bytes,
        resume_window=resume_window,
        resume_spool_bytes=resume_spool_bytes,
        notify_command=notify_argv,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        wait=wait if wait is not None else (30.0 if start else 0.0),
        start=start,
        codex_bin=codex_bin,
        state_dir=folder,
        fingerprint=file_fingerprint(tls_cert) if tls_cert is not None else None,
        reconnect=reconnect,
        reconnect_timeout=reconnect_timeout,
        notify_reconnect=notify_reconnect,
    )
