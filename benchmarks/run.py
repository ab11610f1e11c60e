"""The benchmark's schedule: every case for every client, interleaved round-robin, repeated.

Results are kept per repetition (``samples[client][metric]`` is one value per repetition) so that ratios can be
taken within a repetition, where the machine's load was the same for both, and their median reported.
"""

from __future__ import annotations

import compileall
import importlib.util
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from . import workload
from .bridge import BridgeTool
from .clients import WEBSOCAT_ATTEMPTS, WEBSOCAT_STALL_SECONDS, BenchFailure, PipeTool, Running, Stalled, Stream
from .echo import EchoServer
from .wsclient import Direct

T = TypeVar("T")

KiB = 1024
MiB = 1024 * KiB
SIZES = {"100B": 100, "1KiB": KiB, "64KiB": 64 * KiB, "1MiB": MiB}
ROUND_TRIP_BYTES = 200
FLOOR_IMPORTS = "import trio, wsproto, h11, click"
#: Python that prints its own VmHWM in KiB (what :func:`~benchmarks.procfs.peak_rss_bytes` reads).
PRINT_PEAK_RSS = "print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM:')))"


#: A line (a frame, for the clients in this process) sent and checked before each stream is timed, so that the
#: time excludes startup and connect.
WARM_UP = workload.line(ROUND_TRIP_BYTES, -1) + b"\n"
WARM_UP_FRAMES = workload.frames(ROUND_TRIP_BYTES, 1, -1)


@dataclass(frozen=True)
class Mode:
    """How much each case sends: messages per size, round trips, startups, the big message's size."""

    name: str
    repetitions: int
    messages: dict[str, int]
    round_trips: int
    warmup: int
    startups: int
    big_message: int


MODES = {
    "full": Mode("full", 3, {"100B": 200_000, "1KiB": 100_000, "64KiB": 2_000, "1MiB": 128}, 2000, 200, 5, 64 * MiB),
    "quick": Mode("quick", 3, {"100B": 20_000, "1KiB": 10_000, "64KiB": 200, "1MiB": 16}, 300, 50, 2, 64 * MiB),
    "smoke": Mode("smoke", 1, {"100B": 200, "1KiB": 100, "64KiB": 4, "1MiB": 2}, 20, 5, 1, 1 * MiB),
}

Samples = dict[str, dict[str, list[float | None]]]


def compile_proxy() -> None:
    """Write the bytecode of the ``proxy`` package (``__pycache__``) before anything is timed, as ``pip install``
    does for an installed package.

    The import floor's modules (trio, wsproto, h11, click) come with their bytecode. An editable install
    (``pip install -e``) has none until Python writes it at a first import, which ``PYTHONDONTWRITEBYTECODE=1``
    forbids: then every spawn of the proxy compiled each of its modules from source (here 60-100 ms of a
    300 ms start) and the startup row measured the environment, not the proxy. A tree that cannot be written is
    left as it is (the proxy is then only slower to start).
    """
    spec = importlib.util.find_spec("proxy")
    if spec is not None and spec.origin is not None:
        compileall.compile_dir(Path(spec.origin).parent, quiet=2)


def tools(python: str, bin_dir: Path, websocat: str | None) -> list[PipeTool]:
    """The stdio clients: our proxy (its installed console script) and, when installed, websocat."""
    found = [
        PipeTool("proxy", lambda sock: [str(bin_dir / "codex-appserver"), "proxy", "--sock", sock], clean_exit=True)
    ]
    if websocat is not None:
        found.append(
            PipeTool(
                "websocat",
                lambda sock: [
                    websocat,
                    "-t",
                    "-B",
                    "4194304",
                    "--no-close",
                    "--ws-c-uri=ws://localhost/",
                    "-",
                    f"ws-c:unix:{sock}",
                ],
                clean_exit=False,
                stall_seconds=WEBSOCAT_STALL_SECONDS,
            )
        )
    return found


