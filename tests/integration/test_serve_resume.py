"""Lossless resume through ``codex-appserver serve`` (a real subprocess), with a `websockets` app-server stand-in
that talks on its own (:func:`tests.integration.resume_client.chatty`) and a `websockets` client playing the
phone: the protocol's messages, replay of exactly the missed suffix after a TCP reset, the window, the spool
bound, slow consumers, refusals, takeover, and the notify command.

The same against the real app-server and whole turns: :mod:`tests.integration.test_serve_resume_codex`.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from websockets.sync.client import connect
from websockets.typing import Subprotocol

from .bridge_process import BridgeProcess, running_bridge
from .resume_client import Phone, compact, phone, tick, wait_until
from .websockets_peer import PeerPool, WebSocketsPeer

TOKEN = secrets.token_urlsafe(32)


@pytest.fixture
def peers() -> Iterator[PeerPool]:
    pool = PeerPool()
    try:
        yield pool
    finally:
        assert pool.close() == []


@pytest.fixture
def peer(peers: PeerPool) -> WebSocketsPeer:
    from .resume_client import chatty

    return peers.start(chatty, max_size=None)


def burst(phone_: Phone, request_id: int, n: int, start: int = 1, pad: int = 0) -> None:
    phone_.send({"method": "burst", "id": request_id, "params": {"n": n, "from": start, "pad": pad}})


def ticks(texts: list[str]) -> list[int]:
    return [json.loads(text)["params"]["i"] for text in texts if '"tick"' in text]


def test_opt_in_gets_bridge_session_first_and_others_see_no_bridge_message(peer: WebSocketsPeer) -> None:
    with running_bridge(["--sock", peer.path, "-vv"]) as bridge:
        client = phone(bridge)
        session = client.bridge[0]
        assert set(session) == {"method", "params"}
        assert len(client.session_id) >= 16
        assert len(client.token) == 43  # 256 bits, base64url
        burst(client, 1, 3)
        assert ticks([json.dumps(client.recv()) for _ in range(3)]) == [1, 2, 3]
        assert client.recv() == {"id": 1, "result": {}}
        client.close()
        with connect(bridge.ws_url(), open_timeout=30, subprotocols=["codex-appserver.v1"]) as plain:  # type: ignore[list-item]
            assert plain.subprotocol == "codex-appserver.v1"
            plain.send(compact({"method": "bridge/resume", "id": 1, "params": {}}))
            # Relayed like any message: the stand-in answers it; the bridge says nothing of its own.
            assert json.loads(plain.recv(timeout=30)) == {"id": 1, "result": {}}
        bridge.wait_for_line(r"closed 1000 .* session .* ended")
        assert client.token not in bridge.stderr_text  # not even at -vv, which logs each message's method
        assert "tick" in bridge.stderr_text
        assert "bridge/session" not in bridge.stderr_text


@pytest.mark.parametrize("cut_after", [0, 1, 7, 20])
def test_reset_then_resume_replays_exactly_the_missed_suffix(peer: WebSocketsPeer, cut_after: int) -> None:
    with running_bridge(["--sock", peer.path]) as bridge:
        client = phone(bridge)
        burst(client, 1, 20)
        for _ in range(cut_after):
            client.recv()
        seen_before = list(client.received)
        client.cut()
        bridge.wait_for_line(rf"session {client.session_id} kept for 300 s")
        answer = client.resume()
        assert answer == {"id": "resume", "result": {"received": 1}}
        rest = [client.recv() for _ in range(21 - cut_after)]
        assert client.received[:cut_after] == seen_before
        assert ticks(client.received) == list(range(1, 21))
        assert rest[-1] == {"id": 1, "result": {}}
        # Then the live stream, on the same app-server connection.
        burst(client, 3, 2, start=21)
        assert ticks([json.dumps(client.recv()) for _ in range(2)]) == [21, 22]
        assert client.recv() == {"id": 3, "result": {}}
        client.close()
        assert peer.log.connections == 2  # the resumed connection's own fresh one was discarded
        bridge.wait_for_line(r"resumed session .* after message")


def test_client_messages_relayed_count_and_resend(peer: WebSocketsPeer) -> None:
    """M counts the phone's messages the bridge relayed; the phone resends the rest, nothing twice."""
    with running_bridge(["--sock", peer.path]) as bridge:
        client = phone(bridge)
        for index in range(5):
            client.send({"method": "note", "params": {"n": index}})
        client.send({"method": "ping", "id": 9})
        assert client.recv() == {"id": 9, "result": {}}
        client.cut()
        bridge.wait_for_line(rf"session {client.session_id} kept")
        assert client.resume()["result"] == {"received": 6}
        client.send({"method": "ping", "id": 10})
        assert client.recv() == {"id": 10, "result": {}}
        notes = [json.loads(m) for m in peer.log.messages if '"note"' in m]
        assert [n["params"]["n"] for n in notes] == [0, 1, 2, 3, 4]
        assert not any("bridge/" in m for m in peer.log.messages)
        client.close()


