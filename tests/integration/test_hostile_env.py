"""A hostile environment for the CLI as a subprocess (issue 9): a full tiny disk under the spool, no temporary
folder, a low descriptor limit, closed and shared stdio, signal storms, a FIFO as the trace file.

Each test names the defect it guards. The disk tests run the proxy in a private mount namespace
(``unshare --mount``, as root) on a 1 MiB tmpfs, and skip with the reason elsewhere.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from .proxy_process import ROOT, Finished, ProxyProcess, finish, finished, proxy_env, run_proxy_cli
from .scripted_server import ScriptedConnection, open_scripted_server
from .test_faults import Spam
from .test_scripted_server import GUARD, one_line, sock_args

MiB = 1024 * 1024
UNSHARE = shutil.which("unshare")


def proxy_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "proxy", "proxy", *args]


def private_mounts_unavailable() -> str | None:
    """Why a private mount namespace with a tmpfs cannot be made here, or None when it can."""
    if UNSHARE is None:
        return "unshare (util-linux) is not installed"
    if os.geteuid() != 0:
        return "not root: mounting a tmpfs in a private mount namespace needs CAP_SYS_ADMIN"
    probe = tempfile.mkdtemp(prefix="cap-probe-")
    try:
        done = subprocess.run(
            [UNSHARE, "--mount", "sh", "-c", 'mount -t tmpfs -o size=64k tmpfs "$0"', probe],
            capture_output=True,
            check=False,
        )
    finally:
        os.rmdir(probe)
    if done.returncode != 0:
        return f"unshare --mount cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}"
    return None


def in_private_mounts(script: str, *argv: str) -> list[str]:
    """*argv* run after the shell *script* (mounts) in a private mount namespace; "$@" in *script* is *argv*."""
    assert UNSHARE is not None
    return [UNSHARE, "--mount", "--propagation", "private", "sh", "-c", f'{script} && exec "$@"', "sh", *argv]


@asynccontextmanager
async def running(
    argv: Sequence[str],
    env: dict[str, str] | None = None,
    preexec_fn: Callable[[], None] | None = None,
    cwd: str | None = None,
    stdin: int | None = subprocess.PIPE,
    stdout: int | None = subprocess.PIPE,
    stderr: int | None = subprocess.PIPE,
    pass_fds: Sequence[int] = (),
) -> AsyncIterator[ProxyProcess]:
    """Like :func:`.proxy_process.running_proxy` for any command line (*env*: the whole environment, default
    :func:`.proxy_process.proxy_env`): stdin and stdout are pipes, stderr is collected; killed and reaped when
    the block ends."""
    process = await trio.lowlevel.open_process(
        list(argv),
        env=env if env is not None else proxy_env(),
        cwd=cwd or str(ROOT),
        preexec_fn=preexec_fn,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        pass_fds=pass_fds,
    )
    proxy = ProxyProcess(process)
    try:
        async with trio.open_nursery() as nursery:
            if process.stderr is not None:
                nursery.start_soon(proxy._collect_stderr)
            try:
                yield proxy
            finally:
                proxy.kill()
                with trio.CancelScope(shield=True):
                    await proxy.wait()
    finally:
        with trio.CancelScope(shield=True):
            for pipe in (process.stdin, process.stdout, process.stderr):
                if pipe is not None:
                    await pipe.aclose()


async def push_until_closed(conn: ScriptedConnection, spam: Spam, count: int) -> list[int | None]:
    """Accept, push *count* spam messages while taking what the proxy sends, return its close code."""
    await conn.accept()
    codes: list[int | None] = []

    async def push() -> None:
        try:
            for seq in range(count):
                await conn.send_raw(spam.frames(seq, 1))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async with trio.open_nursery() as nursery:
        nursery.start_soon(push)
        codes.append(await conn.receive_close())
        nursery.cancel_scope.cancel()
    return codes


def check_spam_lines(result: Finished, spam: Spam) -> int:
    lines = result.stdout_lines  # asserts whole lines
    for seq, line in enumerate(lines):
        spam.check_line(line + b"\n", seq)
    return len(lines)


# -- #1: the spool's disk fills up part way through a write -------------------------------------------------


async def test_full_spool_disk_ends_74_with_whole_lines(tmp_path: Path) -> None:
    """issue 9 #1: on a 1 MiB tmpfs, 100 KB messages and a stalled reader: a write that fits only in part was
    lost, then the proxy spun at 100% CPU and ignored SIGTERM. Now: one line, exit 74, whole lines only."""
    reason = private_mounts_unavailable()
    if reason:
        pytest.skip(reason)
    spam = Spam(100_000)
    spool = Path(tempfile.mkdtemp(prefix="cap-spool-"))
    codes: list[int | None] = []

    async def handler(conn: ScriptedConnection) -> None:
        codes.extend(await push_until_closed(conn, spam, 400))  # 40 MB: 8 MiB memory + 1 MiB disk overflow

    try:
        with trio.fail_after(GUARD):
            async with open_scripted_server(tmp_path, handler) as server:
                argv = in_private_mounts(
                    f"mount -t tmpfs -o size=1m tmpfs {spool}",
                    *proxy_command(*sock_args(server, "--ping-interval", "0")),
                )
                async with running(argv, env=proxy_env({"TMPDIR": str(spool)})) as proxy:
                    # Nobody reads stdout until the proxy has given up on the spool (its close frame).
                    while not codes:
                        await trio.sleep(0.05)
                    ended = await finish(proxy)
                await server.wait_handled()
    finally:
        shutil.rmtree(spool, ignore_errors=True)
    result = finished(proxy, ended)
    assert result.status == 74, result.stderr_text
    line = one_line(result.stderr)
    assert f"cannot write the spool file in {spool}: No space left on device" in line, line
    assert codes == [1001]
    assert 0 < check_spam_lines(result, spam) < 400


async def test_message_that_fits_the_spool_disk_only_in_part_ends_74(tmp_path: Path) -> None:
    """issue 9 #1, the exact case: one 9 MiB message (past the 8 MiB kept in memory, so it goes to the spool
    whole) on a 1 MiB tmpfs, then silence. pwrite() wrote 1 MiB and its short count was ignored, so the stdout
    writer looped forever on empty reads (100% CPU, SIGTERM ignored). Now the short write is an error: exit 74."""
    reason = private_mounts_unavailable()
    if reason:
        pytest.skip(reason)
    big = Spam(9 * MiB)
    spool = Path(tempfile.mkdtemp(prefix="cap-spool-"))
    codes: list[int | None] = []

    async def handler(conn: ScriptedConnection) -> None:
        await conn.accept()
        await conn.send_raw(big.frames(0, 1))
        codes.append(await conn.receive_close())

    try:
        with trio.fail_after(GUARD):
            async with open_scripted_server(tmp_path, handler) as server:
                argv = in_private_mounts(
                    f"mount -t tmpfs -o size=1m tmpfs {spool}",
                    *proxy_command(*sock_args(server, "--ping-interval", "0")),
                )
                async with running(argv, env=proxy_env({"TMPDIR": str(spool)})) as proxy:
                    ended = await finish(proxy)  # stdin stays open: only the spool failure can end this
                await server.wait_handled()
    finally:
        shutil.rmtree(spool, ignore_errors=True)
    result = finished(proxy, ended)
    assert result.status == 74, result.stderr_text
    assert "No space left on device" in one_line(result.stderr)
    assert codes == [1001]
    assert result.stdout == b""


# -- #7: no usable temporary folder ------------------------------------------------------------------------


async def test_no_usable_temp_folder_ends_74_with_whole_lines() -> None:
    """issue 9 #7: TMPDIR unset, /tmp and /var/tmp read-only (and the working folder): a FileNotFoundError
    traceback from the error path calling gettempdir() again, and stdout ending in half a line."""
    reason = private_mounts_unavailable()
    if reason:
        pytest.skip(reason)
    spam = Spam(100_000)
    codes: list[int | None] = []
    folder = Path(tempfile.mkdtemp(prefix="cap-", dir="/dev/shm"))  # outside /tmp, which is hidden below

    async def handler(conn: ScriptedConnection) -> None:
        codes.extend(await push_until_closed(conn, spam, 200))

    env = {key: value for key, value in proxy_env().items() if key not in ("TMPDIR", "TEMP", "TMP")}
    try:
        with trio.fail_after(GUARD):
            async with open_scripted_server(folder, handler) as server:
                # Read-only binds rather than empty tmpfs: the checkout and its venv may live under /tmp.
                mounts = " && ".join(
                    f"mount --bind {where} {where} && mount -o remount,bind,ro {where}"
                    for where in ("/tmp", "/var/tmp")
                )
                argv = in_private_mounts(
                    mounts + " && cd /tmp", *proxy_command(*sock_args(server, "--ping-interval", "0"))
                )
                async with running(argv, env=env, cwd="/") as proxy:
                    while not codes:
                        await trio.sleep(0.05)
                    ended = await finish(proxy)
                await server.wait_handled()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    result = finished(proxy, ended)
    assert result.status == 74, result.stderr_text
    line = one_line(result.stderr)
    assert "cannot write the spool file in the temporary folder" in line, line
    assert codes == [1001]
    check_spam_lines(result, spam)


# -- #3: a FIFO as the trace file ------------------------------------------------------------------------------


@pytest.mark.parametrize("reader", [False, True], ids=["nobody-reads", "a-reader"])
async def test_fifo_trace_file_is_refused_without_blocking(tmp_path: Path, reader: bool) -> None:
    """issue 9 #3: ``--trace FIFO`` with nobody reading blocked in open(), SIGTERM ignored. A FIFO (read or
    not) is refused at once: a stalled reader would stall the relay."""
    fifo = tmp_path / "trace.fifo"
    os.mkfifo(fifo)
    reader_fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK) if reader else None
    try:
        with trio.fail_after(GUARD):
            result = await run_proxy_cli(["--sock", str(tmp_path / "missing.sock"), "--trace", str(fifo)])
    finally:
        if reader_fd is not None:
            os.close(reader_fd)
    assert result.status == 74, result.stderr_text
    assert f"the trace file {fifo} is a FIFO" in one_line(result.stderr)


# -- #9: a low descriptor limit -------------------------------------------------------------------------------

TOO_MANY = "too many open files: the process may hold only"


async def answer_one(conn: ScriptedConnection) -> None:
    """Accept, answer request 1, take the close."""
    await conn.accept()
    message = await conn.receive_message()
    if message is None:
        return
    await conn.send_text('{"id":1,"result":{}}')
    await conn.receive_close()


@pytest.mark.parametrize("limit", range(4, 14))
async def test_low_descriptor_limit_is_a_local_failure(tmp_path: Path, limit: int) -> None:
    """issue 9 #9: ``ulimit -n`` 4-7 and 9 gave tracebacks, 8 "no app-server" (69), 10-11 "stdout is not open".
    Now each limit either works (0) or ends with the descriptor-limit line and 74."""

    def lower_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    with trio.fail_after(GUARD):
        async with open_scripted_server(tmp_path, answer_one) as server:
            done = await trio.run_process(
                proxy_command(*sock_args(server)),
                stdin=b'{"method":"go","id":1}\n',
                capture_stdout=True,
                capture_stderr=True,
                check=False,
                env=proxy_env(),
                cwd=str(ROOT),
                preexec_fn=lower_limit,
            )
    stderr = done.stderr.decode("utf-8", "replace")
    if limit == 4 and "Fatal Python error: init_import_site" in stderr:
        pytest.skip("with 4 descriptors this interpreter cannot import its site module (a documented limit)")
    if done.returncode == 0:
        assert done.stdout == b'{"id":1,"result":{}}\n'
        assert stderr == ""
    else:
        assert done.returncode == 74, stderr
        assert TOO_MANY in one_line(stderr), stderr
        assert done.stdout == b""


# -- #16: closed stdio ------------------------------------------------------------------------------------------


def closing(*fds: int) -> Callable[[], None]:
    def close() -> None:
        for fd in fds:
            os.close(fd)

    return close


async def test_closed_stdin_reads_as_eof(tmp_path: Path) -> None:
    """issue 9 #16: with ``<&-`` fd 0 became trio's epoll descriptor: exit 74 "cannot read stdin: Invalid
    argument". A closed stdin is EOF: nothing owed, close 1000, exit 0."""
    codes: list[int | None] = []

    async def handler(conn: ScriptedConnection) -> None:
        await conn.accept()
        codes.append(await conn.receive_close())

    with trio.fail_after(GUARD):
        async with open_scripted_server(tmp_path, handler) as server:
            done = await trio.run_process(
                proxy_command(*sock_args(server)),
                capture_stdout=True,
                capture_stderr=True,
                check=False,
                env=proxy_env(),
                cwd=str(ROOT),
                preexec_fn=closing(0),
            )
            await server.wait_handled()
    assert done.returncode == 0, done.stderr
    assert done.stderr == b""
    assert codes == [1000]


