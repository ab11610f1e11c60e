"""Which app-server to connect to: the control socket path.

Codex keeps its control socket at ``$CODEX_HOME/app-server-control/app-server-control.sock`` with
``CODEX_HOME`` defaulting to ``~/.codex`` (Codex's own rule). That path is usually a symlink into
``/tmp/codex-daemon-<uid>/``; we connect to the resolved path, which also keeps deep ``CODEX_HOME`` folders
under the 107-byte ``sun_path`` limit of AF_UNIX.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

#: Linux ``sizeof(sun_path)`` minus the terminating NUL, in bytes.
MAX_UNIX_PATH_BYTES = 107

SOCKET_RELATIVE_PATH = Path("app-server-control") / "app-server-control.sock"


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
