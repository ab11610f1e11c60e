"""Device tokens (issue 13) meet resumable sessions (issue 12), through ``codex-appserver serve`` (a real
subprocess) with a `websockets` app-server stand-in and `websockets` clients playing the phones: an observer that
offers ``codex-appserver.resume.v1`` stays an observer; revoking a device ends its sessions, attached or detached;
a device's session resumes only with that device's token; ``devices list`` shows its presence.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import InvalidStatus

from proxy.serve.roles import ROLE_FORBIDDEN

from .bridge_process import BridgeProcess, running_bridge
from .devices_process import add_device, run_devices
from .resume_client import Phone, compact, wait_until
from .websockets_peer import PeerLog, PeerPool, WebSocketsPeer

OTHER_CREDENTIALS = -32013
SESSION_ENDED = -32011
APPROVAL_ID = "srv-approval"
SHARED = "s" * 43


async def asks_approval(connection: ServerConnection, log: PeerLog) -> None:
    """Answers every request with an empty result; after ``initialize``, asks the client for an approval."""
    async for message in connection:
        assert isinstance(message, str)
        log.received(message)
        parsed = json.loads(message)
        if "id" in parsed and "method" in parsed:
            await connection.send(compact({"id": parsed["id"], "result": {}}))
        if parsed.get("method") == "initialize":
            await asyncio.sleep(0)
            approval = {"id": APPROVAL_ID, "method": "item/commandExecution/requestApproval", "params": {}}
            await connection.send(compact(approval))


@pytest.fixture
def peer() -> Iterator[WebSocketsPeer]:
    pool = PeerPool()
    try:
        yield pool.start(asks_approval, max_size=None)
    finally:
        assert pool.close() == []


@pytest.fixture
def home(tmp_path: Path) -> dict[str, str]:
    folder = tmp_path / "codex-home"
    folder.mkdir()
    return {"CODEX_HOME": str(folder)}


def bearer(token: str) -> list[tuple[str, str]]:
    return [("Authorization", f"Bearer {token}")]


def device_phone(bridge: BridgeProcess, token: str) -> Phone:
    return Phone(bridge.ws_url(), bearer(token))


def rows(env: dict[str, str]) -> dict[str, list[str]]:
    done = run_devices(["list"], env)
    assert done.returncode == 0, done.stderr
    return {line.split()[0]: line.split() for line in done.stdout.splitlines()[1:]}


def methods(log: PeerLog) -> list[str | None]:
    return [json.loads(text).get("method") for text in log.messages]


def test_an_observer_offering_resume_is_still_an_observer(peer: WebSocketsPeer, home: dict[str, str]) -> None:
    token = add_device("watch", home, role="observer")
    with running_bridge(["--sock", peer.path], env=home) as bridge:
        watch = device_phone(bridge, token)
        bridge.wait_for_line(r"device watch \(role observer\) connected")
        watch.send({"method": "initialize", "id": 1, "params": {"clientInfo": {"name": "watch", "version": "1"}}})
        assert watch.recv() == {"id": 1, "result": {}}
        approval = watch.recv()
        assert approval["id"] == APPROVAL_ID
        watch.send({"method": "initialized"})
        watch.send({"method": "thread/list", "id": 2, "params": {}})
        assert watch.recv() == {"id": 2, "result": {}}
        watch.send({"method": "turn/start", "id": 3, "params": {"threadId": "t", "input": []}})
        denied = watch.recv()
        assert denied == {
            "id": 3,
            "error": {
                "code": ROLE_FORBIDDEN,
                "message": "turn/start is not allowed for role observer",
                "data": {"role": "observer"},
            },
        }
        watch.send({"id": APPROVAL_ID, "result": {"decision": "accept"}})
        # A request sent after the answer is relayed: once it arrives, the answer would have arrived before it.
        watch.send({"method": "model/list", "id": 4, "params": {}})
        assert watch.recv() == {"id": 4, "result": {}}
        assert methods(peer.log) == ["initialize", "initialized", "thread/list", "model/list"]

        # The same session resumed on a new connection (same device): still an observer.
        watch.cut()
        bridge.wait_for_line(rf"session {watch.session_id} kept")
        # M counts every message the bridge handled, the refused ones too: the phone must not resend them.
        assert watch.resume()["result"] == {"received": 6}
        watch.send({"method": "turn/start", "id": 5, "params": {"threadId": "t", "input": []}})
        assert watch.recv()["error"]["code"] == ROLE_FORBIDDEN
        watch.send({"id": APPROVAL_ID, "result": {"decision": "accept"}})
        watch.send({"method": "thread/read", "id": 6, "params": {"threadId": "t"}})
        assert watch.recv() == {"id": 6, "result": {}}
        watch.close()
        assert methods(peer.log) == ["initialize", "initialized", "thread/list", "model/list", "thread/read"]
    assert bridge.count_lines(r"refused turn/start \(role observer\)") == 2
    assert bridge.count_lines(r"dropped a response to a server request \(role observer\)") == 2


def test_revoking_a_device_ends_its_attached_session(peer: WebSocketsPeer, home: dict[str, str]) -> None:
    token = add_device("phone", home)
    with running_bridge(["--sock", peer.path], env=home) as bridge:
        phone = device_phone(bridge, token)
        bridge.wait_for_line(r"device phone \(role full\) connected")
        assert rows(home)["phone"][-2:] == ["now", "1"]
        done = run_devices(["revoke", "phone"], home)
        assert done.returncode == 0, done.stderr
        assert phone.close_code() == (1008, "device revoked")
        wait_until(lambda: peer.log.close_codes == [1001], "the session's upstream closing 1001")
        # Not a detached session waiting for its phone: a resume (any credentials that still work) is refused.
        spare = add_device("spare", home)
        other = Phone(bridge.ws_url(), bearer(spare))
        answer = other.resume(session_id=phone.session_id, token=phone.token, received=0)
        assert answer["error"] == {
            "code": SESSION_ENDED,
            "message": "the session ended (its device was revoked); start a new one",
        }
        other.close()


def test_revoking_a_device_ends_its_detached_session(peer: WebSocketsPeer, home: dict[str, str]) -> None:
    token = add_device("phone", home)
    with running_bridge(["--sock", peer.path], env=home) as bridge:
        phone = device_phone(bridge, token)
        phone.cut()
        bridge.wait_for_line(rf"session {phone.session_id} kept")
        done = run_devices(["revoke", "phone"], home)
        assert done.returncode == 0, done.stderr
        wait_until(lambda: peer.log.close_codes == [1001], "the detached session's upstream closing 1001")
        with pytest.raises(InvalidStatus) as refused:  # the phone itself cannot even open a connection
            device_phone(bridge, token)
        assert refused.value.response.status_code == 401
        spare = add_device("spare", home)
        other = Phone(bridge.ws_url(), bearer(spare))
        answer = other.resume(session_id=phone.session_id, token=phone.token, received=0)
        assert answer["error"] == {
            "code": SESSION_ENDED,
            "message": "the session ended (its device was revoked); start a new one",
        }
        other.close()
        assert "phone" not in rows(home)


def test_a_session_resumes_only_with_its_own_device_token(
    peer: WebSocketsPeer, home: dict[str, str], tmp_path: Path
) -> None:
    shared_file = tmp_path / "token"
    shared_file.write_text(SHARED + "\n")
    shared_file.chmod(0o600)
    a = add_device("phone-a", home)
    b = add_device("phone-b", home)
    with running_bridge(["--sock", peer.path, "--token-file", str(shared_file)], env=home) as bridge:
        phone = device_phone(bridge, a)
        phone.send({"method": "initialize", "id": 1, "params": {}})
        assert phone.recv() == {"id": 1, "result": {}}
        phone.cut()
        bridge.wait_for_line(rf"session {phone.session_id} kept")

        for token in (b, SHARED):
            thief = Phone(bridge.ws_url(), bearer(token))
            answer = thief.resume(session_id=phone.session_id, token=phone.token, received=0)
            assert answer["error"]["code"] == OTHER_CREDENTIALS
            thief.close()
        assert phone.resume()["result"] == {"received": 1}
        assert phone.recv()["id"] == APPROVAL_ID  # the one message it missed
        phone.close()
        assert phone.token not in bridge.stderr_text


def test_presence_while_a_resumable_session_is_attached_and_after_it_ends(
    peer: WebSocketsPeer, home: dict[str, str]
) -> None:
    token = add_device("phone", home)
    with running_bridge(["--sock", peer.path], env=home) as bridge:
        phone = device_phone(bridge, token)
        bridge.wait_for_line(r"device phone \(role full\) connected")
        assert rows(home)["phone"][-2:] == ["now", "1"]
        phone.cut()
        bridge.wait_for_line(rf"session {phone.session_id} kept")
        assert rows(home)["phone"][-1] == "no"  # detached: nobody is connected now
        assert phone.resume()["result"] == {"received": 0}
        assert rows(home)["phone"][-2:] == ["now", "1"]
        phone.close()
        # Both sessions' upstreams: the resuming connection's fresh one, then the resumed one.
        wait_until(lambda: peer.log.close_codes == [1001, 1001], "both sessions' upstreams closing 1001")
        wait_until(lambda: rows(home)["phone"][-1] == "no", "the device listed as not connected")
