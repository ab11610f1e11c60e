"""What the benchmark reads about a process from /proc (Linux): CPU time and peak resident set size."""

from __future__ import annotations

import os
import threading
from types import TracebackType


def cpu_seconds(pid: int) -> float:
    """CPU time of process *pid* so far, all its threads, in seconds (nanosecond precision: schedstat).

    :raises OSError: the process is gone.
    """
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat", "rb") as schedstat:
                total += int(schedstat.read().split()[0])  # time spent on the CPU, in ns
        except FileNotFoundError:
            continue  # a thread that ended meanwhile
    return total / 1e9


def peak_rss_bytes(pid: int | str = "self") -> int:
    """VmHWM of process *pid*: its own peak resident set size so far, in bytes."""
    with open(f"/proc/{pid}/status", "rb") as status:
        for line in status:
            if line.startswith(b"VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmHWM in /proc/{pid}/status")


class HighWater:
    """The peak resident set size of process *pid* while it runs: its VmHWM, read every *interval* seconds in a
    thread between ``__enter__`` and ``__exit__``, and once more at the end if it still runs.

    VmHWM only grows, so the last reading before the process exits is its peak up to then. Not ``wait4``'s
    ``ru_maxrss``: Linux keeps in it the high-water mark of the memory the process had *before* its ``exec``,
    that is its parent's (fork or vfork), so a tool started while the harness held 1.3 GiB of test data reported
    1.3 GiB (two of 24 samples in one full run).
    """

    def __init__(self, pid: int, interval: float = 0.01) -> None:
        self._pid = pid
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        #: The highest VmHWM read, in bytes; None if the process had ended before the first reading.
        self.peak: int | None = None

    def __enter__(self) -> HighWater:
        self._read()
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()
        self._read()

    def _watch(self) -> None:
        while not self._stop.wait(self._interval) and self._read():
            pass

    def _read(self) -> bool:
        """Take one reading; False once the process is gone (a zombie has no VmHWM)."""
        try:
            now = peak_rss_bytes(self._pid)
        except (OSError, RuntimeError):
            return False
        if self.peak is None or now > self.peak:
            self.peak = now
        return True
