"""Run the real Codex app-server (npm ``@openai/codex``, pinned in ``scripts/codex-version``) for tests.

:func:`install_codex` runs ``scripts/install-codex``; :func:`running_codex_server` starts
``codex app-server --listen unix://`` with its own ``CODEX_HOME``, waits until the control socket accepts a
connection and answers ``initialize``, and always stops the server afterwards (SIGTERM, then SIGKILL), also when
the test fails.

The server runs in its own process group: ``codex`` is a Node.js launcher that starts the native binary as a
child, and signalling the group (whose id is the launcher's pid) reaches both.

Measured on 0.169.0: the socket accepts connections a moment before the server handles SIGTERM; a SIGTERM in that
moment kills it on the spot and leaves a stale socket in ``/tmp/codex-daemon-<uid>/`` (about 1 start in 30 under
load). Waiting for an ``initialize`` answer closes that window, and the leftovers are removed anyway.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from websockets.exceptions import WebSocketException
from websockets.sync.client import unix_connect

ROOT = Path(__file__).resolve().parents[2]
INSTALL_SCRIPT = ROOT / "scripts" / "install-codex"
VERSION_FILE = ROOT / "scripts" / "codex-version"
#: Where ``scripts/install-codex`` puts the binary.
INSTALLED_CODEX = ROOT / ".cache" / "codex" / "node_modules" / ".bin" / "codex"
SOCKET_RELATIVE_PATH = Path("app-server-control") / "app-server-control.sock"
PROBE_ID = "codex-server-probe"
PROBE_INITIALIZE = {
    "method": "initialize",
    "id": PROBE_ID,
    "params": {"clientInfo": {"name": "codex_server_probe", "version": "0"}},
}

#: How long the server may take to accept connections, and to exit after SIGTERM, in seconds.
STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 5.0

#: Keeps the server off the network: the model provider is a closed port on 127.0.0.1 (no request in these
#: tests starts a turn, so nothing is ever sent to it), and update checks, analytics and remote plugins are off.
OFFLINE_CONFIG = """\
model_provider = "offline"
model = "offline-model"
check_for_update_on_startup = false

[analytics]
enabled = false

[features]
remote_plugin = false

[model_providers.offline]
name = "offline"
base_url = "http://127.0.0.1:9/v1"
wire_api = "responses"
"""


def socket_of(codex_home: Path) -> Path:
    """Where the app-server's control socket is for *codex_home*."""
    return codex_home / SOCKET_RELATIVE_PATH


def accepts_connections(path: Path) -> bool:
    """True when a connection to the Unix socket at *path* succeeds (it is closed again at once)."""
    # Connect through the resolved path: it stays under the 107-byte sun_path limit for any CODEX_HOME.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(2)
        try:
            probe.connect(os.path.realpath(path))
        except OSError:
            return False
    return True


class CodexUnavailable(Exception):
    """The Codex binary cannot be installed here because npm is missing."""


class CodexServerError(Exception):
    """The app-server did not start, or could not be installed; the message carries its log tail."""


def pinned_codex_version() -> str:
    """The ``@openai/codex`` version the tests run against (``scripts/codex-version``)."""
    return VERSION_FILE.read_text(encoding="utf-8").strip()


