"""The options for editor launchers and for debugging, against the real Codex app-server: ``--wait``,
``--start`` (with the real ``codex`` starting a real daemon, which the test then stops), ``--trace``, ``-v``,
``-vv`` and ``-q``.

Tests that need the real Codex carry the ``codex`` marker; those that only need nothing to listen (a missing or
failing ``--codex-bin``, ``--wait`` giving up) do not, so they also run where Codex is not installed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from .codex_server import OFFLINE_CONFIG, CodexServer, accepts_connections, socket_of, start_codex_server
from .jsonrpc import INITIALIZED, JsonObject, parse_lines, request
from .proxy_process import close_and_finish, run_proxy_cli, running_proxy
from .test_turns import initialize, is_response, read_until, response_to

#: Guards against hangs; never what is measured (the machine is slow and shared).
TIMEOUT = 120
#: `daemon start` copies ~400 MB into CODEX_HOME/packages on a first start.
START_TIMEOUT = 300

PREFIX = "codex-appserver: "
#: A -vv line about one message: direction, size, then a summary.
MESSAGE_LOG_LINE = re.compile(r"^codex-appserver: (out|in) (\d+) bytes: (.+)$")


def no_server_line(codex_home: Path, detail: str = "") -> str:
    return (
        f"{PREFIX}no app-server is listening at {socket_of(codex_home)}{detail}; "
        "start one with 'codex app-server --listen unix://' or 'codex app-server daemon start'\n"
    )


def one_line(text: str) -> str:
    """*text* is exactly one stderr line with the usual prefix; return it without its LF."""
    assert text.endswith("\n"), repr(text)
    assert text.count("\n") == 1, repr(text)
    assert text.startswith(PREFIX), repr(text)
    return text[:-1]


def message_log_lines(stderr: str) -> list[tuple[str, int, str]]:
    """The -vv lines about messages, as (direction, size, summary)."""
    found = []
    for text in stderr.splitlines():
        match = MESSAGE_LOG_LINE.match(text)
        if match:
            found.append((match[1], int(match[2]), match[3]))
    return found


def summarizes(summary: str, message: JsonObject) -> bool:
    """The -vv summary names the message's method, and its id if it has one."""
    if "method" in message and message["method"] not in summary:
        return False
    if "id" in message:
        return re.search(rf"\bid\W{{0,3}}{re.escape(json.dumps(message['id']))}(?!\w)", summary) is not None
    return True


