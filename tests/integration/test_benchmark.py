"""The benchmark (``python -m benchmarks``) in its smallest mode: it runs, every byte checks out, the JSON is whole,
and the serve bridge case (one WebSocket client through ``codex-appserver serve`` and through websocat) ran.

Behaviour only: no speed is asserted here (speed is what the benchmark itself reports).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024


async def test_smoke_mode_completes_with_every_byte_checked(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    with trio.fail_after(600):
        done = await trio.run_process(
            [sys.executable, "-m", "benchmarks", "--mode", "smoke", "--json", str(out)],
            cwd=ROOT,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    result = json.loads(out.read_text())
    assert result["mode"] == "smoke"
    assert result["versions"]["websocat"] == "websocat 1.13.0"
    rows = {row["metric"]: row for row in result["summary"]["rows"]}
    for metric in ("msgs_per_s_100B", "msgs_per_s_1KiB", "mb_per_s_64KiB", "mb_per_s_1MiB", "rtt_p50_us"):
        assert rows[metric]["medians"]["proxy"] > 0
        assert rows[metric]["medians"]["direct"] > 0
    # Streams end with stdin EOF, which releases the 1 MiB message websocat otherwise holds back.
    assert rows["mb_per_s_1MiB"]["medians"]["websocat"] > 0
    assert rows["startup_ms"]["medians"]["floor"] > 0
    assert rows["peak_rss_big"]["medians"]["proxy"] > 0
    assert b"| throughput 100 B |" in done.stdout
    serve_rows = {row["metric"]: row for row in result["summary"]["serve_rows"]}
    for metric in ("msgs_per_s_100B", "msgs_per_s_1KiB", "mb_per_s_64KiB", "mb_per_s_1MiB", "rtt_p50_us"):
        assert serve_rows[metric]["medians"]["serve"] > 0
        assert serve_rows[metric]["ratio_to"] == "websocat-bridge"
    for metric in ("cpu_us_per_msg_100B", "peak_rss_stream"):
        assert serve_rows[metric]["medians"]["serve"] > 0
    # websocat may stall on big frames (recorded as None, see benchmarks/clients.py), never on 100 B messages.
    assert serve_rows["msgs_per_s_100B"]["medians"]["websocat-bridge"] > 0
    assert serve_rows["msgs_per_s_100B"]["ratio"] > 0
    assert b"serve bridge:" in done.stdout
    # serve's token (a fresh one in a 0600 file) is sent, never printed or saved.
    assert b"Bearer" not in done.stdout + done.stderr
    assert "Bearer" not in out.read_text()


async def test_a_table_of_a_file_that_is_not_a_run_is_one_line_and_status_2(tmp_path: Path) -> None:
    not_json = tmp_path / "notes.txt"
    not_json.write_text("hello\n")
    for path, reason in (
        (tmp_path / "missing.json", "No such file or directory"),
        (not_json, "not the JSON of a benchmark run"),
    ):
        done = await trio.run_process(
            [sys.executable, "-m", "benchmarks", "--table", str(path)],
            cwd=ROOT,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
        assert done.returncode == 2
        assert done.stdout == b""
        assert done.stderr.decode() == f"benchmarks: cannot print the table of {path}: {reason}\n"


def test_high_water_is_the_tools_own_peak_not_its_parents() -> None:
    """A child of a process holding 256 MiB: ``wait4`` says at least 256 MiB (Linux keeps the pre-exec mark),
    :class:`benchmarks.procfs.HighWater` says what the child itself used (32 MiB and the interpreter)."""
    from benchmarks.procfs import HighWater

    held = bytearray(256 * MiB)
    held[::4096] = b"x" * len(held[::4096])  # touch every page: resident
    uses_32_mib = "import time; x = bytearray(32 << 20); x[::4096] = b'y' * len(x[::4096]); time.sleep(0.3)"
    child = subprocess.Popen([sys.executable, "-c", uses_32_mib])
    with HighWater(child.pid) as high_water:
        time.sleep(0.5)  # the child has ended before the last readings
    _, _, usage = os.wait4(child.pid, 0)
    del held
    assert high_water.peak is not None
    assert 32 * MiB <= high_water.peak < 128 * MiB
    assert usage.ru_maxrss * 1024 >= 256 * MiB  # the measurement this replaces
