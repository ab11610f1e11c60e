"""Build and run the C echo server (``echo_server.c``) with the system C compiler."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SOURCE = Path(__file__).with_name("echo_server.c")


@dataclass(frozen=True)
class EchoServer:
    pid: int
    sock: str


def compile_echo(folder: Path) -> Path:
    """Compile the echo server into *folder* with ``$CC`` or ``cc`` at -O2; return the executable."""
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise SystemExit("benchmarks: no C compiler (cc) found; install one (e.g. apt-get install gcc)")
    binary = folder / "echo_server"
    subprocess.run([compiler, "-O2", "-o", str(binary), str(SOURCE)], check=True)
    return binary


@contextlib.contextmanager
def echo_server(folder: Path) -> Iterator[EchoServer]:
    """Run the echo server on a socket in *folder* until the block ends (stopped by its pid)."""
    binary = compile_echo(folder)
    sock = str(folder / "echo.sock")
    proc = subprocess.Popen([str(binary), sock], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        if proc.stdout.readline() != b"ready\n":
            raise SystemExit("benchmarks: the echo server did not start")
        yield EchoServer(proc.pid, sock)
    finally:
        proc.terminate()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
