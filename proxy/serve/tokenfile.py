"""The bridge's token on disk and in the environment: read it (trimmed), make a new one (``--new-token``)."""

from __future__ import annotations

import logging
import os
import secrets
import stat
from collections.abc import Mapping

from ..errors import LocalIOError, UsageError
from ..redact import SECRETS
from .auth import MIN_TOKEN_BYTES, Token, TokenTooShort

log = logging.getLogger("codex_appserver")

#: Random bytes in a new token: 256 bits, written as 43 base64url characters.
NEW_TOKEN_BYTES = 32


def _token(secret: bytes, where: str) -> Token:
    SECRETS.add(secret.decode("utf-8", "replace"))  # redacted from every log line, should anything echo it
    try:
        return Token(secret)
    except TokenTooShort:
        raise UsageError(
            f"the token in {where} is {len(secret)} bytes; it must be at least {MIN_TOKEN_BYTES} "
            "(make one with 'codex-appserver serve --new-token FILE')"
        ) from None


def read_token_file(path: str) -> Token:
    """The token in the file at *path*, whitespace trimmed. Warns when others may read the file.

    :raises LocalIOError: the file cannot be read (74).
    :raises UsageError: the token is shorter than 32 bytes (2).
    """
    try:
        with open(path, "rb") as file:
            mode = os.fstat(file.fileno()).st_mode
            secret = file.read(64 * 1024).strip()
    except OSError as exc:
        raise LocalIOError(f"cannot read the token file {path} (--token-file): {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("the token file %s can be read by other users; restrict it with 'chmod 600 %s'", path, path)
    return _token(secret, f"{path} (--token-file)")


def token_from_env(name: str, environ: Mapping[str, str]) -> Token:
    """The token in environment variable *name*, trimmed.

    :raises UsageError: the variable is unset, empty or shorter than 32 bytes (2).
    """
    value = environ.get(name, "").strip()
    if not value:
        raise UsageError(f"the environment variable {name} (--token-env) is unset or empty")
    return _token(value.encode("utf-8", "surrogateescape"), f"${name} (--token-env)")


def write_new_token(path: str) -> None:
    """Write a fresh 256-bit token, base64url, to a new file at *path* with mode 0600.

    :raises LocalIOError: the file exists (it is never overwritten) or cannot be written (74).
    """
    token = secrets.token_urlsafe(NEW_TOKEN_BYTES)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except FileExistsError:
        raise LocalIOError(f"{path} exists; not overwritten (remove it first to make a new token)") from None
    except OSError as exc:
        raise LocalIOError(f"cannot create the token file {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w") as file:
            file.write(token + "\n")
    except OSError as exc:
        raise LocalIOError(f"cannot write the token file {path}: {exc.strerror}") from None