async def test_closed_stdout_is_refused_before_connecting(tmp_path: Path) -> None:
    """issue 9 #16: with ``>&-`` the request was sent and answered before exit 74 "Invalid argument"."""

    async def handler(conn: ScriptedConnection) -> None:
        raise AssertionError("the proxy connected although it has no stdout")

    with trio.fail_after(GUARD):
        async with open_scripted_server(tmp_path, handler) as server:
            done = await trio.run_process(
                proxy_command(*sock_args(server)),
                stdin=b'{"method":"go","id":1}\n',
                capture_stderr=True,
                check=False,
                env=proxy_env(),
                cwd=str(ROOT),
                preexec_fn=closing(1),
            )
            assert server.connections == []
    assert done.returncode == 74, done.stderr
    assert one_line(done.stderr).startswith("stdout is not open;")


async def test_closed_stderr_still_relays(tmp_path: Path) -> None:
    async def handler(conn: ScriptedConnection) -> None:
        await answer_one(conn)

    with trio.fail_after(GUARD):
        async with open_scripted_server(tmp_path, handler) as server:
            done = await trio.run_process(
                proxy_command(*sock_args(server)),
                stdin=b'{"method":"go","id":1}\n',
                capture_stdout=True,
                check=False,
                env=proxy_env(),
                cwd=str(ROOT),
                preexec_fn=closing(2),
            )
            await server.wait_handled()
    assert done.returncode == 0
    assert done.stdout == b'{"id":1,"result":{}}\n'