def test_refusals_have_documented_codes_and_the_connection_goes_on(peer: WebSocketsPeer) -> None:
    with running_bridge(["--sock", peer.path]) as bridge:
        first = phone(bridge)
        other = phone(bridge)
        first.cut()
        bridge.wait_for_line(rf"session {first.session_id} kept")

        # Another session's token for this session: refused; the connection is the new session it announced.
        answer = other.resume(token=other.token, session_id=first.session_id, received=0)
        assert answer["error"]["code"] == -32012
        other.send({"method": "ping", "id": 1})
        assert other.recv() == {"id": 1, "result": {}}

        answer = other.resume(session_id="no-such-session", received=0)
        assert answer["error"]["code"] == -32010

        bad = Phone(bridge.ws_url())
        bad.ws.send(compact({"method": "bridge/resume", "id": 5, "params": {"sessionId": 1}}))
        assert json.loads(bad.ws.recv(timeout=30))["error"]["code"] == -32602

        # received beyond what the bridge sent: cannot replay.
        answer = first.resume(received=5)
        assert answer["error"]["code"] == -32014
        for client in (other, bad, first):
            client.close()
            assert client.token not in bridge.stderr_text


def test_past_the_window_the_session_ends_and_its_upstream_closes_1001(peer: WebSocketsPeer) -> None:
    with running_bridge(["--sock", peer.path, "--resume-window", "1"]) as bridge:
        client = phone(bridge)
        client.send({"method": "ping", "id": 1})
        client.recv()
        client.cut()
        bridge.wait_for_line(rf"session {client.session_id}: nobody resumed it within 1 s; ended")
        wait_until(lambda: peer.log.close_codes == [1001], "the upstream close 1001")
        answer = client.resume()
        assert answer["error"]["code"] == -32011
        assert "resume-window" in answer["error"]["message"]
        # A new session works.
        client.send({"method": "ping", "id": 2})
        assert client.recv() == {"id": 2, "result": {}}
        client.close()


def test_a_clean_close_ends_the_session(peer: WebSocketsPeer) -> None:
    with running_bridge(["--sock", peer.path]) as bridge:
        client = phone(bridge)
        client.close()
        wait_until(lambda: peer.log.close_codes == [1001], "the upstream close 1001")
        answer = client.resume()
        assert answer["error"]["code"] == -32011
        client.close()


def test_slow_consumer_close_then_resume_loses_nothing(peer: WebSocketsPeer) -> None:
    """The phone stops reading while 20 MB stream: closed with 1008, the rest kept in memory and a spool file."""
    count, pad = 2000, 10_000
    with running_bridge(["--sock", peer.path, "--client-queue-bytes", "1000000"]) as bridge:
        client = phone(bridge)
        burst(client, 1, count, pad=pad)
        bridge.wait_for_line("slow consumer")
        assert client.close_code() == (1008, "slow consumer")
        got = len(client.received)
        assert 0 < got < count
        answer = client.resume()
        assert answer == {"id": "resume", "result": {"received": 1}}
        while len(client.received) < count + 1:
            client.recv()
        assert ticks(client.received) == list(range(1, count + 1))
        assert json.loads(client.received[-1]) == {"id": 1, "result": {}}
        client.close()


def test_past_the_spool_bound_the_session_ends(peer: WebSocketsPeer) -> None:
    """100 kB in memory, 300 kB in the spool: 60 messages of 10 kB while the phone is away are too many."""
    args = ["--sock", peer.path, "--client-queue-bytes", "100000", "--resume-spool-bytes", "300000"]
    with running_bridge(args) as bridge:
        client = phone(bridge)
        messages = [tick(index, 10_000) for index in range(1, 61)]
        client.send({"method": "later", "id": 1, "params": {"delay": 1, "messages": messages}})
        client.recv()
        client.cut()
        bridge.wait_for_line(rf"session {client.session_id}: more than --resume-spool-bytes \(300000\)")
        wait_until(lambda: peer.log.close_codes == [1001], "the upstream close 1001")
        answer = client.resume()
        assert answer["error"]["code"] == -32011
        assert "resume-spool-bytes" in answer["error"]["message"]
        client.close()


def test_a_resume_takes_over_a_connection_not_yet_known_dead(peer: WebSocketsPeer) -> None:
    with running_bridge(["--sock", peer.path]) as bridge:
        old = phone(bridge)
        burst(old, 1, 5)
        old.recv()
        new = Phone.__new__(Phone)
        new.__dict__.update(old.__dict__)
        new.received = list(old.received)
        answer = new.resume()
        assert answer["result"] == {"received": 1}
        assert old.close_code()[0] == 1008
        while len(new.received) < 6:
            new.recv()
        assert ticks(new.received) == [1, 2, 3, 4, 5]
        new.close()
        bridge.wait_for_line(r"closed 1008 .* resumed on another connection")


