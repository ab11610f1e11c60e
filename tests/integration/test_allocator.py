"""glibc malloc settings for streaming (:mod:`proxy.allocator`, issue 14): reads of big messages reuse heap memory.

Each check runs a fresh interpreter that reads 64 KiB messages from a pipe with ``os.read(fd, 1 MiB)``, as the
relay reads stdin and its socket, and counts its minor page faults (``getrusage``). Behaviour, not timing: the
speed this buys is measured by ``benchmarks``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

READS = 200
SCRIPT = f"""
import os, resource, sys
if sys.argv[1] == "tuned":
    from proxy.allocator import tune_for_streaming
    print(tune_for_streaming())
else:
    print(None)
r, w = os.pipe()
message = b"x" * 65536
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range({READS}):
    os.write(w, message)
    data = os.read(r, 1 << 20)
    assert data == message
    del data
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> tuple[str, int]:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
        check=True,
    )
    applied, faults = done.stdout.split()
    return applied, int(faults)


def _glibc() -> bool:
    try:
        return bool(os.confstr("CS_GNU_LIBC_VERSION"))
    except (ValueError, OSError):
        return False


@pytest.mark.skipif(not _glibc(), reason="the settings are glibc's")
def test_big_reads_reuse_heap_memory_once_tuned() -> None:
    _, plain = _faults("plain")
    applied, tuned = _faults("tuned")
    assert applied == "True"
    # Untuned, glibc maps each 1 MiB read buffer afresh (16 faults per 64 KiB read); tuned, the heap is reused.
    assert tuned < READS // 4, (plain, tuned)
    assert tuned * 10 < plain, (plain, tuned)


@pytest.mark.skipif(_glibc(), reason="checks the other C libraries")
def test_other_c_libraries_are_left_alone() -> None:
    applied, _ = _faults("tuned")
    assert applied == "False"
