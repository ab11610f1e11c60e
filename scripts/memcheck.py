"""Peak memory of the proxy for the message shapes of issue 9 (#19-#22): one line per shape, exit 1 on a miss.

Each shape runs the proxy CLI (``python -m proxy proxy --sock ...``) against a local scripted server
(tests/integration/scripted_server.py) and reads the proxy's own peak resident set size, ``VmHWM`` in
``/proc/PID/status`` (not RUSAGE_CHILDREN, which would mix processes), once the shape has gone through: the
server then sends a ``memcheck/done`` notification, and the script reads VmHWM when that line reaches it on the
proxy's stdout, while the proxy is still running. A small exchange gives the baseline.

Targets (MiB = 2**20 bytes): a message of size S peaks at most at baseline + 3 x S (#19, #20); 2.5 million empty
continuation frames trip --max-incoming-size (exit 1) within baseline + 3 x their wire size (#20); 200,000
unanswered 1 KiB requests stay within baseline + 64 MiB (retry texts are capped at 16 Mi characters, #21);
600,000 pings never read stay within baseline + 16 MiB (#22).

    .venv/bin/python scripts/memcheck.py [--only NAME ...] [--scale 1.0]

``--scale`` shrinks every size (0.1: a tenth) for a quick look; the targets scale with it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import trio
from wsproto.events import Ping

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.integration.proxy_process import proxy_argv, proxy_env  # noqa: E402
from tests.integration.scripted_server import ScriptedConnection, open_scripted_server  # noqa: E402

MiB = 1024 * 1024
DONE = '{"method":"memcheck/done"}'
DONE_LINE = DONE.encode() + b"\n"
GUARD = 600  # seconds: only against a hang


def vm_hwm_kib(pid: int) -> int:
    """The peak resident set size of process *pid* so far, in KiB (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """One unmasked server frame (RFC 6455 §5.2)."""
    first = (0x80 if fin else 0) | opcode
    size = len(payload)
    if size < 126:
        header = bytes([first, size])
    elif size < 1 << 16:
        header = bytes([first, 126]) + size.to_bytes(2, "big")
    else:
        header = bytes([first, 127]) + size.to_bytes(8, "big")
    return header + payload


TEXT, CONTINUATION = 0x1, 0x0


def big_message(size: int, shape: str, head: bytes = b'{"id":1,"result":') -> bytes:
    """JSON of *size* bytes after *head*: ``ascii``, ``emoji`` (one 😀 in ASCII) or ``lists`` (``[[],[],...]``)."""
    tail = b"}"
    room = size - len(head) - len(tail)
    if shape == "lists":
        count = (room - 2) // 3
        body = b"[" + b"[]," * (count - 1) + b"[]" + b" " * (room - 2 - (3 * count - 1)) + b"]"
    else:
        emoji = "😀".encode() if shape == "emoji" else b""
        body = b'"' + emoji + b"x" * (room - 2 - len(emoji)) + b'"'
    message = head + body + tail
    assert len(message) == size, (len(message), size)
    return message


def big_request(size: int, shape: str) -> bytes:
    """A request line of *size* bytes, LF not counted."""
    return big_message(size, shape, head=b'{"id":1,"method":"m","params":') + b"\n"


@dataclass
class Shape:
    name: str
    size: int  # bytes the target is 3x of (or the fixed allowance, with fixed=True)
    handler: Callable[[ScriptedConnection], Awaitable[None]]
    stdin: Callable[[], bytes] = lambda: b""
    args: tuple[str, ...] = ()
    fixed: bool = False  # size is the allowance itself, not 1/3 of it
    expect_status: int = 0


async def accept_go(conn: ScriptedConnection) -> None:
    await conn.accept()
    assert await conn.receive_text() == '{"id":1,"method":"go"}'


def incoming(message_frames: Callable[[], bytes]) -> Callable[[ScriptedConnection], Awaitable[None]]:
    async def handler(conn: ScriptedConnection) -> None:
        await accept_go(conn)
        await conn.send_raw(message_frames())
        await conn.send_text(DONE)
        await conn.receive_close()

    return handler


def fragmented(message: bytes, pieces: int) -> bytes:
    size = -(-len(message) // pieces)
    out = bytearray()
    for index in range(0, len(message), size):
        last = index + size >= len(message)
        out += frame(TEXT if index == 0 else CONTINUATION, message[index : index + size], fin=last)
    return bytes(out)


async def take_request_then_done(conn: ScriptedConnection) -> None:
    await conn.accept()
    message = await conn.receive_message()
    assert isinstance(message, str)
    del message
    await conn.send_text('{"id":1,"result":{}}')
    await conn.send_text(DONE)
    await conn.receive_close()


def many_requests(count: int) -> bytes:
    pad = b"x" * (1024 - 50)
    return b"".join(b'{"id":%d,"method":"m","params":"%s"}\n' % (n, pad) for n in range(count))


def unanswered(count: int) -> Callable[[ScriptedConnection], Awaitable[None]]:
    async def handler(conn: ScriptedConnection) -> None:
        await conn.accept()
        for _ in range(count):
            await conn.receive_message()
        await conn.send_text(DONE)
        await conn.receive_close()

    return handler


def ping_storm(count: int) -> Callable[[ScriptedConnection], Awaitable[None]]:
    async def handler(conn: ScriptedConnection) -> None:
        await accept_go(conn)
        ping = conn.ws.send(Ping(payload=b"memcheck-ping-16"))
        batch = ping * 10_000
        for _ in range(count // 10_000):
            await conn.send_raw(batch)  # never reading meanwhile
        await conn.send_text('{"id":1,"result":{}}')
        await conn.send_text(DONE)
        await conn.wait_eof()

    return handler


def shapes(scale: float) -> list[Shape]:
    size = int(64 * MiB * scale)
    go = b'{"id":1,"method":"go"}\n'
    big = ("--max-message-size", str(2 * size), "--max-incoming-size", str(4 * size))
    out = [Shape("baseline", 0, incoming(lambda: frame(TEXT, b'{"id":1,"result":{}}')), lambda: go)]
    for shape in ("ascii", "emoji", "lists"):
        frames = partial(lambda s: frame(TEXT, big_message(size, s)), shape)
        out.append(Shape(f"in-1-frame-{shape}", size, incoming(frames), lambda: go, big))
    out.append(
        Shape(
            "in-65536-fragments",
            size,
            incoming(lambda: fragmented(big_message(size, "ascii"), 65_536)),
            lambda: go,
            big,
        )
    )
    for shape in ("ascii", "emoji", "lists"):
        out.append(Shape(f"stdin-line-{shape}", size, take_request_then_done, partial(big_request, size, shape), big))
    small = int(MiB * scale)
    out.append(
        Shape(
            "in-1MiB-2-byte-fragments",
            small,
            incoming(lambda: fragmented(big_message(small, "ascii"), small // 2)),
            lambda: go,
        )
    )
    empties = int(2_500_000 * scale)
    flood = frame(TEXT, b"", fin=False) + frame(CONTINUATION, b"", fin=False) * empties
    out.append(Shape("in-2.5M-empty-fragments", len(flood), incoming(lambda: flood), lambda: go, expect_status=1))
    count = int(200_000 * scale)
    out.append(
        Shape(
            "stdin-200000-unanswered-1KiB",
            64 * MiB,
            unanswered(count),
            lambda: many_requests(count),
            ("--drain-timeout", "0.2"),
            fixed=True,
            expect_status=1,
        )
    )
    out.append(
        Shape(
            "in-600000-pings-unread",
            16 * MiB,
            ping_storm(int(600_000 * scale)),
            lambda: go,
            fixed=True,
            expect_status=0,
        )
    )
    return out


async def run_shape(shape: Shape, folder: Path) -> tuple[int, int]:
    """Run one shape; return (VmHWM in KiB when done arrived, exit status)."""
    peak = 0
    async with open_scripted_server(folder, shape.handler) as server:
        process = await trio.lowlevel.open_process(
            proxy_argv("--sock", str(server.path), "--ping-interval", "0", *shape.args),
            stdin=-1,
            stdout=-1,
            stderr=-1,
            env=proxy_env(),
            cwd=str(ROOT),
        )
        assert process.stdin is not None and process.stdout is not None and process.stderr is not None
        stderr = bytearray()

        async def poll() -> None:
            nonlocal peak
            while process.returncode is None:
                peak = max(peak, vm_hwm_kib(process.pid))
                await trio.sleep(0.02)

        async def feed() -> None:
            assert process.stdin is not None
            data = shape.stdin()
            try:
                for start in range(0, len(data), MiB):
                    await process.stdin.send_all(data[start : start + MiB])
            except trio.BrokenResourceError:
                pass

        async def drain_stderr() -> None:
            assert process.stderr is not None
            while chunk := await process.stderr.receive_some(65536):
                stderr.extend(chunk)

        with trio.fail_after(GUARD):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(poll)
                nursery.start_soon(drain_stderr)
                nursery.start_soon(feed)
                tail = b""
                while chunk := await process.stdout.receive_some(MiB):
                    tail = (tail + bytes(chunk))[-4096:]
                    if DONE_LINE in tail:
                        peak = max(peak, vm_hwm_kib(process.pid))
                        tail = b""
                        await process.stdin.aclose()
                status = await process.wait()
                nursery.cancel_scope.cancel()
    if b"Traceback" in stderr:
        print(stderr.decode(errors="replace"), file=sys.stderr)
    return peak, status


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=None, help="shape names to run (baseline always runs)")
    parser.add_argument("--scale", type=float, default=1.0)
    options = parser.parse_args()
    missed = 0
    with tempfile.TemporaryDirectory(prefix="memcheck-", dir="/tmp") as folder:
        base = 0
        for shape in shapes(options.scale):
            if options.only and shape.name != "baseline" and shape.name not in options.only:
                continue
            peak, status = trio.run(run_shape, shape, Path(folder))
            if shape.name == "baseline":
                base = peak
                print(f"{'baseline':32} peak {peak / 1024:8.1f} MiB  status {status}", flush=True)
                continue
            allowance = shape.size if shape.fixed else 3 * shape.size
            target = base + allowance / 1024
            ok = peak <= target and status == shape.expect_status
            missed += not ok
            print(
                f"{shape.name:32} size {shape.size / MiB:8.1f} MiB  baseline {base / 1024:6.1f} MiB  "
                f"peak {peak / 1024:8.1f} MiB  target {target / 1024:8.1f} MiB  "
                f"ratio {(peak - base) / max(allowance / 1024, 1):5.2f} of allowance  status {status}  "
                f"{'ok' if ok else 'MISSED'}",
                flush=True,
            )
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
