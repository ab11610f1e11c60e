"""The notify command runner of ``serve`` (proxy.serve.notify) with real processes: the event on stdin and in the
environment, never blocking the caller, the timeout killing the whole process group, failures logged, the rate
limit, and the checks of ``--notify-command`` itself."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import pytest
import trio

from proxy.errors import UsageError
from proxy.serve.notify import Notifier, parse_notify_command
from proxy.serve.notify_rules import NotifyEvent, RunLimiter

TIMEOUT = 60


def event(kind: str = "approval", body: bytes = b'{"event":"approval"}\n') -> NotifyEvent:
    return NotifyEvent(kind, body)


async def wait_for(condition: object, what: str) -> None:
    with trio.fail_after(TIMEOUT):
        while not condition():  # type: ignore[operator]
            await trio.sleep(0.02)


async def test_the_command_gets_the_event_on_stdin_and_in_its_environment(tmp_path: Path) -> None:
    out = tmp_path / "out"
    script = f"import os,sys; open({str(out)!r},'w').write(os.environ['CODEX_APPSERVER_EVENT']+'|'+sys.stdin.read())"
    notifier = Notifier([sys.executable, "-c", script])
    async with trio.open_nursery() as nursery:
        notifier.nursery = nursery
        notifier.notify(event("turn-completed", b'{"x":1}\n'), "S")  # returns at once
        await wait_for(lambda: out.exists() and out.read_text().endswith("\n"), "the command's output")
    assert out.read_text() == 'turn-completed|{"x":1}\n'


async def test_a_slow_command_is_killed_with_its_process_group(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pids = tmp_path / "pids"
    # The command starts a child that would outlive it; both are killed after the timeout.
    script = (
        "import os, subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(pids)!r}, 'w').write(f'{{os.getpid()}} {{child.pid}}\\n')\n"
        "time.sleep(60)\n"
    )
    notifier = Notifier([sys.executable, "-c", script], timeout=5.0)  # time to start both, even under load
    caplog.set_level(logging.WARNING, "codex_appserver")
    started = trio.current_time()
    async with trio.open_nursery() as nursery:
        notifier.nursery = nursery
        notifier.notify(event(), "S")
    assert trio.current_time() - started < 30
    parent, child = (int(pid) for pid in pids.read_text().split())

    def gone(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        # A zombie until its parent (init, for the orphaned child) reaps it.
        try:
            with open(f"/proc/{pid}/stat") as stat:
                return stat.read().split(") ", 1)[1].startswith("Z")
        except FileNotFoundError:  # reaped meanwhile
            return True

    await wait_for(lambda: gone(parent) and gone(child), "the process group to be gone")
    assert "the notify command (approval event) ran longer than 5 s; killed" in caplog.text


async def test_failures_are_one_log_line_without_the_event(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "codex_appserver")
    notifier = Notifier([sys.executable, "-c", "import sys; sys.exit(3)"])
    async with trio.open_nursery() as nursery:
        notifier.nursery = nursery
        notifier.notify(event(body=b'{"secret":"payload"}\n'), "S")
    assert "the notify command (approval event) failed with exit status 3" in caplog.text
    assert "payload" not in caplog.text


async def test_the_rate_limit_runs_at_most_max_runs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "out"
    caplog.set_level(logging.WARNING, "codex_appserver")
    script = f"open({str(out)!r}, 'a').write('x')"
    notifier = Notifier([sys.executable, "-c", script], limiter=RunLimiter(max_runs=3, window=60, max_running=10))
    async with trio.open_nursery() as nursery:
        notifier.nursery = nursery
        for _ in range(5):
            notifier.notify(event(), "S")
    assert out.read_text() == "xxx"
    assert caplog.text.count("notify command not run: 3 notify commands ran within 60 s") == 2


async def test_cancel_kills_running_commands_and_starts_no_more(tmp_path: Path) -> None:
    out = tmp_path / "out"
    script = f"import time; open({str(out)!r}, 'a').write('x'); time.sleep(60)"
    notifier = Notifier([sys.executable, "-c", script], timeout=60)
    started = trio.current_time()
    async with trio.open_nursery() as nursery:
        notifier.nursery = nursery
        notifier.notify(event(), "S")
        await wait_for(lambda: out.exists(), "the first run")
        notifier.cancel()
        notifier.notify(event(), "S")
    assert trio.current_time() - started < 30
    assert out.read_text() == "x"


def test_parse_notify_command() -> None:
    assert parse_notify_command(f"{sys.executable} -c 'print(1)'") == (sys.executable, "-c", "print(1)")
    for bad, needle in (("", "is empty"), ("sh -c 'x", "check its quotes"), ("no-such-program-xyz", "cannot find")):
        with pytest.raises(UsageError) as caught:
            parse_notify_command(bad)
        assert needle in caught.value.message
