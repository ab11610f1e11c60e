"""``--start``: run ``codex app-server daemon start`` when nothing listens on the control socket.

Codex 0.169.0's ``daemon start`` spawns the daemon (copying itself into ``$CODEX_HOME/packages`` first), prints
one JSON status line and exits 0; the daemon keeps running after we exit.
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Mapping

import trio

from .errors import ServerUnavailable

log = logging.getLogger("codex_appserver")

#: How much of a failed start's stderr goes into the error message, in characters.
STDERR_TAIL = 300
#: The longest ``daemon start`` may take, in seconds (it copies ~400 MB on a first start).
START_TIMEOUT = 120.0


async def start_daemon(codex_bin: str, env: Mapping[str, str]) -> None:
    """Run ``CODEX_BIN app-server daemon start`` with *env* (``CODEX_HOME`` passes through).

    :raises ServerUnavailable: the executable is missing or not runnable, the command failed or took longer than
        :data:`START_TIMEOUT` (exit status 69).
    """
    command = [codex_bin, "app-server", "daemon", "start"]
    log.info("nothing listens; running %s", " ".join(command))
    try:
        with trio.fail_after(START_TIMEOUT):
            done = await trio.run_process(
                command,
                stdin=subprocess.DEVNULL,
                capture_stdout=True,
                capture_stderr=True,
                check=False,
                env=dict(env),
            )
    except FileNotFoundError:
        raise ServerUnavailable(
            f"cannot start the app-server: '{codex_bin}' was not found; install Codex "
            "('npm install -g @openai/codex') or name the executable with --codex-bin"
        ) from None
    except PermissionError:
        raise ServerUnavailable(
            f"cannot start the app-server: '{codex_bin}' is not executable; check --codex-bin"
        ) from None
    except trio.TooSlowError:
        raise ServerUnavailable(
            f"cannot start the app-server: '{' '.join(command)}' took longer than {START_TIMEOUT:g} s"
        ) from None
    if done.returncode != 0:
        tail = " ".join(done.stderr.decode("utf-8", "replace").split())[-STDERR_TAIL:]
        raise ServerUnavailable(
            f"cannot start the app-server: '{' '.join(command)}' exited with status {done.returncode}"
            + (f": {tail}" if tail else "")
        )
    log.info("daemon start said: %s", done.stdout.decode("utf-8", "replace").strip())