class Bench:
    """One benchmark run against one echo server."""

    def __init__(
        self, mode: Mode, echo: EchoServer, pipe_tools: list[PipeTool], python: str, bridges: list[BridgeTool]
    ) -> None:
        self.mode = mode
        self.echo = echo
        self.tools = pipe_tools
        self.bridges = {bridge.name: bridge for bridge in bridges}
        self.python = python
        self.samples: Samples = defaultdict(lambda: defaultdict(list))
        self._streams: dict[str, bytes] = {}
        self._frames: dict[str, tuple[bytes, bytes]] = {}

    def log(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    def run(self) -> Samples:
        names = ["direct", *(tool.name for tool in self.tools), *self.bridges]
        for repetition in range(self.mode.repetitions):
            order = names[repetition % len(names) :] + names[: repetition % len(names)]  # rotate who goes first
            self.log(f"repetition {repetition + 1}/{self.mode.repetitions}: order {', '.join(order)}")
            for label in SIZES:
                for name in order:
                    self._throughput(name, label)
            for name in order:
                self._round_trips(name)
            self._startups()
            self._big_message()
        return self.samples

    def _attempts(self, name: str, measure: Callable[[Running], T]) -> T | None:
        """Run *measure* on a fresh *name*; websocat gets retries after a stall (see WEBSOCAT_STALL_SECONDS)."""
        tool = self._tool(name)
        attempts = WEBSOCAT_ATTEMPTS if name == "websocat" else 1
        for attempt in range(attempts):
            try:
                with tool.running(self.echo.sock) as running:
                    running.round_trips([WARM_UP])
                    return measure(running)
            except Stalled as exc:
                if attempt + 1 == attempts:
                    if name == "websocat":
                        self.log(f"  {exc}")
                        return None
                    raise
                self.log(f"  {exc}; again")
        return None

    # -- cases -------------------------------------------------------------------------------------------

    def _tool(self, name: str) -> PipeTool:
        return next(tool for tool in self.tools if tool.name == name)

    def _record_stream(self, name: str, label: str, count: int, result: Stream | None) -> None:
        got = self.samples[name]
        if result is None:  # stalled on every attempt
            for metric in ("msgs_per_s", "mb_per_s", "echo_cpu_share", "cpu_us_per_msg", "peak_rss_stream"):
                got[f"{metric}_{label}"].append(None)
            return
        got[f"msgs_per_s_{label}"].append(count / result.seconds)
        got[f"mb_per_s_{label}"].append(count * SIZES[label] / result.seconds / 1e6)
        got[f"echo_cpu_share_{label}"].append(result.echo_cpu_seconds / result.seconds)
        if result.cpu_seconds is not None:
            got[f"cpu_us_per_msg_{label}"].append(result.cpu_seconds / count * 1e6)
        if result.peak_rss is not None:
            got[f"peak_rss_stream_{label}"].append(result.peak_rss)

    def _throughput(self, name: str, label: str) -> None:
        size, count = SIZES[label], self.mode.messages[label]
        result: Stream | None
        if name == "direct" or name in self.bridges:  # WebSocket clients in this process: frames
            if label not in self._frames:
                self._frames[label] = workload.frames(size, count)
            frames, back = self._frames[label]
            if name in self.bridges:
                result = self.bridges[name].measure(
                    self.echo.sock,
                    WARM_UP_FRAMES,
                    lambda client, pid: client.stream(frames, back, self.echo.pid, pid),
                    self.log,
                )
            else:
                direct = Direct(self.echo.sock)
                try:
                    result = direct.stream(frames, back, self.echo.pid)
                finally:
                    direct.close()
        else:
            if label not in self._streams:
                self._streams[label] = workload.lines_stream(size, count)
            result = self._attempts(name, lambda running: running.stream(self._streams[label], self.echo.pid))
        self._record_stream(name, label, count, result)
        if result is None:
            self.log(f"  {name:15} {label:6} stalled on every attempt")
            return
        rate = count / result.seconds
        self.log(f"  {name:15} {label:6} {rate:14,.0f} msg/s {rate * size / 1e6:9.1f} MB/s")

    def _round_trips(self, name: str) -> None:
        total = self.mode.warmup + self.mode.round_trips
        lines = [workload.line(ROUND_TRIP_BYTES, seq) + b"\n" for seq in range(total)]
        pairs = [workload.frames(ROUND_TRIP_BYTES, 1, seq) for seq in range(total)]
        got: list[float] | None
        if name == "direct":
            direct = Direct(self.echo.sock)
            try:
                got = direct.round_trips(pairs)
            finally:
                direct.close()
        elif name in self.bridges:
            bridge = self.bridges[name]
            got = bridge.measure(self.echo.sock, WARM_UP_FRAMES, lambda client, _: client.round_trips(pairs), self.log)
        else:
            got = self._attempts(name, lambda running: running.round_trips(lines))
        if got is None:  # stalled on every attempt
            self.samples[name]["rtt_p50_us"].append(None)
            self.samples[name]["rtt_p99_us"].append(None)
            return
        measured = sorted(got[self.mode.warmup :])
        p50 = statistics.median(measured) * 1e6
        p99 = measured[min(len(measured) - 1, int(len(measured) * 0.99))] * 1e6
        self.samples[name]["rtt_p50_us"].append(p50)
        self.samples[name]["rtt_p99_us"].append(p99)
        self.log(f"  {name:15} round trip p50 {p50:8.1f} us  p99 {p99:8.1f} us")

    def _startups(self) -> None:
        """Spawn until the first echoed line, next to the bare import of our dependencies (the floor)."""
        first = workload.line(ROUND_TRIP_BYTES, 0) + b"\n"
        times: dict[str, list[float]] = defaultdict(list)
        for _ in range(self.mode.startups):
            start = time.perf_counter()
            subprocess.run([self.python, "-c", FLOOR_IMPORTS], check=True)
            times["floor"].append(time.perf_counter() - start)
            for tool in self.tools:
                start = time.perf_counter()
                with tool.running(self.echo.sock) as running:
                    running.round_trips([first])
                    times[tool.name].append(time.perf_counter() - start)
        for name, values in times.items():
            self.samples[name]["startup_ms"].append(statistics.median(values) * 1e3)
        floor = subprocess.run(
            [self.python, "-c", FLOOR_IMPORTS + "; " + PRINT_PEAK_RSS], check=True, capture_output=True
        )
        self.samples["floor"]["peak_rss"].append(int(floor.stdout) * 1024)
        self.log("  startup ms: " + ", ".join(f"{n} {self.samples[n]['startup_ms'][-1]:.1f}" for n in times))

    def _big_message(self) -> None:
        """One message of ``mode.big_message`` bytes each way through the proxy; its peak RSS."""
        data = workload.lines_stream(self.mode.big_message, 1)
        result = self._attempts("proxy", lambda running: running.stream(data, self.echo.pid))
        assert result is not None
        assert result.peak_rss is not None
        self.samples["proxy"]["peak_rss_big"].append(result.peak_rss)
        self.log(
            f"  proxy one {self.mode.big_message // MiB} MiB message each way: peak RSS {result.peak_rss / MiB:.1f} MiB"
        )


def run_bench(
    mode: Mode, echo: EchoServer, pipe_tools: list[PipeTool], python: str, bridges: list[BridgeTool] | None = None
) -> Samples:
    """Run every case (the bridge cases with *bridges*); raise :class:`BenchFailure` on the first wrong byte."""
    return Bench(mode, echo, pipe_tools, python, bridges or []).run()


__all__ = ["MODES", "SIZES", "BenchFailure", "Mode", "Samples", "compile_proxy", "run_bench", "tools"]
