"""Soak: push N messages each way through the proxy at once and check count, order and checksum.

A trio+wsproto server on a Unix socket sends N notifications while the proxy's stdin carries N notifications
and, last, one request that the server answers only after its own N are out; the proxy must drain until that
response. Both sides hash what they got, in order. Prints one result line; exits 1 on any loss or reordering.

    .venv/bin/python scripts/soak.py [--messages 1000000]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Request, TextMessage

ROOT = Path(__file__).resolve().parents[1]
BATCH = 1000


def client_line(i: int) -> bytes:
    return b'{"method":"soak/up","params":{"i":%d,"pad":"%s"}}' % (i, b"x" * (i % 64))


def server_text(i: int) -> str:
    return '{"method":"soak/down","params":{"i":' + str(i) + ',"s":"\u2028' + "y" * (i % 64) + '"}}'


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


class Server:
    def __init__(self, count: int) -> None:
        self.count = count
        self.received = 0
        self.received_hash = hashlib.sha256()
        self.done_request: str | None = None

    async def serve(self, stream: trio.SocketStream) -> None:
        ws = WSConnection(ConnectionType.SERVER)
        sent_all = trio.Event()
        async with trio.open_nursery() as nursery:
            while True:
                ws.receive_data(await stream.receive_some(65536))
                events = list(ws.events())
                if any(isinstance(e, Request) for e in events):
                    await stream.send_all(ws.send(AcceptConnection()))
                    break
            nursery.start_soon(self._send_all, stream, ws, sent_all)
            pending = bytearray()
            while True:
                data = await stream.receive_some(1 << 18)
                ws.receive_data(data or None)
                out = bytearray()
                for event in ws.events():
                    if isinstance(event, TextMessage):
                        pending_text = event.data
                        if not event.message_finished:
                            pending += pending_text.encode()
                            continue
                        text = (bytes(pending) + pending_text.encode()).decode()
                        pending.clear()
                        if '"id"' in text:
                            self.done_request = text
                            nursery.start_soon(self._answer, stream, ws, sent_all)
                        else:
                            self.received += 1
                            self.received_hash.update(text.encode() + b"\n")
                    elif isinstance(event, CloseConnection):
                        if ws.state.name == "REMOTE_CLOSING":
                            out += ws.send(event.response())
                        await stream.send_all(bytes(out))
                        return
                if out:
                    await stream.send_all(bytes(out))
                if not data:
                    return

    async def _send_all(self, stream: trio.SocketStream, ws: WSConnection, sent_all: trio.Event) -> None:
        for start in range(0, self.count, BATCH):
            chunk = b"".join(
                ws.send(TextMessage(data=server_text(i))) for i in range(start, min(start + BATCH, self.count))
            )
            await stream.send_all(chunk)
        sent_all.set()

    async def _answer(self, stream: trio.SocketStream, ws: WSConnection, sent_all: trio.Event) -> None:
        await sent_all.wait()
        await stream.send_all(ws.send(TextMessage(data='{"id":"soak-done","result":{}}')))


async def main(count: int) -> int:
    folder = tempfile.mkdtemp(prefix="soak-", dir="/tmp")
    sock = os.path.join(folder, "s.sock")
    server = Server(count)
    listener = trio.socket.socket(trio.socket.AF_UNIX)
    await listener.bind(sock)
    listener.listen()
    expected_up = hashlib.sha256()
    with open(os.path.join(folder, "in"), "wb") as f:
        for i in range(count):
            line = client_line(i) + b"\n"
            expected_up.update(line)
            f.write(line)
        f.write(b'{"method":"soak/done","id":"soak-done"}\n')
    expected_down = hashlib.sha256()
    for i in range(count):
        expected_down.update(server_text(i).encode() + b"\n")
    expected_down.update(b'{"id":"soak-done","result":{}}\n')

    out_path = os.path.join(folder, "out")
    peak_kib = 0
    started = time.monotonic()
    async with trio.open_nursery() as nursery:

        async def accept() -> None:
            conn, _ = await listener.accept()
            await server.serve(trio.SocketStream(conn))

        nursery.start_soon(accept)
        with open(os.path.join(folder, "in"), "rb") as fin, open(out_path, "wb") as fout:
            command = os.environ.get("SOAK_PROXY", f"{sys.executable} -m proxy").split()
            proc = await trio.lowlevel.open_process(
                [*command, "proxy", "--sock", sock, "--drain-timeout", "600"], stdin=fin, stdout=fout, cwd=str(ROOT)
            )
            while proc.poll() is None:  # VmHWM only grows: the last reading before exit is the peak
                peak_kib = max(peak_kib, vm_hwm_kib(proc.pid))
                with trio.move_on_after(0.05):
                    await proc.wait()
    elapsed = time.monotonic() - started
    down = hashlib.sha256(Path(out_path).read_bytes()).hexdigest()
    lines_out = Path(out_path).read_bytes().count(b"\n")
    ok = (
        proc.returncode == 0
        and server.received == count
        and server.received_hash.hexdigest() == expected_up.hexdigest()
        and down == expected_down.hexdigest()
    )
    rss = peak_kib / 1024
    print(
        f"soak: {count} messages each way in {elapsed:.1f} s; up: {server.received} received, checksum "
        f"{'ok' if server.received_hash.hexdigest() == expected_up.hexdigest() else 'MISMATCH'}; down: {lines_out - 1} "
        f"notifications + 1 response, checksum {'ok' if down == expected_down.hexdigest() else 'MISMATCH'}; "
        f"proxy exit {proc.returncode}; proxy peak RSS {rss:.0f} MiB; {'PASS' if ok else 'FAIL'}"
    )
    for name in ("in", "out"):
        os.unlink(os.path.join(folder, name))
    listener.close()
    os.unlink(sock)
    os.rmdir(folder)
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    sys.exit(trio.run(main, parser.parse_args().messages))