# -- #15: shared stdio ---------------------------------------------------------------------------------------


async def test_inherited_stdio_flags_are_never_changed(tmp_path: Path) -> None:
    """issue 9 #15: the proxy set O_NONBLOCK on its inherited descriptors, whose open file descriptions other
    processes share: a sibling writing to the same stdout pipe then failed with EAGAIN. Our own ends of the
    same pipes must stay blocking while the proxy relays."""
    in_read, in_write = os.pipe()
    out_read, out_write = os.pipe()
    answered = trio.Event()

    async def handler(conn: ScriptedConnection) -> None:
        await conn.accept()
        assert await conn.receive_text() == '{"method":"go","id":1}'
        await conn.send_text('{"id":1,"result":{}}')
        answered.set()
        await conn.receive_close()

    try:
        with trio.fail_after(GUARD):
            async with (
                open_scripted_server(tmp_path, handler) as server,
                running(proxy_command(*sock_args(server)), stdin=in_read, stdout=out_write, stderr=out_write) as proxy,
            ):
                os.write(in_write, b'{"method":"go","id":1}\n')
                await answered.wait()
                line = b""
                while not line.endswith(b"\n"):
                    await trio.lowlevel.wait_readable(out_read)
                    line += os.read(out_read, 4096)
                # The proxy is relaying, both pipes in use: the descriptions it shares with us are untouched.
                for fd in (in_read, in_write, out_read, out_write):
                    assert os.get_blocking(fd), f"fd {fd} was made non-blocking"
                os.close(in_write)
                in_write = -1
                status = await proxy.wait()
    finally:
        for fd in (in_read, in_write, out_read, out_write):
            if fd >= 0:
                os.close(fd)
    assert line == b'{"id":1,"result":{}}\n'
    assert status == 0