@pytest.fixture
def empty_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CODEX_HOME where nothing listens (short: its socket path stays under 107 bytes)."""
    return tmp_path_factory.mktemp("home")


@contextlib.contextmanager
def stopping(server: CodexServer) -> Iterator[CodexServer]:
    """Stop *server* on exit, whatever happened, and remove what it left in ``/tmp/codex-daemon-<uid>/``."""
    try:
        yield server
    finally:
        server.stop()
        server.remove_leftovers()


# -- --wait --------------------------------------------------------------------------------------------


@pytest.mark.codex
@pytest.mark.parametrize("before", ["missing", "stale"])
async def test_wait_connects_to_a_server_that_starts_later(codex_bin: Path, empty_home: Path, before: str) -> None:
    """An editor launcher spawns the proxy while the app-server is still starting: the socket is missing, or a
    stale socket file refuses connections, until the server comes up."""
    sock = socket_of(empty_home)
    if before == "stale":
        sock.parent.mkdir(parents=True)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stale:
            stale.bind(str(sock))  # bound, never listening, closed: connect(2) is refused
        assert not accepts_connections(sock)

    with trio.fail_after(TIMEOUT):
        async with running_proxy(["--wait", "20", "-v"], env={"CODEX_HOME": str(empty_home)}) as proxy:
            await proxy.send(initialize(1))  # read once connected
            await trio.sleep(1.5)
            assert proxy.process.returncode is None, proxy.stderr_text  # still waiting
            assert "nothing listens at" in proxy.stderr_text  # -v: the retries

            server = start_codex_server(codex_bin, empty_home, empty_home.with_name(empty_home.name + ".log"))
            with stopping(server):
                await trio.to_thread.run_sync(server.wait_until_ready)

                messages = await read_until(proxy, is_response)
                assert response_to(messages, 1)["codexHome"] == str(empty_home)
                await proxy.send(INITIALIZED + request(2, "thread/list"))
                messages = await read_until(proxy, is_response)
                assert isinstance(response_to(messages, 2)["data"], list)
                await close_and_finish(proxy)
    assert f"connected to {sock}" in proxy.stderr_text


@pytest.mark.parametrize("quiet", [False, True])
async def test_wait_gives_up_after_its_time(empty_home: Path, quiet: bool) -> None:
    """Nothing ever listens: exit 69 after the --wait time, with the usual line (-q still prints errors)."""
    started = time.monotonic()
    done = await run_proxy_cli(
        ["--wait", "1", *(["-q"] if quiet else [])], initialize(1), env={"CODEX_HOME": str(empty_home)}
    )
    elapsed = time.monotonic() - started

    assert done.status == 69
    assert done.stdout == b""
    assert done.stderr_text == no_server_line(empty_home)
    assert 1.0 <= elapsed < 15  # it did wait, about a second (the bound is generous: a slow, shared machine)


async def test_wait_retries_a_refused_connection(empty_home: Path) -> None:
    sock = socket_of(empty_home)
    sock.parent.mkdir(parents=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stale:
        stale.bind(str(sock))
    started = time.monotonic()
    done = await run_proxy_cli(["--wait", "1", "-v"], initialize(1), env={"CODEX_HOME": str(empty_home)})
    elapsed = time.monotonic() - started

    assert done.status == 69
    assert done.stdout == b""
    assert done.stderr_text.endswith(no_server_line(empty_home, " (connection refused: a stale socket file?)"))
    assert "nothing listens at" in done.stderr_text  # -v: it retried
    assert elapsed >= 1.0


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130), (signal.SIGHUP, 129)])
async def test_signal_while_waiting_ends_at_once(empty_home: Path, signum: signal.Signals, status: int) -> None:
    """Before any connection there is nothing to close: a signal ends the wait with 128+N, quietly."""
    with trio.fail_after(30):
        async with running_proxy(["--wait", "60", "-v"], env={"CODEX_HOME": str(empty_home)}) as proxy:
            while "nothing listens at" not in proxy.stderr_text:  # it is in the --wait loop
                await trio.sleep(0.05)
            proxy.signal(signum)
            assert await proxy.wait() == status
            assert await proxy.read_rest() == b""
    assert "Traceback" not in proxy.stderr_text


# -- --start -------------------------------------------------------------------------------------------


def _pids_of_daemon(codex_home: Path, start_output: str) -> set[int]:
    """The pids of the processes `daemon start` left running for *codex_home*: the app-server and its updater
    (``$CODEX_HOME/app-server-daemon/*.pid`` hold JSON with a ``pid``), and the pid ``daemon start`` printed."""
    pids: set[int] = set()
    for pid_file in (codex_home / "app-server-daemon").glob("*.pid"):
        with contextlib.suppress(OSError, ValueError, AttributeError, TypeError):
            pids.add(int(json.loads(pid_file.read_text(encoding="utf-8"))["pid"]))
    for match in re.finditer(r'"pid"\s*:\s*(\d+)', start_output):
        pids.add(int(match[1]))
    return pids


def _runs_from(pid: int, codex_home: Path) -> bool:
    """True while *pid* is a live process whose command line names *codex_home* (not a reused pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        state = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8").rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z" and os.fsencode(codex_home) in cmdline


def stop_daemon(codex: Path, codex_home: Path, start_output: str) -> None:
    """Stop what `daemon start` left running for *codex_home*, and remove *codex_home*.

    `codex app-server daemon stop` stops the app-server but (0.169.0) leaves its `pid-update-loop` process
    running, so every process named in the pid files is then sent SIGTERM, and SIGKILL if it lingers.
    """
    sock = socket_of(codex_home)
    target = Path(os.path.realpath(sock)) if sock.is_symlink() else None
    pids = _pids_of_daemon(codex_home, start_output)
    env = dict(os.environ, CODEX_HOME=str(codex_home))
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        subprocess.run(
            [str(codex), "app-server", "daemon", "stop"], env=env, capture_output=True, timeout=60, check=False
        )
    for signum in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            if _runs_from(pid, codex_home):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signum)
        deadline = time.monotonic() + 5
        while any(_runs_from(pid, codex_home) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
    if target is not None and target.parent.name.startswith("codex-daemon-"):
        for leftover in (target, target.with_name(target.name + ".lock")):
            with contextlib.suppress(OSError):
                leftover.unlink()
    shutil.rmtree(codex_home, ignore_errors=True)


@pytest.mark.codex
async def test_start_launches_a_daemon_that_outlives_the_proxy(
    codex_bin: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    codex_home = tmp_path_factory.mktemp("daemon")
    (codex_home / "config.toml").write_text(OFFLINE_CONFIG, encoding="utf-8")  # keeps the daemon off the network
    env = {"CODEX_HOME": str(codex_home)}
    done = None
    try:
        done = await run_proxy_cli(
            ["--start", "--codex-bin", str(codex_bin), "-v"],
            initialize(1) + INITIALIZED + request(2, "thread/list"),
            env=env,
            timeout=START_TIMEOUT,
        )

        assert done.status == 0, done.stderr_text
        messages = parse_lines(done.stdout_lines)
        assert response_to(messages, 1)["codexHome"] == str(codex_home)
        assert isinstance(response_to(messages, 2)["data"], list)
        assert "app-server daemon start" in done.stderr_text  # -v says what it ran
        assert (codex_home / "packages").is_dir()  # the daemon's copy of itself

        # The daemon is still there for the next client, which needs no --start.
        assert accepts_connections(socket_of(codex_home))
        pids = _pids_of_daemon(codex_home, done.stderr_text)
        assert any(_runs_from(pid, codex_home) for pid in pids), pids
        again = await run_proxy_cli([], initialize(1), env=env, timeout=TIMEOUT)
        assert again.status == 0, again.stderr_text
        assert again.stderr_text == ""
        assert response_to(parse_lines(again.stdout_lines), 1)["codexHome"] == str(codex_home)
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(stop_daemon, codex_bin, codex_home, done.stderr_text if done else "")
    assert not codex_home.exists()


@pytest.mark.codex
async def test_start_does_nothing_when_a_server_listens(codex_server: CodexServer, tmp_path: Path) -> None:
    """--start runs `daemon start` only when nothing listens: here the executable would fail, and is not run."""
    ran = tmp_path / "ran"
    codex = write_script(tmp_path / "codex", f'touch "{ran}"\necho "must not run" >&2\nexit 3')

    done = await run_proxy_cli(["--start", "--codex-bin", str(codex)], initialize(1), env=codex_server.env)

    assert done.status == 0, done.stderr_text
    assert done.stderr_text == ""
    assert response_to(parse_lines(done.stdout_lines), 1)["codexHome"] == str(codex_server.codex_home)
    assert not ran.exists()


async def test_start_with_a_missing_executable(empty_home: Path) -> None:
    missing = "/nonexistent/codex"
    started = time.monotonic()
    done = await run_proxy_cli(["--start", "--codex-bin", missing], initialize(1), env={"CODEX_HOME": str(empty_home)})

    assert done.status == 69
    assert done.stdout == b""
    message = one_line(done.stderr_text)
    assert missing in message
    assert "--codex-bin" in message
    assert time.monotonic() - started < 20  # not the 30 s --start would wait for a daemon


def write_script(path: Path, body: str) -> Path:
    path.write_text(f"#!/bin/sh\n{body}\n", encoding="utf-8")
    path.chmod(0o755)
    return path


async def test_start_with_a_failing_executable(empty_home: Path, tmp_path: Path) -> None:
    args_file = tmp_path / "args"
    codex = write_script(
        tmp_path / "codex",
        f'echo "$@" "CODEX_HOME=$CODEX_HOME" > "{args_file}"\n'
        'echo "Installing daemon..." >&2\n'
        'echo "error: cannot bind the control socket: Address in use" >&2\n'
        "exit 3",
    )
    started = time.monotonic()
    done = await run_proxy_cli(
        ["--start", "--codex-bin", str(codex)], initialize(1), env={"CODEX_HOME": str(empty_home)}
    )

    assert done.status == 69
    assert done.stdout == b""
    message = one_line(done.stderr_text)
    assert str(codex) in message
    assert re.search(r"\b3\b", message)  # the exit status
    assert "error: cannot bind the control socket: Address in use" in message  # the stderr tail
    assert args_file.read_text(encoding="utf-8").split() == [
        "app-server",
        "daemon",
        "start",
        f"CODEX_HOME={empty_home}",
    ]
    assert time.monotonic() - started < 20  # a failed start is not waited for


# -- --trace, -v, -vv, -q ------------------------------------------------------------------------------

#: Markers that only appear in message payloads: they must never reach stderr.
SECRET_CLIENT_NAME = "secret-client-name-4711"
PAYLOAD_DIR = "payload-dir-91c2"


@pytest.fixture
def cwd(tmp_path: Path) -> Path:
    """The thread's cwd: its name is a payload marker too."""
    path = tmp_path / PAYLOAD_DIR
    path.mkdir()
    return path


def session_stdin(cwd: Path) -> tuple[list[bytes], bytes]:
    """A short session with non-ASCII text (so characters and bytes differ): its lines and the stdin bytes."""
    lines = [
        initialize(1, name=SECRET_CLIENT_NAME).replace(b"codex-appserver-proxy tests", "t\u00ebst \u2603".encode()),
        INITIALIZED,
        request(2, "thread/start", {"cwd": str(cwd)}),
    ]
    return lines, b"".join(lines)


def read_trace(path: Path) -> list[JsonObject]:
    records = [json.loads(text) for text in path.read_text(encoding="utf-8").splitlines()]
    assert all(isinstance(record, dict) for record in records)
    return records


@pytest.mark.codex
async def test_trace_records_every_message_and_event(codex_server: CodexServer, tmp_path: Path, cwd: Path) -> None:
    lines, stdin = session_stdin(cwd)
    trace = tmp_path / "trace.jsonl"
    before = time.time()

    done = await run_proxy_cli(["--trace", str(trace)], stdin, env=codex_server.env, timeout=TIMEOUT)

    after = time.time()
    assert done.status == 0, done.stderr_text
    assert done.stderr_text == ""
    text = trace.read_text(encoding="utf-8")
    assert "authorization" not in text.lower()
    assert "sec-websocket-key" not in text.lower()
    records = read_trace(trace)
    times = [record["t"] for record in records]
    assert all(isinstance(t, float) for t in times)
    assert times == sorted(times)
    assert before <= times[0] <= times[-1] <= after

    connect, handshake = records[0], records[1]
    assert connect["event"] == "connect"
    assert str(codex_server.socket_path) in json.dumps(connect)
    assert handshake["event"] == "handshake"
    assert handshake["status"] == 101
    assert "x-codex-websocket-max-unfragmented-message-bytes" in json.dumps(handshake).lower()

    out = [record for record in records if record.get("dir") == "out" and "msg" in record]
    assert [record["msg"] for record in out] == [json.loads(raw) for raw in lines]
    assert [record["bytes"] for record in out] == [len(raw) - 1 for raw in lines]  # UTF-8 bytes, without the LF
    assert len(lines[0]) - 1 > len(lines[0].decode("utf-8")) - 1  # non-ASCII: bytes, not characters

    received = [record for record in records if record.get("dir") == "in" and "msg" in record]
    stdout_lines = done.stdout_lines
    assert [record["msg"] for record in received] == parse_lines(stdout_lines)
    assert [record["bytes"] for record in received] == [len(raw) for raw in stdout_lines]
    assert response_to(parse_lines(stdout_lines), 2)["cwd"] == str(cwd)

    events = [record for record in records if "event" in record]
    assert {"connect", "handshake", "close"} <= {record["event"] for record in events}
    (close,) = [record for record in events if record["event"] == "close"]
    assert close.get("code") == 1000
    last_out = max(i for i, record in enumerate(records) if record in out)
    assert records.index(close) > last_out  # closed after the last message sent
    for record in records:
        assert ("event" in record) != ("msg" in record), record
        if "msg" in record:
            assert set(record) == {"t", "dir", "bytes", "msg"}

    # A second run appends to the file.
    again = await run_proxy_cli(["--trace", str(trace)], initialize(1), env=codex_server.env, timeout=TIMEOUT)
    assert again.status == 0, again.stderr_text
    more = read_trace(trace)
    assert more[: len(records)] == records
    assert [record.get("event") for record in more].count("connect") == 2


@pytest.mark.codex
async def test_vv_logs_one_line_per_message_without_payloads(codex_server: CodexServer, cwd: Path) -> None:
    lines, stdin = session_stdin(cwd)

    done = await run_proxy_cli(["-vv"], stdin, env=codex_server.env, timeout=TIMEOUT)

    assert done.status == 0, done.stderr_text
    stdout_messages = parse_lines(done.stdout_lines)
    assert SECRET_CLIENT_NAME in response_to(stdout_messages, 1)["userAgent"]  # the payload has it...
    assert SECRET_CLIENT_NAME not in done.stderr_text  # ...stderr does not
    assert PAYLOAD_DIR not in done.stderr_text
    assert "t\u00ebst" not in done.stderr_text

    logged = message_log_lines(done.stderr_text)
    out = [(size, summary) for direction, size, summary in logged if direction == "out"]
    received = [(size, summary) for direction, size, summary in logged if direction == "in"]
    assert [size for size, _ in out] == [len(raw) - 1 for raw in lines]
    for (_, summary), raw in zip(out, lines, strict=True):
        assert summarizes(summary, json.loads(raw)), summary
    assert [size for size, _ in received] == [len(raw) for raw in done.stdout_lines]
    for (_, summary), message in zip(received, stdout_messages, strict=True):
        assert summarizes(summary, message), (summary, message)
    # -vv includes -v: the connection events are there too.
    assert f"connected to {codex_server.socket_path}" in done.stderr_text


@pytest.mark.codex
async def test_v_logs_connection_events_only(codex_server: CodexServer, cwd: Path) -> None:
    _, stdin = session_stdin(cwd)

    done = await run_proxy_cli(["-v"], stdin, env=codex_server.env, timeout=TIMEOUT)

    assert done.status == 0, done.stderr_text
    assert message_log_lines(done.stderr_text) == []
    stderr_lines = done.stderr_text.splitlines()
    assert all(text.startswith(PREFIX) for text in stderr_lines), stderr_lines
    assert f"connected to {codex_server.socket_path}" in done.stderr_text
    assert any("handshake" in text for text in stderr_lines)
    assert any("EOF" in text for text in stderr_lines)  # the drain
    assert any("close" in text and "1000" in text for text in stderr_lines)
    assert SECRET_CLIENT_NAME not in done.stderr_text
    assert PAYLOAD_DIR not in done.stderr_text


@pytest.mark.codex
async def test_q_keeps_a_clean_run_silent(codex_server: CodexServer) -> None:
    """A line that is not JSON is skipped with a warning; -q leaves only errors, so a clean run says nothing."""
    stdin = initialize(1) + b"not json\n" + INITIALIZED + request(2, "thread/list")

    loud = await run_proxy_cli([], stdin, env=codex_server.env, timeout=TIMEOUT)
    quiet = await run_proxy_cli(["-q"], stdin, env=codex_server.env, timeout=TIMEOUT)

    assert loud.status == 0, loud.stderr_text
    assert "line 2" in one_line(loud.stderr_text)
    assert quiet.status == 0, quiet.stderr_text
    assert quiet.stderr_text == ""
    messages = parse_lines(quiet.stdout_lines)
    assert response_to(messages, 1)["codexHome"] == str(codex_server.codex_home)
    assert isinstance(response_to(messages, 2)["data"], list)
