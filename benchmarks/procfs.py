"""What the benchmark reads about a process from /proc (Linux): CPU time and peak resident set size."""

from __future__ import annotations

import os


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
