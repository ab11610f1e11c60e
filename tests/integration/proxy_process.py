"""Run ``codex-appserver proxy`` as a real subprocess with pipes (``python -m proxy``)."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parents[2]


def proxy_argv(*args: str) -> list[str]:
    """The command line of the proxy under test."""
    return [sys.executable, "-m", "proxy", "proxy", *args]


def proxy_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for the proxy: this one, the repo importable, plus *extra*."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra or {})
    return env


@dataclass(frozen=True)
class Finished:
    """A finished proxy run."""

    status: int
    stdout: bytes
    stderr: bytes

    @property
    def stderr_text(self) -> str:
        return self.stderr.decode("utf-8", "replace")

    @property
    def stdout_lines(self) -> list[bytes]:
        """stdout split on LF; asserts it ended with a whole line (or is empty)."""
        assert not self.stdout or self.stdout.endswith(b"\n"), f"partial line on stdout: {self.stdout[-80:]!r}"
        return self.stdout.split(b"\n")[:-1] if self.stdout else []


async def run_proxy_cli(
    args: Sequence[str],
    stdin: bytes = b"",
    env: Mapping[str, str] | None = None,
    timeout: float = 60,
) -> Finished:
    """Run the proxy with *stdin* fed at once and closed; collect everything it printed."""
    with trio.fail_after(timeout):
        done = await trio.run_process(
            proxy_argv(*args),
            stdin=stdin,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env=proxy_env(env),
            cwd=str(ROOT),
        )
    return Finished(done.returncode, done.stdout, done.stderr)


class ProxyProcess:
    """An interactive proxy: write lines to its stdin, read lines from its stdout, signal it, wait for it."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self._buffer = bytearray()
        self._stderr = bytearray()

    @classmethod
    async def start(
        cls, nursery: trio.Nursery, args: Sequence[str], env: Mapping[str, str] | None = None
    ) -> ProxyProcess:
        process = await trio.lowlevel.open_process(
            proxy_argv(*args),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=proxy_env(env),
            cwd=str(ROOT),
        )
        self = cls(process)
        nursery.start_soon(self._collect_stderr)
        return self

    async def _collect_stderr(self) -> None:
        assert self.process.stderr is not None
        while chunk := await self.process.stderr.receive_some(65536):
            self._stderr += chunk

    @property
    def stderr_text(self) -> str:
        return self._stderr.decode("utf-8", "replace")

    async def send(self, data: bytes) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send_all(data)

    async def close_stdin(self) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.aclose()

    async def read_line(self) -> bytes:
        """The next stdout line without its LF; EOFError when stdout ends first."""
        assert self.process.stdout is not None
        while b"\n" not in self._buffer:
            chunk = await self.process.stdout.receive_some(1 << 20)
            if not chunk:
                raise EOFError(f"stdout ended; partial: {bytes(self._buffer[:80])!r}; stderr: {self.stderr_text}")
            self._buffer += chunk
        line, _, rest = bytes(self._buffer).partition(b"\n")
        self._buffer = bytearray(rest)
        return line

    async def read_rest(self) -> bytes:
        """Everything left on stdout until EOF."""
        assert self.process.stdout is not None
        while chunk := await self.process.stdout.receive_some(1 << 20):
            self._buffer += chunk
        rest, self._buffer = bytes(self._buffer), bytearray()
        return rest

    def signal(self, signum: signal.Signals) -> None:
        self.process.send_signal(signum)

    async def wait(self) -> int:
        return await self.process.wait()

    def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()


@asynccontextmanager
async def running_proxy(
    args: Sequence[str], env: Mapping[str, str] | None = None, reap_timeout: float = math.inf
) -> AsyncIterator[ProxyProcess]:
    """An interactive proxy (see :class:`ProxyProcess`), killed and reaped when the block ends however it ends
    (waiting at most *reap_timeout* seconds for it to go), its pipes closed afterwards."""
    process: ProxyProcess | None = None
    try:
        async with trio.open_nursery() as nursery:  # the nursery collects stderr until the proxy exits
            process = await ProxyProcess.start(nursery, args, env)
            try:
                yield process
            finally:
                process.kill()
                with trio.CancelScope(shield=True), trio.move_on_after(reap_timeout):
                    await process.wait()
    finally:
        if process is not None:
            with trio.CancelScope(shield=True):
                for pipe in (process.process.stdin, process.process.stdout, process.process.stderr):
                    if pipe is not None:
                        await pipe.aclose()


async def finish(proxy: ProxyProcess) -> tuple[int, bytes]:
    """Wait for an interactive proxy to exit: its status and everything it wrote to stdout."""
    stdout = await proxy.read_rest()
    return await proxy.wait(), stdout


def finished(proxy: ProxyProcess, ended: tuple[int, bytes]) -> Finished:
    """The whole run; call after the :func:`running_proxy` block, when stderr has been read to its end."""
    status, stdout = ended
    return Finished(status, stdout, proxy.stderr_text.encode())


async def close_and_finish(proxy: ProxyProcess) -> bytes:
    """Close stdin, read stdout to its end, expect exit 0; return what was left on stdout."""
    await proxy.close_stdin()
    status, rest = await finish(proxy)
    assert status == 0, proxy.stderr_text
    return rest