def test_notify_command_runs_once_per_event_while_detached(peer: WebSocketsPeer, tmp_path: Path) -> None:
    out = tmp_path / "events"
    script = tmp_path / "notify.py"
    script.write_text(
        "import os, sys\n"
        f"with open({str(out)!r}, 'a') as f:\n"
        "    f.write(os.environ['CODEX_APPSERVER_EVENT'] + ' ' + sys.stdin.read())\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    approval = compact(
        {"id": 0, "method": "item/commandExecution/requestApproval", "params": {"threadId": "t1", "turnId": "u1"}}
    )
    completed = compact({"method": "turn/completed", "params": {"threadId": "t1", "turn": {"id": "u1"}}})
    delta = compact({"method": "item/agentMessage/delta", "params": {"threadId": "t1"}})
    with running_bridge(["--sock", peer.path, "--notify-command", f"{sys.executable} {script}"]) as bridge:
        client = phone(bridge)
        # While attached: no notification.
        client.send({"method": "later", "id": 1, "params": {"delay": 0, "messages": [approval]}})
        client.recv_until(lambda m: m.get("method") == "item/commandExecution/requestApproval")
        client.send({"method": "later", "id": 2, "params": {"delay": 1, "messages": [delta, approval, completed]}})
        client.recv_until(lambda m: m.get("id") == 2)
        client.cut()
        wait_until(lambda: out.exists() and out.read_text().count("\n") >= 2, "two notify runs", 30)
        # The two commands run at once: their lines may come in either order.
        events = {line.split(" ", 1)[0]: json.loads(line.split(" ", 1)[1]) for line in out.read_text().splitlines()}
        assert sorted(events) == ["approval", "turn-completed"]
        assert events["approval"] == {
            "event": "approval",
            "sessionId": client.session_id,
            "method": "item/commandExecution/requestApproval",
            "threadId": "t1",
            "turnId": "u1",
            "message": json.loads(approval),
        }
        assert events["turn-completed"]["turnId"] == "u1"
        assert events["turn-completed"]["message"] == json.loads(completed)
        answer = client.resume()
        assert "result" in answer
        client.recv_until(lambda m: m.get("method") == "turn/completed")
        client.close()
        assert out.read_text().count("\n") == 2
        assert "running the notify command" in bridge.stderr_text


def test_detached_sessions_are_bounded_by_max_clients(peer: WebSocketsPeer) -> None:
    with running_bridge(["--sock", peer.path, "--max-clients", "1"]) as bridge:
        first = phone(bridge)
        first.cut()
        bridge.wait_for_line(rf"session {first.session_id} kept")
        second = phone(bridge)
        second.cut()
        bridge.wait_for_line(rf"session {second.session_id} kept")
        answer = first.resume()
        assert answer["error"]["code"] == -32011
        assert "--max-clients" in answer["error"]["message"]
        first.close()
        assert "result" in second.resume()
        second.close()


def test_sigterm_closes_attached_clients_1001_and_every_session_upstream(peer: WebSocketsPeer) -> None:
    with running_bridge(["--sock", peer.path]) as bridge:
        attached = phone(bridge)
        away = phone(bridge)
        away.cut()
        bridge.wait_for_line(rf"session {away.session_id} kept")
        bridge.signal(signal.SIGTERM)
        assert attached.close_code() == (1001, "the bridge is shutting down")
        assert bridge.wait() == 0
        assert peer.log.close_codes == [1001, 1001]


# -- the README's notify recipes, as written ------------------------------------------------------------------

README = Path(__file__).resolve().parents[2] / "README.md"


class Hooks:
    """A local HTTP server that records each POST (path, headers, body) and answers 200."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, str], bytes]] = []
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                hooks.posts.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def hooks() -> Iterator[Hooks]:
    server = Hooks()
    try:
        yield server
    finally:
        server.close()


def notify_recipes() -> dict[str, list[str]]:
    """The recipe block's commands by their comment (``ntfy``, ``webhook``, ``desktop``), continuation lines
    joined."""
    section = README.read_text().split("### Notifications while the phone is away\n", 1)[1].split("\n### ", 1)[0]
    block = section.split("```sh\n", 1)[1].split("\n```", 1)[0].replace("\\\n", " ")
    recipes: dict[str, list[str]] = {}
    name = ""
    for line in block.splitlines():
        if line.startswith("#"):
            name = "ntfy" if "ntfy" in line else "webhook" if "webhook" in line else "desktop"
            recipes[name] = []
        else:
            recipes[name].append(line)
    return recipes


def serve_words(command: str, home: Path) -> list[str]:
    """The words of a ``codex-appserver serve ...`` line after the shell's expansions, with $HOME = *home*."""
    done = subprocess.run(
        ["bash", "-c", f'set -- {command.split("codex-appserver serve", 1)[1]}; printf "%s\\0" "$@"'],
        env={"HOME": str(home), "PATH": os.environ["PATH"]},
        capture_output=True,
        check=True,
        timeout=30,
    )
    return done.stdout.decode().split("\0")[:-1]


