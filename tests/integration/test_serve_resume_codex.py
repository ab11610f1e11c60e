"""Lossless resume through ``codex-appserver serve`` in front of the real Codex app-server (pinned version), its
model replaced by the offline mock, with a `websockets` client playing the phone (:class:`Phone`):

- a turn runs; the phone's TCP connection is cut mid-turn (a reset, no close frame) while an approval request
  and more arrive; it resumes with ``bridge/resume`` and receives every missed message exactly once and in
  order, the same as a ``codex-appserver proxy`` client on the control socket that never dropped; it answers
  the pending approval, is cut again in the middle of the streamed answer, resumes again, and sees
  ``turn/completed``;
- a resume after the window gets -32011 and the connection goes on as a working new session;
- a slow-consumer close (1008) followed by a resume loses nothing (10 messages of 2 MiB past a 4 MiB queue);
- a resume with another session's token gets -32012;
- while the phone is away, the approval request and then ``turn/completed`` each run the notify command once,
  with the right JSON.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from .bridge_process import BridgeProcess, running_bridge
from .codex_server import CodexServer
from .jsonrpc import initialize_message
from .mock_responses import MockResponses
from .resume_client import Phone, wait_until
from .test_serve_codex import ProxyClient, ends_turn, is_approval, turn_start
from .test_turns import ECHO_OUTPUT, HELLO, HELLO_PROMPT, RUN_CALL, RUN_DONE, RUN_PROMPT

pytestmark = pytest.mark.codex

TOKEN = secrets.token_urlsafe(32)
BEARER = [("Authorization", f"Bearer {TOKEN}")]
JsonObject = dict[str, Any]
#: Files read in the slow-consumer test.
COUNT = 10


def bridge_args(*extra: str) -> list[str]:
    return ["--token-env", "BRIDGE_TOKEN", *extra]


def env_of(server: CodexServer) -> dict[str, str]:
    return {**server.env, "BRIDGE_TOKEN": TOKEN}


def phone_of(bridge: BridgeProcess, max_queue: int | None = 16) -> Phone:
    return Phone(bridge.ws_url(), BEARER, max_queue)


def call(phone: Phone, request_id: int, method: str, params: JsonObject) -> JsonObject:
    phone.send({"method": method, "id": request_id, "params": params})
    response = phone.recv_until(lambda m: m.get("id") == request_id and "method" not in m)[-1]
    assert "result" in response, response
    result: JsonObject = response["result"]
    return result


def start(phone: Phone, name: str) -> None:
    call(phone, 1, "initialize", initialize_message(1, name)["params"])
    phone.send({"method": "initialized"})


def thread_events(messages: list[JsonObject], thread_id: str, turn_id: str) -> list[tuple[str, JsonObject]]:
    """(method, params) of the notifications and server requests of *turn_id*, from its ``turn/started`` on
    (request ids left out: they are per connection)."""
    events: list[tuple[str, JsonObject]] = []
    started = False
    for message in messages:
        params = message.get("params")
        if "method" not in message or not isinstance(params, dict) or params.get("threadId") != thread_id:
            continue
        if message["method"] == "turn/started" and params["turn"]["id"] == turn_id:
            started = True
        if started:
            events.append((message["method"], params))
    return events


def test_cut_mid_turn_then_resume_gets_every_missed_message_once_in_order(
    turn_server: CodexServer, mock_model: MockResponses, workdir: Path
) -> None:
    mock_model.script(HELLO_PROMPT, HELLO)
    mock_model.script(RUN_PROMPT, RUN_CALL, RUN_DONE)
    with running_bridge(bridge_args(), env=env_of(turn_server)) as bridge:
        phone = phone_of(bridge)
        start(phone, "phone")
        thread_id = call(phone, 2, "thread/start", {"cwd": str(workdir), "approvalPolicy": "untrusted"})["thread"]["id"]
        phone.send(turn_start(3, thread_id, HELLO_PROMPT))
        phone.recv_until(ends_turn(thread_id))  # a first turn, so that the thread can be resumed

        terminal = ProxyClient(turn_server.env)  # the client that never drops
        try:
            terminal.session.start("terminal")
            assert terminal.session.call(2, "thread/resume", {"threadId": thread_id})["thread"]["id"] == thread_id

            phone.send(turn_start(4, thread_id, RUN_PROMPT))
            phone.recv_until(lambda m: m.get("method") == "turn/started")
            phone.cut()  # mid-turn: the approval request and more come while the phone is away
            bridge.wait_for_line(rf"session {phone.session_id} kept for 300 s")
            terminal_before = terminal.session.read_until(is_approval)
            turn_id = terminal_before[-1]["params"]["turnId"]

            answer = phone.resume()
            # All 5 of its messages (initialize, initialized, thread/start, two turn/start) reached the app-server.
            assert answer["result"] == {"received": 5}
            replayed = phone.recv_until(is_approval)
            approval = replayed[-1]
            assert approval["params"]["turnId"] == turn_id

            phone.send({"id": approval["id"], "result": {"decision": "accept"}})
            phone.recv_until(lambda m: m.get("method") == "item/agentMessage/delta")
            phone.cut()  # again, while the answer streams
            bridge.wait_for_line(rf"closed 1006 after .* session {phone.session_id} kept", timeout=60)
            assert phone.resume()["result"] == {"received": 6}
            phone.recv_until(ends_turn(thread_id))
            terminal_after = terminal.session.read_until(ends_turn(thread_id))
        finally:
            assert terminal.close() == 0

        received = [json.loads(text) for text in phone.received]
        assert len(set(phone.received)) == len(phone.received), "a message came twice"
        phone_events = thread_events(received, thread_id, turn_id)
        terminal_events = thread_events(terminal.session.seen, thread_id, turn_id)
        assert [method for method, _ in phone_events] == [method for method, _ in terminal_events]
        assert phone_events == terminal_events
        assert phone_events[-1][0] == "turn/completed"
        assert phone_events[-1][1]["turn"]["status"] == "completed"
        commands = [
            params["item"]
            for method, params in phone_events
            if method == "item/completed" and params["item"]["type"] == "commandExecution"
        ]
        assert ECHO_OUTPUT in commands[0]["aggregatedOutput"]
        assert terminal_before and terminal_after
        phone.close()
    assert phone.token not in bridge.stderr_text
    assert TOKEN not in bridge.stderr_text


def test_resume_after_the_window_is_refused_and_a_new_session_works(turn_server: CodexServer) -> None:
    with running_bridge(bridge_args("--resume-window", "1"), env=env_of(turn_server)) as bridge:
        phone = phone_of(bridge)
        start(phone, "phone")
        old = phone.session_id
        phone.cut()
        bridge.wait_for_line(rf"session {old}: nobody resumed it within 1 s; ended")
        answer = phone.resume()
        assert answer["error"]["code"] == -32011
        assert phone.session_id != old  # the connection's own new session
        result = call(phone, 1, "initialize", initialize_message(1, "phone-again")["params"])
        assert result["codexHome"] == str(turn_server.codex_home)
        phone.close()


def test_another_sessions_token_is_refused(turn_server: CodexServer) -> None:
    with running_bridge(bridge_args(), env=env_of(turn_server)) as bridge:
        first = phone_of(bridge)
        second = phone_of(bridge)
        start(first, "first")
        first.cut()
        bridge.wait_for_line(rf"session {first.session_id} kept")
        answer = second.resume(session_id=first.session_id, token=second.token, received=0)
        assert answer["error"]["code"] == -32012
        # The right token still works afterwards: nothing was disturbed.
        assert first.resume()["result"] == {"received": 2}
        first.close()
        second.close()


def test_slow_consumer_close_then_resume_loses_nothing(turn_server: CodexServer, workdir: Path) -> None:
    """Ten files of 1.5 MiB (2 MiB as base64), read while the phone reads nothing, past a 4 MiB queue."""
    files = []
    for index in range(COUNT):
        path = workdir / f"big{index}"
        path.write_bytes(os.urandom(3 * 512 * 1024))
        files.append(path)
    args = bridge_args("--client-queue-bytes", str(4 * 1024 * 1024), "-vv")  # -vv: a line per message, with its size
    with running_bridge(args, env=env_of(turn_server)) as bridge:
        phone = phone_of(bridge, max_queue=1)  # its client reads nothing more while one message waits
        start(phone, "phone")
        for index, path in enumerate(files):
            phone.send({"method": "fs/readFile", "id": 10 + index, "params": {"path": str(path)}})
        bridge.wait_for_line("slow consumer", timeout=120)
        assert phone.close_code(timeout=120) == (1008, "slow consumer")
        # Resume once every response is in the session's log. A response still arriving after the resume races
        # the resumed client's reads: two 2 MiB messages not yet taken are over the 4 MiB bound, and the rule
        # closes that client too (seen once on a loaded machine); that is the rule working, not what this checks.
        wait_until(lambda: bridge.count_lines(r": in \d{7,} bytes") >= COUNT, "every response in the log", 120)
        assert phone.resume()["result"] == {"received": 2 + COUNT}
        while len([t for t in phone.received if '"dataBase64"' in t]) < COUNT:
            phone.recv(timeout=120)
        responses = {m["id"]: m for m in map(json.loads, phone.received) if "dataBase64" in str(m.get("result"))}
        assert sorted(responses) == [10 + index for index in range(COUNT)]
        for index, path in enumerate(files):
            assert base64.b64decode(responses[10 + index]["result"]["dataBase64"]) == path.read_bytes()
        assert len(set(phone.received)) == len(phone.received)
        phone.close()
    assert bridge.count_lines("slow consumer") == 1


def test_notify_command_runs_once_per_event_while_the_phone_is_away(
    turn_server: CodexServer, mock_model: MockResponses, workdir: Path, tmp_path: Path
) -> None:
    mock_model.script(HELLO_PROMPT, HELLO)
    mock_model.script(RUN_PROMPT, RUN_CALL, RUN_DONE)
    out = tmp_path / "events"
    script = tmp_path / "notify.py"
    script.write_text(
        "import os, sys\n"
        f"with open({str(out)!r}, 'a') as f:\n"
        "    f.write(os.environ['CODEX_APPSERVER_EVENT'] + ' ' + sys.stdin.read())\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    args = bridge_args("--notify-command", f"{sys.executable} {script}")
    with running_bridge(args, env=env_of(turn_server)) as bridge:
        phone = phone_of(bridge)
        start(phone, "phone")
        thread_id = call(phone, 2, "thread/start", {"cwd": str(workdir), "approvalPolicy": "untrusted"})["thread"]["id"]
        phone.send(turn_start(3, thread_id, HELLO_PROMPT))
        phone.recv_until(ends_turn(thread_id))
        assert not out.exists()  # attached: no notification
        phone.cut()
        bridge.wait_for_line(rf"session {phone.session_id} kept")

        # The desktop drives a turn on the phone's thread; the phone's session gets its approval and its end.
        terminal = ProxyClient(turn_server.env)
        try:
            terminal.session.start("terminal")
            terminal.session.call(2, "thread/resume", {"threadId": thread_id})
            terminal.session.send(turn_start(3, thread_id, RUN_PROMPT))
            approval = terminal.session.read_until(is_approval)[-1]
            wait_until(lambda: out.exists() and out.read_text().count("\n") == 1, "the approval's notify run", 60)
            terminal.session.send({"id": approval["id"], "result": {"decision": "accept"}})
            terminal.session.read_until(ends_turn(thread_id))
        finally:
            assert terminal.close() == 0
        wait_until(lambda: out.read_text().count("\n") == 2, "the turn/completed notify run", 60)

        lines = out.read_text().splitlines()
        kinds = [line.split(" ", 1)[0] for line in lines]
        assert kinds == ["approval", "turn-completed"]
        first, second = (json.loads(line.split(" ", 1)[1]) for line in lines)
        assert first["event"] == "approval"
        assert first["sessionId"] == phone.session_id
        assert first["method"] == "item/commandExecution/requestApproval"
        assert first["threadId"] == thread_id
        assert first["message"]["params"]["itemId"] == RUN_CALL.call_id
        assert first["turnId"] == first["message"]["params"]["turnId"]
        assert second["event"] == "turn-completed"
        assert second["method"] == "turn/completed"
        assert second["threadId"] == thread_id
        assert second["turnId"] == first["turnId"]
        assert second["message"]["params"]["turn"]["status"] == "completed"

        # The phone comes back and finds the whole turn, then no more runs.
        assert "result" in phone.resume()
        phone.recv_until(ends_turn(thread_id))
        phone.close()
        assert out.read_text().count("\n") == 2
