"""The README's "A browser page" recipe in a real browser: headless Chromium, driven over the Chrome DevTools
protocol (``--remote-debugging-port=0`` on loopback, the `websockets` library as the CDP client).

The page is the README's ``html`` block read out of README.md, byte for byte except the bridge's port (a free
port instead of 9100); it is served by the same handler as ``python3 -m http.server`` (on a free port instead of
8000). The page's ``prompt()`` for the token is answered through ``Page.handleJavaScriptDialog``, so the page
needs no change. Checked: the page prints the initialize response (the daemon's ``codexHome``); the 101 selects
``codex-appserver.v1`` and never echoes the bearer entry (the handshake response as the browser received it,
``Network.webSocketHandshakeResponseReceived``); served from an origin not in ``--allow-origin`` the browser's
connection is refused with 403 (the bridge's access log).
"""

from __future__ import annotations

import functools
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from .bridge_process import running_bridge
from .codex_server import CodexServer
from .proxy_process import ROOT

pytestmark = pytest.mark.codex

TOKEN = secrets.token_urlsafe(32)
#: Guards against hangs only.
TIMEOUT = 90.0
README_BRIDGE_URL = "ws://127.0.0.1:9100/ws"


def readme_page() -> str:
    """The ``html`` block of README.md's "### A browser page" section, as written there."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### A browser page", 1)[1]
    match = re.search(r"```html\n(.*?)```", section, re.S)
    assert match is not None, "README.md: no html block under '### A browser page'"
    page = match.group(1)
    assert page.count(README_BRIDGE_URL) == 1
    return page


def chromium_binary() -> str:
    found = shutil.which("chromium")
    if found is None:
        message = "chromium is not installed (Debian package chromium; scripts/test installs it when it can)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI is set, so the browser test must run")
        pytest.skip(message)
    return found


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def serving(directory: Path) -> Iterator[int]:
    """``python3 -m http.server`` (the same handler) on a free loopback port, serving *directory*."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


class Browser:
    """One headless Chromium page driven over CDP (flat sessions; events kept in arrival order)."""

    def __init__(self, cdp: ClientConnection, session: str) -> None:
        self._cdp = cdp
        self._session = session
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        self.prompt_answer = ""

    def _send(self, method: str, params: dict[str, Any], session: str | None) -> int:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        self._cdp.send(json.dumps(message))
        return self._next_id

    def _pump(self, deadline: float) -> dict[str, Any]:
        """The next CDP message; dialogs are answered at once (the page's script waits on them)."""
        remaining = max(deadline - time.monotonic(), 0.001)
        message: dict[str, Any] = json.loads(self._cdp.recv(timeout=remaining))
        if message.get("method") == "Page.javascriptDialogOpening":
            assert message["params"]["type"] == "prompt"
            self._send("Page.handleJavaScriptDialog", {"accept": True, "promptText": self.prompt_answer}, self._session)
        if "method" in message:
            self.events.append(message)
        return message

    def call(self, method: str, params: dict[str, Any] | None = None, *, browser: bool = False) -> dict[str, Any]:
        wanted = self._send(method, params or {}, None if browser else self._session)
        deadline = time.monotonic() + TIMEOUT
        while True:
            message = self._pump(deadline)
            if message.get("id") == wanted:
                assert "error" not in message, message
                result: dict[str, Any] = message["result"]
                return result

    def wait_event(self, method: str) -> dict[str, Any]:
        """The params of the first event *method* (already seen, or the next one to come)."""
        deadline = time.monotonic() + TIMEOUT
        seen = 0
        while True:
            for event in self.events[seen:]:
                if event["method"] == method:
                    params: dict[str, Any] = event["params"]
                    return params
            seen = len(self.events)
            self._pump(deadline)

    def pump_until(self, condition: Callable[[], bool], what: str) -> None:
        """Handle CDP messages (answering dialogs) until *condition* holds; AssertionError after the guard."""
        deadline = time.monotonic() + TIMEOUT
        while not condition():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            with suppress(TimeoutError):
                self._pump(min(deadline, time.monotonic() + 0.1))

    def close(self) -> None:
        """Ask the browser to exit (``Browser.close``); its answer is not awaited."""
        with suppress(Exception):
            self._send("Browser.close", {}, None)

    def text(self, expression: str) -> str:
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        value = result["result"].get("value")
        assert isinstance(value, str), result
        return value