async def test_every_warning_reaches_a_slow_reader_of_stdout_and_stderr(tmp_path: Path) -> None:
    """issue 9 #15: with ``2>&1`` into a slow reader only 5 of 50 "not sent" warnings arrived (stderr had
    become non-blocking through the shared description, and logging drops a line on EAGAIN)."""
    bad = b"not json\n" * 50
    out_read, out_write = os.pipe()

    spam = Spam(10_000)

    async def handler(conn: ScriptedConnection) -> None:
        await conn.accept(trailing=spam.frames(0, 200))  # 2 MB for stdout: the shared pipe is full at once
        while await conn.receive_message() is not None:
            pass

    text = b""
    try:
        with trio.fail_after(GUARD):
            async with (
                open_scripted_server(tmp_path, handler) as server,
                running(proxy_command(*sock_args(server)), stdout=out_write, stderr=out_write) as proxy,
            ):
                os.close(out_write)
                out_write = -1
                assert proxy.process.stdin is not None
                await proxy.process.stdin.send_all(
                    bad + b'{"method":"note","params":{"pad":"' + b"p" * 300_000 + b'"}}\n'
                )
                await proxy.process.stdin.aclose()
                await trio.sleep(1)  # the pipe fills up: nobody reads yet
                while True:
                    await trio.lowlevel.wait_readable(out_read)
                    chunk = os.read(out_read, 512)
                    if not chunk:
                        break
                    text += chunk
                    await trio.sleep(0.001)
                status = await proxy.wait()
    finally:
        for fd in (out_read, out_write):
            if fd >= 0:
                os.close(fd)
    assert status == 0, text[-300:]
    assert text.count(b"not sent") == 50, text.count(b"not sent")


