"""The bridge's control socket (trio side): ``$CODEX_HOME/codex-appserver/control.sock``, mode 0600 in a 0700 folder.

The ``devices`` commands talk to a running bridge there, in JSON objects one a line: ``{"op": "reload"}`` (re-read
the device store now, after a revoke) and ``{"op": "join", ...}`` (a join code; see :mod:`.pairdesk`). Only
the user who owns the folder can connect: the token of a paired device passes through it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import trio

from ..errors import LocalIOError
from .state import CONTROL_SOCKET
from .statedir import ensure_state_dir

log = logging.getLogger("codex_appserver")

#: The longest control-socket line, in bytes.
MAX_CONTROL_LINE = 64 * 1024
#: AF_UNIX sun_path holds 108 bytes on Linux, with the terminating NUL.
MAX_SOCKET_PATH = 107


class LineReader:
    """Newline-delimited JSON objects from a stream, at most :data:`MAX_CONTROL_LINE` bytes each."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self._stream = stream
        self._buffer = bytearray()

    async def read(self) -> dict[str, Any] | None:
        """The next object; None at EOF, on an over-long line, or on one that is not a JSON object."""
        while b"\n" not in self._buffer:
            if len(self._buffer) > MAX_CONTROL_LINE:
                return None
            try:
                data = await self._stream.receive_some(4096)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return None
            if not data:
                return None
            self._buffer += data
        line, _, rest = bytes(self._buffer).partition(b"\n")
        self._buffer = bytearray(rest)
        try:
            value = json.loads(line)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None


async def send_json(stream: trio.abc.Stream, value: dict[str, Any]) -> bool:
    """Write *value* as one line; False when the peer is gone."""
    try:
        await stream.send_all(json.dumps(value).encode("utf-8") + b"\n")
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return False
    return True


async def open_control_socket(folder: Path) -> tuple[trio.socket.SocketType, Path] | None:
    """Listen on *folder*'s control socket; None (with a log line) when it cannot be had: the path is too long,
    another running bridge holds it, or it cannot be created. A socket left by a bridge that did not stop cleanly
    is replaced."""
    path = folder / CONTROL_SOCKET
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        log.warning("the control socket path %s is too long for AF_UNIX; join codes are not available", path)
        return None
    try:
        ensure_state_dir(folder)
    except LocalIOError as exc:
        log.warning("%s; join codes are not available", exc.message)
        return None
    if path.exists() or path.is_symlink():
        try:
            probe = await trio.open_unix_socket(str(path))
        except OSError:
            with contextlib.suppress(OSError):
                path.unlink()  # left by a bridge that did not stop cleanly
        else:
            await probe.aclose()
            log.info("another bridge serves the control socket %s; join codes go to it", path)
            return None
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        await sock.bind(str(path))
        sock.listen(16)
    except OSError as exc:
        sock.close()
        log.warning("cannot listen on the control socket %s: %s; join codes are not available", path, exc.strerror)
        return None
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    return sock, path
