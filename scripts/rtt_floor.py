"""Round trips of one 200 B line: the proxy and websocat next to the least a trio relay in this Python costs.

The *floor relay* is a trio program with the proxy's own connection and framing (``proxy.connect`` for the
opening handshake, ``proxy.fastws`` for frames) and nothing else: one task per direction, a read, the frames or
lines of that read, one write. No line check, no JSON-RPC bookkeeping, no queues, no backpressure: it is not a
usable proxy, only the cost of crossing this interpreter and trio's scheduler twice per round trip. If it cannot
reach a latency target, no proxy built on this stack can on this machine.

The *blocking relay* is the same without trio: one thread, one ``select.epoll`` registered once, blocking waits.
It is the least any Python relay costs, whatever its event loop. The script also times one trio scheduler pass
on its own (two tasks handing a byte back and forth over socket pairs: a write, ``wait_readable``, a read), the
unit a relay pays twice per round trip.

Each tool is a fresh process per repetition, interleaved (who goes first rotates), against the benchmark's C
echo server (:func:`benchmarks.echo.echo_server`), one line at a time as ``benchmarks/run.py`` measures round
trips. Prints the median round trip (p50), CPU per round trip and voluntary context switches (the times it slept)
per round trip of each, and p50 ratios to websocat.

    .venv/bin/python scripts/rtt_floor.py [--round-trips 3000] [--repetitions 5]

A quick look, not the report: ``python -m benchmarks`` remains the measurement of record.
"""

from __future__ import annotations

import argparse
import os
import select
import shutil
import socket
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
from benchmarks.procfs import cpu_seconds  # noqa: E402

ROUND_TRIP_BYTES = 200
WARM_UP = 300


def floor_relay(sock: str) -> None:
    """The floor relay on stdin/stdout to the app-server (here: the echo server) at *sock*; runs until stdin EOF."""
    import trio
    from wsproto.connection import ConnectionType

    from proxy.connect import open_connection
    from proxy.fastws import Connection, Utf8Text
    from proxy.target import UnixTarget

    async def main() -> None:
        stream, response = await open_connection(UnixTarget(Path(sock)), 10.0)
        assert isinstance(stream, trio.SocketStream)
        sock_fd = stream.socket.fileno()
        for fd in (0, 1):
            os.set_blocking(fd, False)
        ws = Connection(ConnectionType.CLIENT, trailing_data=response.trailing_data, utf8_text=True)

        async def stdin_to_socket() -> None:
            held = b""
            while True:
                try:
                    data = os.read(0, 1 << 18)
                except BlockingIOError:
                    await trio.lowlevel.wait_readable(0)
                    continue
                if not data:
                    return
                lines = (held + data).split(b"\n")
                held = lines.pop()
                os.write(sock_fd, b"".join([ws.send_utf8(line) for line in lines]))

        async def socket_to_stdout() -> None:
            while True:
                try:
                    data = os.read(sock_fd, 1 << 18)
                except BlockingIOError:
                    await trio.lowlevel.wait_readable(sock_fd)
                    continue
                if not data:
                    return
                ws.receive_data(data)
                os.write(1, b"".join([event + b"\n" for event in ws.events() if type(event) is Utf8Text]))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(socket_to_stdout)
            await stdin_to_socket()
            nursery.cancel_scope.cancel()

    trio.run(main)


def blocking_relay(sock: str) -> None:
    """The blocking relay on stdin/stdout to *sock*: the floor relay's work with no event loop; runs until EOF."""
    import trio
    from wsproto.connection import ConnectionType

    from proxy.connect import open_connection
    from proxy.fastws import Connection, Utf8Text
    from proxy.target import UnixTarget

    async def handshake() -> tuple[int, bytes]:
        stream, response = await open_connection(UnixTarget(Path(sock)), 10.0)
        assert isinstance(stream, trio.SocketStream)
        return os.dup(stream.socket.fileno()), response.trailing_data

    sock_fd, trailing = trio.run(handshake)
    os.set_blocking(sock_fd, True)
    ws = Connection(ConnectionType.CLIENT, trailing_data=trailing, utf8_text=True)
    ready = select.epoll()
    ready.register(0, select.EPOLLIN)
    ready.register(sock_fd, select.EPOLLIN)
    held = b""
    while True:
        for fd, _ in ready.poll():
            data = os.read(fd, 1 << 18)
            if not data:
                return
            if fd == 0:
                lines = (held + data).split(b"\n")
                held = lines.pop()
                os.write(sock_fd, b"".join([ws.send_utf8(line) for line in lines]))
            else:
                ws.receive_data(data)
                os.write(1, b"".join([event + b"\n" for event in ws.events() if type(event) is Utf8Text]))