# -- #10, #11, #12: signals at any moment ------------------------------------------------------------------

SIGNALS = [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)]
#: SIGHUP and SIGTERM caught: the entry point's handlers are in place (the interpreter catches only SIGINT).
OUR_HANDLERS = 1 << (signal.SIGHUP - 1) | 1 << (signal.SIGTERM - 1)


def caught_signals(pid: int) -> int:
    """The process's mask of caught signals (``SigCgt``); 0 once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("SigCgt:"):
            return int(line.split()[1], 16)
    return 0


def from_the_interpreter_start_up(stderr: str) -> bool:
    """A KeyboardInterrupt traceback raised before the proxy's first line ran (site, runpy): the interpreter's
    own window, a documented limit. One that passes through the proxy's imports (trio, click...) is a defect."""
    return "KeyboardInterrupt" in stderr and "proxy/cli.py" not in stderr and "site-packages/" not in stderr


@pytest.mark.parametrize("delay_ms", [0, 20, 50, 100, 150, 200, 300])
async def test_sigint_during_start_up_ends_130_without_a_traceback(tmp_path: Path, delay_ms: int) -> None:
    """issue 9 #10: a SIGINT in the first ~300 ms after exec (imports, click parsing, trio start) ended with a
    KeyboardInterrupt traceback and death by the signal."""

    async def handler(conn: ScriptedConnection) -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):  # the signal may come first
            await conn.accept()
            while await conn.receive_message() is not None:
                pass

    with trio.fail_after(GUARD):
        async with (
            open_scripted_server(tmp_path, handler) as server,
            running(proxy_command(*sock_args(server))) as proxy,
        ):
            await trio.sleep(delay_ms / 1000)
            ours = caught_signals(proxy.process.pid) & OUR_HANDLERS == OUR_HANDLERS
            proxy.signal(signal.SIGINT)
            ended = await finish(proxy)
    result = finished(proxy, ended)
    early = (
        result.stderr == b""  # before the interpreter installed its own SIGINT handler
        or "Fatal Python error: init_import_site" in result.stderr_text  # while it imported site
        or from_the_interpreter_start_up(result.stderr_text)
    )
    if not ours and result.status in (-signal.SIGINT, 1) and early:
        pytest.skip("the signal came before the interpreter ran the proxy's first line (documented limit)")
    assert result.status == 130, result.stderr_text
    assert "Traceback" not in result.stderr_text
    assert "Aborted!" not in result.stderr_text
    assert result.stdout == b""


