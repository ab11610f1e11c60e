"""The real Codex TUI through the bridge: ``codex --remote ws://127.0.0.1:PORT --remote-auth-token-env VAR``, run in
tmux (on a private tmux socket), offline against the mock model. A prompt typed with send-keys reaches the mock
model through the bridge and the daemon, and the model's answer appears in the pane (capture-pane).

Measured on 0.169.0: the TUI in remote mode needs no login and shows no trust or onboarding screen with a
``config.toml`` naming the mock provider in its own ``CODEX_HOME``; it upgrades on ``/`` (it refuses a path in
the URL) and sends the token as ``Authorization: Bearer`` to a loopback ``ws://`` URL. After the first turn it
asks the model for a short task title, a second model call the mock does not script.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .bridge_process import running_bridge
from .codex_server import CodexServer, running_codex_server
from .mock_responses import Message, MockResponses, running_mock_responses

pytestmark = pytest.mark.codex

TOKEN = secrets.token_urlsafe(32)
PROMPT = "Say hello through the bridge."
REPLY = Message(("Hello ", "from the ", "mock model, ", "through the bridge."))
#: Guards against hangs only.
TIMEOUT = 90.0


def tmux_binary() -> str:
    found = shutil.which("tmux")
    if found is None:
        message = "tmux is not installed (Debian package tmux; scripts/test installs it when it can)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI is set, so the TUI test must run")
        pytest.skip(message)
    return found


class Tmux:
    """A tmux server of our own (``-S`` socket in a temp folder) with one session running the TUI."""

    def __init__(self, binary: str, socket: Path) -> None:
        self._argv = [binary, "-S", str(socket)]

    def run(self, *args: str) -> str:
        done = subprocess.run([*self._argv, *args], capture_output=True, text=True, timeout=30, check=True)
        return done.stdout

    def pane(self) -> str:
        return self.run("capture-pane", "-p", "-t", "tui")

    def wait_for(self, text: str, timeout: float = TIMEOUT) -> str:
        """The pane once it shows *text*; AssertionError with the pane after *timeout* seconds."""
        deadline = time.monotonic() + timeout
        while True:
            pane = self.pane()
            if text in pane:
                return pane
            if time.monotonic() > deadline:
                raise AssertionError(f"the TUI did not show {text!r} within {timeout:g} s; pane:\n{pane}")
            time.sleep(0.2)


@pytest.fixture
def mock_model() -> Iterator[MockResponses]:
    with running_mock_responses() as mock:
        yield mock
        # The TUI's own task-title request after the first turn is the one model call not scripted here.
        assert [problem for problem in mock.unexpected if "task title" not in problem] == []


@pytest.fixture
def daemon(
    codex_bin: Path, mock_model: MockResponses, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CodexServer]:
    codex_home = tmp_path_factory.mktemp("tuid")
    (codex_home / "config.toml").write_text(mock_model.config_toml(), encoding="utf-8")
    with running_codex_server(codex_bin, codex_home) as server:
        yield server


def test_the_codex_tui_runs_a_turn_through_the_bridge(
    codex_bin: Path, daemon: CodexServer, mock_model: MockResponses, tmp_path_factory: pytest.TempPathFactory
) -> None:
    tmux = Tmux(tmux_binary(), tmp_path_factory.mktemp("tmux") / "s")
    mock_model.script(PROMPT, REPLY)
    tui_home = tmp_path_factory.mktemp("tuihome")
    (tui_home / "config.toml").write_text(mock_model.config_toml(), encoding="utf-8")
    with running_bridge(["--token-env", "BRIDGE_TOKEN"], env={**daemon.env, "BRIDGE_TOKEN": TOKEN}) as bridge:
        command = (
            f"env CODEX_HOME={tui_home} BRIDGE_TOKEN={TOKEN} {codex_bin} "
            f"--remote ws://127.0.0.1:{bridge.port} --remote-auth-token-env BRIDGE_TOKEN"
        )
        tmux.run("new-session", "-d", "-s", "tui", "-x", "160", "-y", "45", command)
        try:
            tmux.wait_for("To get started")
            tmux.run("send-keys", "-t", "tui", "-l", PROMPT)
            tmux.wait_for(PROMPT)
            tmux.run("send-keys", "-t", "tui", "Enter")  # apart from the text: a burst of keys reads as a paste
            pane = tmux.wait_for(REPLY.text)
        finally:
            tmux.run("kill-server")
        assert f"\u203a {PROMPT}" in pane  # the TUI's prompt mark before the user's message
        (model_call, *_) = mock_model.requests_for(PROMPT)
        assert model_call.step == 0
        bridge.wait_for_line(r": GET / -> 101, open")
        assert TOKEN not in bridge.stderr_text
