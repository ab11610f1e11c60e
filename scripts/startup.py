"""Startup and memory of ``codex-appserver proxy`` next to the import floor, measured the benchmark's way.

Startup is the time from spawning ``codex-appserver proxy --sock S`` until its first echoed line comes back from
the benchmark's C echo server (:func:`benchmarks.echo.echo_server`), next to the time of ``python -c "import
trio, wsproto, h11, click"`` (the floor), interleaved spawn by spawn (who goes first alternates), as
``benchmarks/run.py`` does in ``Bench._startups``. Memory is the proxy's own peak resident set size (``VmHWM``
in ``/proc/PID/status``) right after that first echo, and, with ``--stream``, after streaming each message size
of the benchmark's quick mode, next to the floor's VmHWM. Prints medians and ratios (ours / floor).

    .venv/bin/python scripts/startup.py [--spawns 30] [--stream] [--no-compile] [--python PATH]

Uses the installed console script next to the Python that runs it (``.venv/bin/codex-appserver``), and writes
the package's bytecode first (:func:`benchmarks.run.compile_proxy`; ``--no-compile``: as it is), like the
benchmark. A quick look, not the report: ``python -m benchmarks`` remains the measurement of record.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import workload  # noqa: E402
from benchmarks.echo import echo_server  # noqa: E402
from benchmarks.procfs import peak_rss_bytes  # noqa: E402
from benchmarks.run import (  # noqa: E402
    FLOOR_IMPORTS,
    MODES,
    PRINT_PEAK_RSS,
    ROUND_TRIP_BYTES,
    SIZES,
    WARM_UP,
    compile_proxy,
    tools,
)

MiB = 1024 * 1024


def floor_rss(python: str) -> int:
    """The floor's VmHWM, in bytes."""
    done = subprocess.run([python, "-c", FLOOR_IMPORTS + "; " + PRINT_PEAK_RSS], check=True, capture_output=True)
    return int(done.stdout) * 1024


def main() -> int:
    parser = argparse.ArgumentParser(prog="scripts/startup.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--spawns", type=int, default=30, help="spawns of each (default: 30)")
    parser.add_argument("--stream", action="store_true", help="also stream each size once and read the peak RSS")
    parser.add_argument(
        "--no-compile", action="store_true", help="leave the package's bytecode as it is (the benchmark compiles it)"
    )
    parser.add_argument("--python", default=sys.executable, help="the Python of the floor and the proxy's venv")
    args = parser.parse_args()
    python = args.python
    proxy = tools(python, Path(python).parent, None)[0]
    if not args.no_compile:
        compile_proxy()
    first = workload.line(ROUND_TRIP_BYTES, 0) + b"\n"
    floor_times: list[float] = []
    proxy_times: list[float] = []
    proxy_rss: list[int] = []
    with tempfile.TemporaryDirectory(prefix="codex-startup-") as folder, echo_server(Path(folder)) as echo:

        def spawn_floor() -> None:
            start = time.perf_counter()
            subprocess.run([python, "-c", FLOOR_IMPORTS], check=True)
            floor_times.append(time.perf_counter() - start)

        def spawn_proxy() -> None:
            start = time.perf_counter()
            with proxy.running(echo.sock) as running:
                running.round_trips([first])
                proxy_times.append(time.perf_counter() - start)
                proxy_rss.append(peak_rss_bytes(running.proc.pid))

        for spawn in range(args.spawns):
            for measure in (spawn_floor, spawn_proxy) if spawn % 2 == 0 else (spawn_proxy, spawn_floor):
                measure()
        floors = [floor_rss(python) for _ in range(5)]
        ratios = sorted(p / f for p, f in zip(proxy_times, floor_times, strict=True))
        floor_ms, proxy_ms = statistics.median(floor_times) * 1e3, statistics.median(proxy_times) * 1e3
        print(f"startup ({args.spawns} spawns each): floor {floor_ms:.1f} ms, proxy {proxy_ms:.1f} ms")
        per_spawn = statistics.median(ratios)
        print(f"  ratio of medians {proxy_ms / floor_ms:.3f}, median of per-spawn ratios {per_spawn:.3f}")
        floor_peak = statistics.median(floors)
        at_first = statistics.median(proxy_rss)
        print(f"peak RSS: floor {floor_peak / MiB:.1f} MiB, proxy after the first echo {at_first / MiB:.1f} MiB")
        print(f"  ratio {at_first / floor_peak:.3f}")
        if args.stream:
            quick = MODES["quick"]
            for label, size in SIZES.items():
                data = workload.lines_stream(size, quick.messages[label])
                with proxy.running(echo.sock) as running:
                    running.round_trips([WARM_UP])
                    result = running.stream(data, echo.pid)
                assert result.peak_rss is not None
                print(
                    f"  streaming {label:>5} x {quick.messages[label]}: peak RSS {result.peak_rss / MiB:.1f} MiB, "
                    f"ratio {result.peak_rss / floor_peak:.3f}"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