@pytest.mark.parametrize(("signum", "status"), SIGNALS)
@pytest.mark.parametrize("delay_ms", [0, 2, 5, 10, 30, 60, 120, 250])
async def test_signal_once_the_entry_point_runs_ends_128_plus_n(
    tmp_path: Path, signum: signal.Signals, status: int, delay_ms: int
) -> None:
    """issue 9 #10: from the entry point's first line on (its handlers show in SigCgt), any of the three
    signals, through the imports, click and trio's start, ends with 128+N and no traceback."""

    async def handler(conn: ScriptedConnection) -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):  # the signal may come first
            await conn.accept()
            while await conn.receive_message() is not None:
                pass

    with trio.fail_after(GUARD):
        async with (
            open_scripted_server(tmp_path, handler) as server,
            running(proxy_command(*sock_args(server))) as proxy,
        ):
            while caught_signals(proxy.process.pid) & OUR_HANDLERS != OUR_HANDLERS:
                await trio.sleep(0.0005)
            await trio.sleep(delay_ms / 1000)
            proxy.signal(signum)
            ended = await finish(proxy)
    result = finished(proxy, ended)
    assert result.status == status, result.stderr_text
    assert "Traceback" not in result.stderr_text
    assert result.stdout == b""


@pytest.mark.parametrize("delay_ms", [0, 2, 5, 10, 20, 35, 50])
async def test_signal_right_after_the_drain_never_kills(tmp_path: Path, delay_ms: int) -> None:
    """issue 9 #12: SIGTERM 2-50 ms after the drain (stdin closed, close 1000 sent) killed the process
    (status -15), as the handler was removed before the interpreter exited. Now: the session's status (0),
    or 143 when it came in time to cut the ending short; never death by the signal."""
    closed = trio.Event()

    async def handler(conn: ScriptedConnection) -> None:
        await conn.accept()
        assert await conn.receive_text() == '{"method":"go","id":1}'
        await conn.send_text('{"id":1,"result":{}}')
        assert await conn.receive_close() == 1000
        closed.set()

    with trio.fail_after(GUARD):
        async with (
            open_scripted_server(tmp_path, handler) as server,
            running(proxy_command(*sock_args(server))) as proxy,
        ):
            await proxy.send(b'{"method":"go","id":1}\n')
            assert await proxy.read_line() == b'{"id":1,"result":{}}'
            await proxy.close_stdin()
            await closed.wait()
            await trio.sleep(delay_ms / 1000)
            proxy.signal(signal.SIGTERM)
            ended = await finish(proxy)
            await server.wait_handled()
    result = finished(proxy, ended)
    assert result.status in (0, 143), f"status {result.status}: {result.stderr_text}"
    assert result.stderr == b""