def trio_pass_us(hops: int = 20_000) -> float:
    """Wall time of one trio scheduler pass (µs): two tasks hand a byte back and forth over two socket pairs,
    each hop a write, a ``wait_readable`` and a read, as a relay's direction does per message."""
    import trio

    there, here = socket.socketpair(), socket.socketpair()
    for one in (*there, *here):
        one.setblocking(False)

    async def ping() -> None:
        for _ in range(hops):
            os.write(there[0].fileno(), b"x")
            await trio.lowlevel.wait_readable(here[1].fileno())
            os.read(here[1].fileno(), 16)

    async def pong() -> None:
        while True:
            await trio.lowlevel.wait_readable(there[1].fileno())
            os.read(there[1].fileno(), 16)
            os.write(here[0].fileno(), b"y")

    async def main() -> float:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pong)
            start = time.perf_counter()
            await ping()
            took = time.perf_counter() - start
            nursery.cancel_scope.cancel()
        return took

    try:
        return trio.run(main) / (2 * hops) * 1e6
    finally:
        for one in (*there, *here):
            one.close()


def commands(sock: str) -> dict[str, list[str]]:
    bin_dir = Path(sys.executable).parent
    found = {
        "proxy": [str(bin_dir / "codex-appserver"), "proxy", "--sock", sock],
        "floor relay": [sys.executable, __file__, "--relay", sock],
        "blocking": [sys.executable, __file__, "--blocking-relay", sock],
    }
    websocat = shutil.which("websocat", path=str(bin_dir)) or shutil.which("websocat")
    if websocat:
        found["websocat"] = [websocat, "-t", "-B", "4194304", "--no-close", "--ws-c-uri=ws://localhost/", "-"]
        found["websocat"].append(f"ws-c:unix:{sock}")
    return found


def voluntary_switches(pid: int) -> int:
    """How many times process *pid* has slept so far (``voluntary_ctxt_switches`` of its main thread)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    return 0


def round_trips(argv: list[str], count: int) -> tuple[float, float, float]:
    """p50 round trip (µs), CPU per round trip (µs) and sleeps per round trip of the tool *argv* over *count*
    lines after a warm-up."""
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdin is not None and proc.stdout is not None
    fd_in, fd_out = proc.stdin.fileno(), proc.stdout.fileno()
    times = []
    cpu = 0.0
    sleeps = 0
    try:
        for seq in range(WARM_UP + count):
            if seq == WARM_UP:
                cpu = cpu_seconds(proc.pid)
                sleeps = voluntary_switches(proc.pid)
            line = workload.line(ROUND_TRIP_BYTES, seq) + b"\n"
            start = time.perf_counter()
            os.write(fd_in, line)
            got = b""
            while len(got) < len(line):
                chunk = os.read(fd_out, 1 << 16)
                if not chunk:
                    raise SystemExit(f"{argv[0]}: output ended")
                got += chunk
            times.append(time.perf_counter() - start)
            if got != line:
                raise SystemExit(f"{argv[0]}: got {got[:60]!r}, sent {line[:60]!r}")
        cpu = cpu_seconds(proc.pid) - cpu
        sleeps = voluntary_switches(proc.pid) - sleeps
    finally:
        proc.terminate()
        proc.wait()
        proc.stdin.close()
        proc.stdout.close()
    return statistics.median(times[WARM_UP:]) * 1e6, cpu / count * 1e6, sleeps / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--round-trips", type=int, default=3000)
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--relay", metavar="SOCK", help=argparse.SUPPRESS)
    parser.add_argument("--blocking-relay", metavar="SOCK", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.relay:
        floor_relay(args.relay)
        return
    if args.blocking_relay:
        blocking_relay(args.blocking_relay)
        return
    passes = [trio_pass_us() for _ in range(3)]
    with tempfile.TemporaryDirectory() as folder, echo_server(Path(folder)) as echo:
        tools = commands(echo.sock)
        names = list(tools)
        samples: dict[str, list[tuple[float, float, float]]] = {name: [] for name in names}
        for repetition in range(args.repetitions):
            for name in names[repetition % len(names) :] + names[: repetition % len(names)]:
                samples[name].append(round_trips(tools[name], args.round_trips))
    for name, got in samples.items():
        line = f"{name:12} p50 " + " ".join(f"{p50:6.1f}" for p50, _, _ in got) + " us"
        line += f"   CPU per round trip {statistics.median(cpu for _, cpu, _ in got):6.1f} us"
        line += f"   sleeps per round trip {statistics.median(sleeps for _, _, sleeps in got):4.2f}"
        if "websocat" in samples and name != "websocat":
            ratios = [p50 / base for (p50, _, _), (base, _, _) in zip(got, samples["websocat"], strict=True)]
            line += f"   p50 / websocat: median {statistics.median(ratios):.2f}x"
        print(line)
    print(f"one trio scheduler pass: {statistics.median(passes):.1f} us (median of {len(passes)} runs)")


if __name__ == "__main__":
    main()