@contextmanager
def running_chromium() -> Iterator[Browser]:
    """Headless Chromium (its own process group, a fresh profile) with one blank page; killed afterwards."""
    binary = chromium_binary()
    profile = Path(tempfile.mkdtemp(prefix="chromium-"))
    process = subprocess.Popen(
        [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            "about:blank",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + TIMEOUT
        while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
            assert process.poll() is None, f"chromium exited with status {process.returncode}"
            assert time.monotonic() < deadline, "chromium wrote no DevToolsActivePort"
            time.sleep(0.05)
        port, path = port_file.read_text().splitlines()[:2]
        with connect(f"ws://127.0.0.1:{port}{path}", max_size=None, open_timeout=TIMEOUT) as cdp:
            browser = Browser(cdp, "")
            target = browser.call("Target.createTarget", {"url": "about:blank"}, browser=True)["targetId"]
            attached = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True}, browser=True)
            browser._session = attached["sessionId"]
            browser.call("Page.enable")
            browser.call("Network.enable")
            browser.call("Runtime.enable")
            try:
                yield browser
            finally:
                # A graceful close lets Chromium reap its own helpers (killed first, they would be left as
                # zombies of init); the process group is killed below whatever happens.
                browser.close()
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=15)
    finally:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        shutil.rmtree(profile, ignore_errors=True)


def test_readme_page_in_chromium(codex_server: CodexServer, tmp_path: Path) -> None:
    token_file = tmp_path / "bridge.token"
    token_file.write_text(TOKEN + "\n", encoding="utf-8")
    token_file.chmod(0o600)
    site = tmp_path / "site"
    site.mkdir()
    with serving(site) as http_port:
        allowed = f"http://localhost:{http_port}"
        args = ["--sock", str(codex_server.socket_path), "--token-file", str(token_file), "--allow-origin", allowed]
        with running_bridge([*args, "-vv"], env=codex_server.env) as bridge:
            page = readme_page().replace(README_BRIDGE_URL, f"ws://127.0.0.1:{bridge.port}/ws")
            (site / "page.html").write_text(page, encoding="utf-8")

            with running_chromium() as browser:
                browser.prompt_answer = TOKEN
                browser.call("Page.navigate", {"url": f"{allowed}/page.html"})
                dialog = browser.wait_event("Page.javascriptDialogOpening")
                assert dialog["message"] == "bridge token"
                bridge.wait_for_line(r"GET /ws -> 101\b", TIMEOUT)
                handshake = browser.wait_event("Network.webSocketHandshakeResponseReceived")["response"]
                assert handshake["status"] == 101
                headers = {name.lower(): value for name, value in handshake["headers"].items()}
                assert headers["sec-websocket-protocol"] == "codex-appserver.v1"
                browser.wait_event("Network.webSocketFrameReceived")
                out = browser.text('document.getElementById("out").textContent')
                assert out.endswith("\n")
                response = json.loads(out.splitlines()[0])
                assert response["id"] == 1
                assert response["result"]["codexHome"] == str(codex_server.codex_home)
                assert TOKEN not in bridge.stderr_text

                # The same page from another origin (127.0.0.1 is not localhost): the browser is refused.
                refused = r"GET /ws -> 403\b"
                assert bridge.count_lines(refused) == 0
                browser.call("Page.navigate", {"url": f"http://127.0.0.1:{http_port}/page.html"})
                browser.pump_until(lambda: bridge.count_lines(refused) == 1, "403 in the bridge's log")
                assert bridge.count_lines(r"-> 101\b") == 1
                assert browser.text('document.getElementById("out").textContent') == ""