@pytest.mark.parametrize("count", [2, 3])
async def test_signal_storm_while_stdout_is_full_keeps_whole_lines(tmp_path: Path, count: int) -> None:
    """issue 9 #11: two or three SIGINTs a few ms apart while stdout's pipe is full: stdout ended mid-line, or
    click printed ``Aborted!`` with exit 1. Now: whole lines, exit 130."""
    spam = Spam(10_000)  # 10,001-byte lines: a 64 KiB pipe never ends at a line end
    pushed = trio.Event()

    async def handler(conn: ScriptedConnection) -> None:
        await conn.accept()
        try:
            await conn.send_raw(spam.frames(0, 300))  # 3 MB: the pipe is full, the rest waits in the proxy
            pushed.set()
            while await conn.receive_message() is not None:
                pass
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    with trio.fail_after(GUARD):
        async with (
            open_scripted_server(tmp_path, handler) as server,
            running(proxy_command(*sock_args(server, "--ping-interval", "0"))) as proxy,
        ):
            await pushed.wait()
            await trio.sleep(0.3)  # the proxy has read it all; its stdout writer is blocked mid-line
            for _ in range(count):
                proxy.signal(signal.SIGINT)
                await trio.sleep(0.003)
            await trio.sleep(0.2)
            ended = await finish(proxy)  # now the reader takes everything, to EOF
    result = finished(proxy, ended)
    assert result.status == 130, result.stderr_text
    assert "Aborted!" not in result.stderr_text
    assert "Traceback" not in result.stderr_text
    check_spam_lines(result, spam)  # whole lines, in order


async def test_regular_files_as_stdin_and_stdout(tmp_path: Path) -> None:
    """``proxy < session.jsonl > replies.jsonl``: regular files take the worker-thread path of proxy.stdio; the
    output is appended at the shell's offset, after what the file already held."""
    session = tmp_path / "session.jsonl"
    session.write_bytes(b'{"method":"go","id":1}\n{"method":"go","id":2}\n')
    replies = tmp_path / "replies.jsonl"

    async def handler(conn: ScriptedConnection) -> None:
        await conn.accept()
        for number in (1, 2):
            assert await conn.receive_text() == f'{{"method":"go","id":{number}}}'
            await conn.send_text(f'{{"id":{number},"result":{{}}}}')
        assert await conn.receive_close() == 1000

    with open(session, "rb") as stdin, open(replies, "wb") as stdout:
        stdout.write(b"before\n")
        stdout.flush()
        with trio.fail_after(GUARD):
            async with open_scripted_server(tmp_path, handler) as server:
                done = await trio.run_process(
                    proxy_command(*sock_args(server)),
                    stdin=stdin,
                    stdout=stdout,
                    capture_stderr=True,
                    check=False,
                    env=proxy_env(),
                    cwd=str(ROOT),
                )
                await server.wait_handled()
    assert done.returncode == 0, done.stderr
    assert done.stderr == b""
    assert replies.read_bytes() == b'before\n{"id":1,"result":{}}\n{"id":2,"result":{}}\n'


async def test_socketpair_stdio_as_node_gives_it(tmp_path: Path) -> None:
    """libuv (Node's child_process) gives a child socketpairs for stdio: the proxy relays over them with
    MSG_DONTWAIT and leaves the shared sockets blocking (issue 9 #15)."""
    ours, theirs = socket.socketpair()
    probe = os.dup(theirs.fileno())  # the child's open file description, seen from here

    async def handler(conn: ScriptedConnection) -> None:
        await conn.accept()
        assert await conn.receive_text() == '{"method":"go","id":1}'
        await conn.send_text('{"id":1,"result":{}}')
        assert await conn.receive_close() == 1000

    try:
        with trio.fail_after(GUARD):
            async with (
                open_scripted_server(tmp_path, handler) as server,
                running(proxy_command(*sock_args(server)), stdin=theirs.fileno(), stdout=theirs.fileno()) as proxy,
            ):
                theirs.close()
                ours.sendall(b'{"method":"go","id":1}\n')
                reply = b""
                while not reply.endswith(b"\n"):
                    await trio.lowlevel.wait_readable(ours)
                    reply += ours.recv(4096)
                assert os.get_blocking(probe), "the proxy made its socket stdio non-blocking"
                ours.shutdown(socket.SHUT_WR)
                status = await proxy.wait()
    finally:
        ours.close()
        theirs.close()
        os.close(probe)
    assert reply == b'{"id":1,"result":{}}\n'
    assert status == 0
