"""Measure ``serve``'s resumable sessions against plain bridge clients: messages per second from the app-server
to the client, and how fast a detached session's backlog (memory, then the spool file) is replayed.

A `websockets` stand-in for the app-server on a Unix socket sends N notifications of about 200 bytes when asked;
a `websockets` client reads them through ``codex-appserver serve`` (a real subprocess):

1. plain: subprotocol ``codex-appserver.v1``;
2. resumable: subprotocol ``codex-appserver.resume.v1`` (every message goes through the replay log);
3. replay: a resumable client asks for N, vanishes at once (TCP reset), waits until all N are kept (memory up to
   --client-queue-bytes, the rest spooled), resumes, and reads the whole backlog.

Prints one line per case and the bridge's peak RSS; exits 1 if anything is lost or out of order.

    .venv/bin/python scripts/resume_bench.py [--messages 200000] [--client-queue-bytes 8388608]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from websockets.sync.client import connect  # noqa: E402
from websockets.typing import Subprotocol  # noqa: E402

from tests.integration.bridge_process import running_bridge  # noqa: E402
from tests.integration.resume_client import Phone, chatty  # noqa: E402
from tests.integration.websockets_peer import PeerPool  # noqa: E402

PAD = 160


def vm_hwm_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def check(texts: list[str], n: int) -> None:
    got = [json.loads(text)["params"]["i"] for text in texts if '"tick"' in text]
    if got != list(range(1, n + 1)):
        sys.exit(f"lost or out of order: {len(got)} of {n}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--client-queue-bytes", type=int, default=8 * 1024 * 1024)
    args = parser.parse_args()
    n = args.messages
    pool = PeerPool()
    try:
        peer = pool.start(chatty, max_size=None)
        bridge_args = ["--sock", peer.path, "--client-queue-bytes", str(args.client_queue_bytes)]
        with running_bridge(bridge_args) as bridge:
            burst = json.dumps({"method": "burst", "id": 1, "params": {"n": n, "pad": PAD}})

            with connect(bridge.ws_url(), subprotocols=[Subprotocol("codex-appserver.v1")], max_size=None) as ws:
                started = time.monotonic()
                ws.send(burst)
                texts = [str(ws.recv(timeout=600)) for _ in range(n + 1)]
                elapsed = time.monotonic() - started
            check(texts, n)
            print(f"plain:     {n} messages in {elapsed:.2f} s, {n / elapsed:,.0f} messages/s")

            phone = Phone(bridge.ws_url(), max_queue=None)
            started = time.monotonic()
            phone.send(burst)
            for _ in range(n + 1):
                phone.recv(600)
            elapsed = time.monotonic() - started
            check(phone.received, n)
            print(f"resumable: {n} messages in {elapsed:.2f} s, {n / elapsed:,.0f} messages/s")
            phone.close()

            phone = Phone(bridge.ws_url(), max_queue=None)
            phone.send(burst)
            phone.send({"method": "marker"})  # the stand-in reads it once the whole burst is out
            phone.cut()
            deadline = time.monotonic() + 600
            while not any('"marker"' in message for message in peer.log.messages):
                if time.monotonic() > deadline:
                    sys.exit("the stand-in never finished its burst")
                time.sleep(0.05)
            time.sleep(0.5)  # the bridge reads the last bytes
            started = time.monotonic()
            answer = phone.resume()
            assert "result" in answer, answer
            for _ in range(n + 1):
                phone.recv(600)
            elapsed = time.monotonic() - started
            check(phone.received, n)
            print(f"replay:    {n} messages in {elapsed:.2f} s, {n / elapsed:,.0f} messages/s (backlog after a reset)")
            phone.close()
            print(f"bridge peak RSS: {vm_hwm_kib(bridge.process.pid) / 1024:.0f} MiB")
    finally:
        pool.close()


if __name__ == "__main__":
    main()