def installed_codex_version(codex: Path = INSTALLED_CODEX) -> str | None:
    """The version ``codex --version`` reports (``codex-cli 0.169.0`` -> ``0.169.0``), None if it cannot run."""
    try:
        done = subprocess.run([str(codex), "--version"], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    words = done.stdout.split()
    return words[-1] if done.returncode == 0 and words else None


def install_codex() -> Path:
    """Run ``scripts/install-codex`` when the pinned version is not installed yet; return the binary's path.

    :raises CodexUnavailable: it is not installed and npm is not on PATH.
    :raises CodexServerError: the install script failed.
    """
    version = pinned_codex_version()
    if installed_codex_version() == version:
        return INSTALLED_CODEX
    if shutil.which("npm") is None:
        raise CodexUnavailable(f"npm is not on PATH, so scripts/install-codex cannot fetch @openai/codex@{version}")
    done = subprocess.run([str(INSTALL_SCRIPT)], capture_output=True, text=True, timeout=600, check=False, cwd=ROOT)
    lines = done.stdout.splitlines()
    if done.returncode != 0 or not lines:
        raise CodexServerError(
            f"scripts/install-codex exited with {done.returncode}:\n{done.stdout[-2000:]}{done.stderr[-4000:]}"
        )
    return Path(lines[-1])


@dataclass
class CodexServer:
    """A running ``codex app-server --listen unix://``."""

    codex_home: Path
    pid: int
    log_path: Path
    process: subprocess.Popen[bytes] = field(repr=False)
    #: Where the socket symlink pointed once the server was ready (in ``/tmp/codex-daemon-<uid>/``).
    daemon_socket: Path | None = None
    stopped: bool = False

    @property
    def socket_path(self) -> Path:
        """``$CODEX_HOME/app-server-control/app-server-control.sock`` (a symlink into ``/tmp/codex-daemon-<uid>/``)."""
        return socket_of(self.codex_home)

    @property
    def env(self) -> dict[str, str]:
        """What a client needs in its environment to find this server."""
        return {"CODEX_HOME": str(self.codex_home)}

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            return f"(no log: {exc})"
        return "\n".join(text.splitlines()[-lines:])

    def accepts_connections(self) -> bool:
        """True when a connection to the control socket succeeds (it is closed again at once)."""
        return accepts_connections(self.socket_path)

    def answers_initialize(self) -> bool:
        """True when a WebSocket client on the socket gets a result for ``initialize`` (no Origin is sent)."""
        try:
            with unix_connect(
                os.path.realpath(self.socket_path), open_timeout=5, close_timeout=1, max_size=None
            ) as probe:
                probe.send(json.dumps(PROBE_INITIALIZE))
                while True:
                    message = json.loads(probe.recv(timeout=10))
                    if isinstance(message, dict) and message.get("id") == PROBE_ID:
                        return "result" in message
        except (OSError, TimeoutError, WebSocketException, ValueError):
            return False

    def poll_until(self, ready: Callable[[], bool], timeout: float, exited_before: str, not_ready: str) -> None:
        """Poll *ready* every 0.1 s until it holds.

        :raises CodexServerError: the server exited first ("exited with N before *exited_before*"), or *ready*
            did not hold within *timeout* seconds ("*not_ready* within T s"); the message carries the log tail.
        """
        deadline = time.monotonic() + timeout
        while not ready():
            status = self.process.poll()
            if status is not None:
                raise CodexServerError(
                    f"codex app-server (pid {self.pid}) exited with {status} before {exited_before}; "
                    f"log tail:\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise CodexServerError(
                    f"codex app-server (pid {self.pid}) {not_ready} within {timeout:g} s; log tail:\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def wait_until_ready(self, timeout: float = STARTUP_TIMEOUT) -> None:
        """Poll until the socket accepts a connection and the server answers ``initialize`` on it.

        :raises CodexServerError: the server exited, or was not ready within *timeout* seconds.
        """
        self.poll_until(
            lambda: self.accepts_connections() and self.answers_initialize(),
            timeout,
            exited_before=f"{self.socket_path} accepted a connection",
            not_ready=f"did not answer at {self.socket_path}",
        )
        self.daemon_socket = Path(os.path.realpath(self.socket_path))

    def stop(self, signum: signal.Signals = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> None:
        """Send *signum* to the server's process group; SIGKILL it after *timeout* seconds. Once only."""
        if self.stopped:
            return
        self.stopped = True
        signal_group(self.pid, signum)
        deadline = time.monotonic() + timeout
        while _group_alive(self.pid) and time.monotonic() < deadline:
            with suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=0.1)
            if self.process.returncode is not None:
                time.sleep(0.05)  # the native child may still be on its way out
        if _group_alive(self.pid):
            signal_group(self.pid, signal.SIGKILL)
        self.process.wait()

    def remove_leftovers(self) -> None:
        """After :meth:`stop`: remove the socket and lock file a killed server left in ``/tmp/codex-daemon-<uid>/``.

        A symlink to them in ``CODEX_HOME`` stays, dangling, as after a reboot that emptied ``/tmp``.
        """
        assert self.stopped
        if self.daemon_socket is not None and self.daemon_socket.parent.name.startswith("codex-daemon-"):
            for leftover in (self.daemon_socket, self.daemon_socket.with_name(self.daemon_socket.name + ".lock")):
                with suppress(FileNotFoundError):
                    leftover.unlink()


def signal_group(pgid: int, signum: signal.Signals) -> None:
    """Send *signum* to the process group *pgid*, if it still exists."""
    with suppress(ProcessLookupError):
        os.killpg(pgid, signum)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def start_codex_server(
    codex: Path, codex_home: Path, log_path: Path, listen: str = "unix://", args: Sequence[str] = ()
) -> CodexServer:
    """Start ``codex app-server --listen LISTEN *args`` with ``CODEX_HOME=codex_home`` in a process group of its
    own, its output in *log_path*; do not wait for it.

    *codex_home* is created, with :data:`OFFLINE_CONFIG` as its ``config.toml`` unless it already has one.
    """
    codex_home.mkdir(parents=True, exist_ok=True)
    config = codex_home / "config.toml"
    if not config.exists():
        config.write_text(OFFLINE_CONFIG, encoding="utf-8")
    env = dict(os.environ)
    env["CODEX_HOME"] = str(codex_home)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(codex), "app-server", "--listen", listen, *args],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=codex_home,
            start_new_session=True,  # the Node launcher and the native binary share a process group
        )
    return CodexServer(codex_home=codex_home, pid=process.pid, log_path=log_path, process=process)


@contextmanager
def running_codex_server(
    codex: Path, codex_home: Path, log_path: Path | None = None, timeout: float = STARTUP_TIMEOUT
) -> Iterator[CodexServer]:
    """A started app-server whose socket accepts connections; stopped on exit, whatever happened."""
    server = start_codex_server(codex, codex_home, log_path or codex_home.with_name(codex_home.name + ".log"))
    try:
        server.wait_until_ready(timeout)
        yield server
    finally:
        server.stop()
        server.remove_leftovers()