def approval_while_away(bridge: BridgeProcess) -> None:
    """A phone that goes away while the stand-in sends an approval request."""
    client = phone(bridge)
    approval = compact({"id": 0, "method": "item/commandExecution/requestApproval", "params": {"threadId": "t"}})
    client.send({"method": "later", "id": 1, "params": {"delay": 1, "messages": [approval]}})
    client.recv()
    client.cut()


def test_the_readme_notify_recipes_run_as_written(peer: WebSocketsPeer, hooks: Hooks, tmp_path: Path) -> None:
    recipes = notify_recipes()
    assert sorted(recipes) == ["desktop", "ntfy", "webhook"]

    (ntfy,) = recipes["ntfy"]
    words = serve_words(ntfy, tmp_path)
    assert words[:2] == ["--resume-window", "900"]
    notify = words[words.index("--notify-command") + 1]
    assert "https://ntfy.sh/your-secret-topic" in notify
    with running_bridge(["--sock", peer.path, "--notify-command", notify.replace("https://ntfy.sh", hooks.url)]) as b:
        approval_while_away(b)
        wait_until(lambda: len(hooks.posts) == 1, "the ntfy post")
    path, headers, body = hooks.posts.pop()
    assert (path, headers["title"], body) == ("/your-secret-topic", "Codex", b"approval")

    *script, serve = recipes["webhook"]
    (tmp_path / ".codex").mkdir()
    subprocess.run(
        ["bash", "-euo", "pipefail", "-c", "\n".join(script)],
        env={"HOME": str(tmp_path), "PATH": os.environ["PATH"]},
        check=True,
        timeout=30,
    )
    words = serve_words(serve, tmp_path)
    notify = words[words.index("--notify-command") + 1]
    assert notify == f"{tmp_path}/.codex/notify-webhook https://hooks.example/codex"
    with running_bridge(
        ["--sock", peer.path, "--notify-command", notify.replace("https://hooks.example", hooks.url)]
    ) as bridge:
        approval_while_away(bridge)
        wait_until(lambda: len(hooks.posts) == 1, "the webhook post")
    path, headers, body = hooks.posts.pop()
    assert (path, headers["content-type"]) == ("/codex", "application/json")
    event = json.loads(body)
    assert event["event"] == "approval"
    assert event["message"]["method"] == "item/commandExecution/requestApproval"

    (desktop,) = recipes["desktop"]
    assert "notify-send" in serve_words(desktop, tmp_path)[1]


def test_a_client_that_stops_answering_pings_is_detached_and_can_resume(peer: WebSocketsPeer) -> None:
    """No FIN, no reset: the phone's client stops reading (its queue of one message is full), so no pong comes."""
    with running_bridge(["--sock", peer.path, "--ping-interval", "1", "--ping-timeout", "1"]) as bridge:
        client = phone(bridge, max_queue=1)
        messages = [tick(index) for index in range(1, 4)]
        client.send({"method": "later", "id": 1, "params": {"delay": 0, "messages": messages}})
        bridge.wait_for_line(r"stopped answering: no pong within 1 s of a ping")
        bridge.wait_for_line(rf"session {client.session_id} kept for 300 s")
        client.ws.close_socket()
        assert client.resume()["result"] == {"received": 1}
        while len(client.received) < 4:
            client.recv()
        assert json.loads(client.received[0]) == {"id": 1, "result": {}}
        assert ticks(client.received) == [1, 2, 3]
        client.close()


def test_a_browser_offers_the_token_as_a_subprotocol_next_to_resume(peer: WebSocketsPeer) -> None:
    offered = [Subprotocol("codex-appserver.resume.v1"), Subprotocol(f"codex-appserver.bearer.{TOKEN}")]
    with (
        running_bridge(["--sock", peer.path, "--token-env", "T"], env={"T": TOKEN}) as bridge,
        connect(bridge.ws_url(), subprotocols=offered, open_timeout=30) as ws,
    ):
        assert ws.subprotocol == "codex-appserver.resume.v1"
        assert json.loads(ws.recv(timeout=30))["method"] == "bridge/session"
        ws.send(compact({"method": "ping", "id": 1}))
        assert json.loads(ws.recv(timeout=30)) == {"id": 1, "result": {}}
    assert TOKEN not in bridge.stderr_text
