"""Our folder under ``$CODEX_HOME`` (``codex-appserver``): where it is, made 0700, and files in it written 0600
atomically. It holds the device store, the running bridge's state, the self-signed certificate and the control
socket. No trio here; plain file I/O.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path

from ..errors import LocalIOError
from ..target import codex_home

#: Our folder under ``$CODEX_HOME``: devices, bridge state, the self-signed certificate, the control socket.
STATE_DIR = "codex-appserver"


def state_dir(env: Mapping[str, str]) -> Path:
    """``$CODEX_HOME/codex-appserver`` (``~/.codex`` when ``CODEX_HOME`` is unset)."""
    return codex_home(env) / STATE_DIR


def ensure_state_dir(folder: Path) -> Path:
    """Create *folder* (and its parents) with mode 0700 if missing; tighten it to 0700 if it exists.

    :raises LocalIOError: it cannot be created (74).
    """
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if stat.S_IMODE(folder.stat().st_mode) != 0o700:
            folder.chmod(0o700)
    except OSError as exc:
        raise LocalIOError(f"cannot create the folder {folder}: {exc.strerror}") from None
    return folder


def write_private(path: Path, data: bytes, sync: bool = True) -> None:
    """Replace *path* with *data* atomically, mode 0600: a temporary file in the same folder, fsync (unless *sync*
    is false: advisory files), rename.

    :raises LocalIOError: on any failure (74); the old file is left as it was.
    """
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mkstemp creates it 0600
    except OSError as exc:
        raise LocalIOError(f"cannot write {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            if sync:
                file.flush()
                os.fsync(file.fileno())
        os.replace(temp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise LocalIOError(f"cannot write {path}: {exc.strerror}") from None
