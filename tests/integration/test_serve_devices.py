"""``serve`` devices against the real app-server with the offline mock model (issue 13): device tokens (add, use,
revoke while connected -> 1008 then 401, list, file modes, a change seen by a running bridge), roles (an observer
follows a live turn; its turn/start and its approval answer never reach the daemon), ``--tls-self-signed`` (a
client pinning the printed fingerprint connects, another certificate is refused), the QR pairing URI, and join
codes (single use, expiry, a refused confirmation, the rate limit).
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import signal
import socket
import ssl
import stat
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from websockets.exceptions import InvalidStatus
from wsproto.connection import Connection as WsprotoConnection
from wsproto.connection import ConnectionType
from wsproto.events import TextMessage

from proxy.serve.pairing import parse_pairing_uri
from proxy.serve.roles import ROLE_FORBIDDEN

from . import jsonrpc
from .bridge_process import BridgeProcess, running_bridge
from .codex_server import CodexServer
from .devices_process import (
    Peer,
    add_device,
    client,
    close_of,
    join_command,
    peer_fingerprint,
    pinned_context,
    post_pair,
    run_devices,
)
from .jsonrpc import JsonObject
from .mock_responses import FunctionCall, Message, MockResponses
from .proxy_process import proxy_argv, proxy_env

pytestmark = pytest.mark.codex

HELLO_PROMPT = "Say hello."
HELLO = Message(("Hello ", "from ", "the mock."))
RUN_PROMPT = "Run the command."
ECHO_COMMAND = "echo approved-$((6 * 7))"
RUN_CALL = FunctionCall("exec_command", {"cmd": ECHO_COMMAND}, call_id="call_echo")
RUN_DONE = Message(("Done", "."))
OBSERVER_PROMPT = "An observer must not start this."


def state_folder(server: CodexServer) -> Path:
    return server.codex_home / "codex-appserver"


def refused_401(bridge: BridgeProcess, token: str | None, **kwargs: object) -> None:
    with pytest.raises(InvalidStatus) as refused:
        client(bridge, token, **kwargs)  # type: ignore[arg-type]
    assert refused.value.response.status_code == 401


def list_rows(server: CodexServer) -> dict[str, list[str]]:
    done = run_devices(["list"], server.env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["NAME", "ROLE", "CREATED", "LAST", "SEEN", "CONNECTED"]
    return {line.split()[0]: line.split() for line in lines[1:]}


# -- device tokens ------------------------------------------------------------------------------------------


def test_device_token_add_use_list_revoke_while_connected(turn_server: CodexServer) -> None:
    token = add_device("phone", turn_server.env)
    store = state_folder(turn_server) / "devices.json"
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.parent.stat().st_mode) == 0o700
    assert token not in store.read_text()

    with running_bridge([], env=turn_server.env) as bridge:
        refused_401(bridge, None)  # a device store exists: loopback needs a token too
        refused_401(bridge, "x" * 43)
        with client(bridge, token) as ws:
            peer = Peer(ws)
            assert peer.initialize("phone")["codexHome"] == str(turn_server.codex_home)
            bridge.wait_for_line(r"device phone \(role full\) connected")

            rows = list_rows(turn_server)
            assert rows["phone"][1:2] == ["full"]
            assert rows["phone"][-2:] == ["now", "1"]
            listing = run_devices(["list"], turn_server.env)
            assert token not in listing.stdout + listing.stderr
            assert json.loads(store.read_text())["devices"][0]["sha256"] not in listing.stdout

            started = time.monotonic()
            done = run_devices(["revoke", "phone"], turn_server.env)
            assert done.returncode == 0, done.stderr
            assert "revoked device phone" in done.stderr
            assert close_of(ws) == (1008, "device revoked")
            assert time.monotonic() - started < 30  # at once (a guard for a shared, slow machine), not at a restart
        refused_401(bridge, token)
        assert "phone" not in list_rows(turn_server)
    assert token not in bridge.stderr_text


def test_a_running_bridge_sees_a_new_device_without_restart(turn_server: CodexServer) -> None:
    first = add_device("laptop", turn_server.env)
    with running_bridge([], env=turn_server.env) as bridge:
        with client(bridge, first) as ws:
            assert Peer(ws).initialize("laptop")["codexHome"] == str(turn_server.codex_home)
        late = add_device("tablet", turn_server.env)
        with client(bridge, late) as ws:
            assert Peer(ws).initialize("tablet")["codexHome"] == str(turn_server.codex_home)
        bridge.wait_for_line(r"device tablet \(role full\) connected")
        # Revoked by editing the file by hand (no control-socket nudge): the periodic check catches it.
        with client(bridge, late) as ws:
            Peer(ws).initialize("tablet")
            path = state_folder(turn_server) / "devices.json"
            document = json.loads(path.read_text())
            document["devices"] = [d for d in document["devices"] if d["name"] != "tablet"]
            temp = path.with_suffix(".tmp")
            temp.write_text(json.dumps(document))
            temp.replace(path)
            assert close_of(ws) == (1008, "device revoked")
    rows = list_rows(turn_server)
    assert set(rows) == {"laptop"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", rows["laptop"][3])  # last seen, bridge gone
    assert rows["laptop"][4] == "no"


def test_the_shared_token_keeps_working_as_role_full(turn_server: CodexServer, tmp_path: Path) -> None:
    shared = tmp_path / "token"
    shared.write_text("s" * 43 + "\n")
    shared.chmod(0o600)
    device = add_device("phone", turn_server.env, role="observer")
    with running_bridge(["--token-file", str(shared)], env=turn_server.env) as bridge:
        with client(bridge, "s" * 43) as ws:
            peer = Peer(ws)
            peer.initialize("shared")
            assert "result" in peer.call(2, "thread/start", {})
        bridge.wait_for_line(r"shared token \(role full\) connected")
        with client(bridge, device) as ws:
            peer = Peer(ws)
            peer.initialize("phone")
            assert peer.call(2, "thread/start", {})["error"]["code"] == ROLE_FORBIDDEN


# -- roles --------------------------------------------------------------------------------------------------


def test_an_observer_follows_a_live_turn_but_cannot_start_one_or_answer_an_approval(
    turn_server: CodexServer, mock_model: MockResponses, workdir: Path
) -> None:
    mock_model.script(HELLO_PROMPT, HELLO)
    mock_model.script(RUN_PROMPT, RUN_CALL, RUN_DONE)
    full_token = add_device("laptop", turn_server.env)
    observer_token = add_device("watch", turn_server.env, role="observer")

    with running_bridge([], env=turn_server.env) as bridge, client(bridge, full_token) as full_ws:
        full = Peer(full_ws)
        full.initialize("laptop")
        thread = full.result(2, "thread/start", {"cwd": str(workdir), "approvalPolicy": "untrusted"})["thread"]
        thread_id = thread["id"]
        full.result(3, "turn/start", {"threadId": thread_id, "input": [{"type": "text", "text": HELLO_PROMPT}]})
        full.read_until(lambda m: m.get("method") == "turn/completed")

        # The second turn asks for approval; the observer joins while it waits.
        full.result(4, "turn/start", {"threadId": thread_id, "input": [{"type": "text", "text": RUN_PROMPT}]})
        approval = full.read_until(lambda m: m.get("method") == "item/commandExecution/requestApproval")

        with client(bridge, observer_token) as observer_ws:
            observer = Peer(observer_ws)
            observer.initialize("watch")
            bridge.wait_for_line(r"device watch \(role observer\) connected")
            assert observer.result(2, "thread/list", {})["data"]
            assert observer.result(3, "thread/read", {"threadId": thread_id})["thread"]["id"] == thread_id
            refused = observer.call(4, "thread/resume", {"threadId": thread_id, "approvalPolicy": "never"})
            assert refused["error"]["code"] == ROLE_FORBIDDEN
            assert observer.result(5, "thread/resume", {"threadId": thread_id})["thread"]["id"] == thread_id
            # Codex re-sends the pending approval to the resumed connection, with the same id.
            again = observer.read_until(lambda m: m.get("method") == "item/commandExecution/requestApproval")
            assert again["id"] == approval["id"]

            # The observer may not start a turn: the bridge answers, the daemon never sees it.
            denied = observer.call(
                6, "turn/start", {"threadId": thread_id, "input": [{"type": "text", "text": OBSERVER_PROMPT}]}
            )
            assert denied["error"] == {
                "code": ROLE_FORBIDDEN,
                "message": "turn/start is not allowed for role observer",
                "data": {"role": "observer"},
            }
            # Nor answer the approval: its "accept" is dropped; the laptop's "decline" decides.
            observer.send({"id": approval["id"], "result": {"decision": "accept"}})
            full.send({"id": approval["id"], "result": {"decision": "decline"}})

            def completed(message: JsonObject) -> bool:
                return message.get("method") == "turn/completed" and message["params"]["threadId"] == thread_id

            for peer in (full, observer):
                peer.read_until(completed)
                resolved = peer.read_until(lambda m: m.get("method") == "serverRequest/resolved")
                assert resolved["params"]["requestId"] == approval["id"]
            deltas = [m["params"]["delta"] for m in observer.messages if m.get("method") == "item/agentMessage/delta"]
            assert "".join(deltas) == RUN_DONE.text  # the observer followed the live stream

    assert mock_model.requests_for(OBSERVER_PROMPT) == []  # the daemon never saw the observer's turn/start
    # The command did not run: the model got the decline as the tool's output, not the command's output.
    steps = mock_model.requests_for(RUN_PROMPT)
    assert [step.step for step in steps] == [0, 1]
    (output,) = steps[1].function_call_outputs()
    assert output["call_id"] == RUN_CALL.call_id
    assert "approved-42" not in json.dumps(output)
    assert bridge.count_lines(r"refused turn/start \(role observer\)") == 1
    assert bridge.count_lines(r"dropped a response to a server request \(role observer\)") == 1


# -- TLS without a CA ---------------------------------------------------------------------------------------

FINGERPRINT = re.compile(r"^codex-appserver: TLS certificate SHA-256 fingerprint ((?:[0-9A-F]{2}:){31}[0-9A-F]{2})$")


def printed_fingerprint(bridge: BridgeProcess) -> str:
    return bridge.wait_for_line(FINGERPRINT.pattern).group(1).replace(":", "").lower()


def response_to(request_id: int) -> Callable[[JsonObject], bool]:
    return lambda message: message.get("id") == request_id and "method" not in message


def test_an_observers_messages_sent_in_one_write_are_each_checked(turn_server: CodexServer) -> None:
    """The bridge forwards the messages of one read together (Relay.forward_all): the role rule still judges
    each one. Three requests in one TCP segment: the allowed ones are answered by Codex, the forbidden one by the
    bridge, in its place."""
    observer_token = add_device("watch", turn_server.env, role="observer")
    with running_bridge([], env=turn_server.env) as bridge, client(bridge, observer_token) as ws:
        observer = Peer(ws)
        observer.initialize("watch")
        framer = WsprotoConnection(ConnectionType.CLIENT)  # masked frames, written past websockets in one send
        batch = [
            {"method": "thread/list", "id": 2, "params": {}},
            {"method": "turn/start", "id": 3, "params": {"threadId": "t", "input": []}},
            {"method": "thread/list", "id": 4, "params": {}},
        ]
        ws.socket.sendall(b"".join(framer.send(TextMessage(data=json.dumps(m))) for m in batch))
        answers = {request_id: observer.read_until(response_to(request_id)) for request_id in (2, 3, 4)}
        assert "data" in answers[2]["result"] and "data" in answers[4]["result"]
        assert answers[3]["error"]["code"] == ROLE_FORBIDDEN
        assert answers[3]["error"]["message"] == "turn/start is not allowed for role observer"


def test_tls_self_signed_is_made_once_pinned_and_another_certificate_refused(
    turn_server: CodexServer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    token = add_device("phone", turn_server.env)
    folder = state_folder(turn_server)
    with running_bridge(["--tls-self-signed"], env=turn_server.env) as bridge:
        assert bridge.url.startswith("wss://")
        bridge.wait_for_line(r"made a new self-signed TLS certificate")
        fingerprint = printed_fingerprint(bridge)
        assert peer_fingerprint(bridge.port) == fingerprint
        for name in ("tls-cert.pem", "tls-key.pem"):
            assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600
        with client(bridge, token, ssl_context=pinned_context(folder / "tls-cert.pem")) as ws:
            assert Peer(ws).initialize("phone")["codexHome"] == str(turn_server.codex_home)
        # Our own proxy trusts it with --cacert (the certificate names 127.0.0.1), with the device token.
        done = subprocess.run(
            proxy_argv(
                "--remote",
                f"wss://127.0.0.1:{bridge.port}/ws",
                "--cacert",
                str(folder / "tls-cert.pem"),
                "--remote-auth-token-env",
                "DEVICE_TOKEN",
            ),
            input=jsonrpc.initialize(1),
            capture_output=True,
            env=proxy_env({"DEVICE_TOKEN": token}),
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        first = json.loads(done.stdout.splitlines()[0])
        assert first["result"]["codexHome"] == str(turn_server.codex_home)
    key_before = (folder / "tls-key.pem").read_bytes()

    with running_bridge(["--tls-self-signed"], env=turn_server.env) as bridge:
        bridge.wait_for_line(r"using the self-signed TLS certificate")
        assert printed_fingerprint(bridge) == fingerprint  # reused, not made again
    assert (folder / "tls-key.pem").read_bytes() == key_before

    # Another machine's (another CODEX_HOME's) certificate: the pin does not match, verification fails.
    other_home = tmp_path_factory.mktemp("other")
    with running_bridge(["--tls-self-signed"], env={"CODEX_HOME": str(other_home)}) as other:
        assert printed_fingerprint(other) != fingerprint
        assert peer_fingerprint(other.port) != fingerprint
        with pytest.raises(ssl.SSLCertVerificationError):
            client(other, token, ssl_context=pinned_context(folder / "tls-cert.pem"))


# -- pairing ------------------------------------------------------------------------------------------------


def test_qr_prints_the_code_and_the_uri_with_url_token_and_fingerprint(turn_server: CodexServer) -> None:
    import segno

    with running_bridge(["--tls-self-signed"], env=turn_server.env) as bridge:
        fingerprint = printed_fingerprint(bridge)
        done = run_devices(["add", "phone", "--qr"], turn_server.env)
        assert done.returncode == 0, done.stderr
        *qr_lines, uri = done.stdout.splitlines()
        info = parse_pairing_uri(uri)
        assert info.url == bridge.url  # announced by the running bridge
        assert info.sha256 == fingerprint
        assert info.name == "phone"
        # The block above the URI is the QR code of exactly that URI.
        assert "\n".join(qr_lines) + "\n" == _segno_terminal(segno, uri)
        with client(bridge, info.token, ssl_context=pinned_context(state_folder(turn_server) / "tls-cert.pem")) as ws:
            assert Peer(ws).initialize("phone")["codexHome"] == str(turn_server.codex_home)

    # No bridge running: --url, or the default wss://<host name>:9100/ws, and the certificate serve will use.
    done = run_devices(["add", "tablet", "--qr", "--url", "wss://bridge.example:9443/ws"], turn_server.env)
    assert done.returncode == 0, done.stderr
    info = parse_pairing_uri(done.stdout.splitlines()[-1])
    assert (info.url, info.sha256) == ("wss://bridge.example:9443/ws", fingerprint)
    done = run_devices(["add", "desk", "--qr"], turn_server.env)
    info = parse_pairing_uri(done.stdout.splitlines()[-1])
    assert re.fullmatch(r"wss://[^/:]+:9100/ws", info.url)


def _segno_terminal(segno: object, uri: str) -> str:
    import io

    out = io.StringIO()
    segno.make(uri, error="m").terminal(out=out, compact=True, border=2)  # type: ignore[attr-defined]
    return out.getvalue()


def test_join_code_confirmed_once_then_gone(turn_server: CodexServer) -> None:
    with running_bridge(["--tls-self-signed"], env=turn_server.env) as bridge:
        context = pinned_context(state_folder(turn_server) / "tls-cert.pem")
        fingerprint = printed_fingerprint(bridge)
        with join_command("phone", turn_server.env, "--role", "observer") as command:
            code = command.wait_for("join code: ").split(": ", 1)[1]
            assert re.fullmatch(r"[0-9A-Z]{4}-[0-9A-Z]{4}", code)
            with ThreadPoolExecutor(1) as pool:
                pending = pool.submit(post_pair, bridge.port, json.dumps({"code": code.lower()}).encode(), context)
                assert command.wait_for("pair phone from ") == "pair phone from 127.0.0.1? [y/N]"
                command.answer("y\n")
                status, body, content_type = pending.result(timeout=60)
            assert status == 200, body
            assert content_type.startswith("application/json")
            answer = json.loads(body)
            assert answer["name"] == "phone"
            assert answer["role"] == "observer"
            assert answer["url"] == bridge.url
            assert answer["sha256"] == fingerprint
            status_code, stderr = command.finish()
            assert status_code == 0, stderr
            assert stderr.splitlines() == [
                f'codex-appserver: POST https://127.0.0.1:{bridge.port}/pair with {{"code": "{code}"}} within 300 s',
                "codex-appserver: paired device phone (role observer) from 127.0.0.1",
            ]
        assert answer["token"] not in bridge.stderr_text
        with client(bridge, answer["token"], ssl_context=context) as ws:
            peer = Peer(ws)
            assert peer.initialize("phone")["codexHome"] == str(turn_server.codex_home)
            assert peer.call(2, "thread/start", {})["error"]["code"] == ROLE_FORBIDDEN
        # Single use: the same code again is gone.
        assert post_pair(bridge.port, json.dumps({"code": code}).encode(), context)[0] == 410


def test_join_code_refused_or_expired_gives_no_token(turn_server: CodexServer) -> None:
    with running_bridge(["--tls-self-signed"], env=turn_server.env) as bridge:
        context = pinned_context(state_folder(turn_server) / "tls-cert.pem")
        with join_command("phone", turn_server.env) as command:
            code = command.wait_for("join code: ").split(": ", 1)[1]
            with ThreadPoolExecutor(1) as pool:
                pending = pool.submit(post_pair, bridge.port, json.dumps({"code": code}).encode(), context)
                command.wait_for("pair phone from ")
                command.answer("n\n")
                status, body, _ = pending.result(timeout=60)
            assert status == 410
            assert b"token" not in body
            status_code, stderr = command.finish()
            assert status_code == 1
            assert "refused" in stderr
        assert run_devices(["list"], turn_server.env).stdout.splitlines()[1:] == []
        assert post_pair(bridge.port, json.dumps({"code": code}).encode(), context)[0] == 410

        with join_command("tablet", turn_server.env, "--ttl", "1") as command:
            code = command.wait_for("join code: ").split(": ", 1)[1]
            status_code, stderr = command.finish()
            assert status_code == 1
            assert "expired" in stderr
        assert post_pair(bridge.port, json.dumps({"code": code}).encode(), context)[0] == 410
        assert run_devices(["list"], turn_server.env).stdout.splitlines()[1:] == []


def test_pairing_requests_are_rate_limited_per_address(turn_server: CodexServer) -> None:
    with running_bridge(["--tls-self-signed"], env=turn_server.env) as bridge:
        context = pinned_context(state_folder(turn_server) / "tls-cert.pem")
        statuses = [post_pair(bridge.port, b'{"code": "AAAA-BBBB"}', context)[0] for _ in range(11)]
        assert statuses == [410] * 10 + [429]


def test_join_needs_a_running_bridge(turn_server: CodexServer) -> None:
    done = run_devices(["add", "phone", "--join"], turn_server.env)
    assert done.returncode == 69
    assert done.stderr.startswith("codex-appserver: no bridge is running")
    assert done.stdout == ""


# -- the README's recipe, as written ------------------------------------------------------------------------

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_two_command_phone_recipe_runs_as_written(turn_server: CodexServer) -> None:
    section = README.read_text().split("### A phone on the LAN in two commands\n", 1)[1].split("\n#", 1)[0]
    (block,) = [part.split("\n```", 1)[0] for part in section.split("```sh\n")[1:]]
    add_line, serve_line = block.splitlines()
    with socket.socket() as probe:  # a free port instead of 9100, which may be taken on a shared machine
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    add_argv = shlex.split(add_line.replace("192.168.1.20:9100", f"127.0.0.1:{port}"))
    serve_argv = shlex.split(serve_line.replace(":9100", f":{port}"))
    assert add_argv[:4] == [*serve_argv[:2], "devices", "add"] == ["codex-appserver", "serve", "devices", "add"]

    done = run_devices(add_argv[3:], turn_server.env)
    assert done.returncode == 0, done.stderr
    info = parse_pairing_uri(done.stdout.splitlines()[-1])
    assert info.url == f"wss://127.0.0.1:{port}/ws"
    with running_bridge(serve_argv[2:], env=turn_server.env) as bridge:
        assert bridge.url == f"wss://0.0.0.0:{port}/ws"
        bridge.wait_for_line(
            r"^codex-appserver: using the self-signed TLS certificate .*/codex-appserver/tls-cert\.pem$"
        )
        assert printed_fingerprint(bridge) == info.sha256
        # The phone: connect to the URL, accept only the certificate with the pinned digest, send the token.
        assert peer_fingerprint(port) == info.sha256
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # verified by the pin instead, as the phone app does
        with client(bridge, info.token, ssl_context=context) as ws:
            tls = ws.socket
            assert isinstance(tls, ssl.SSLSocket)
            der = tls.getpeercert(binary_form=True)
            assert der is not None
            assert hashlib.sha256(der).hexdigest() == info.sha256
            assert Peer(ws).initialize("phone")["codexHome"] == str(turn_server.codex_home)
        bridge.wait_for_line(r"device phone \(role full\) connected")


def test_a_shutdown_answers_a_pairing_request_waiting_for_the_terminal(turn_server: CodexServer) -> None:
    with running_bridge(["--tls-self-signed"], env=turn_server.env) as bridge:
        folder = state_folder(turn_server)
        assert stat.S_IMODE((folder / "control.sock").stat().st_mode) == 0o600
        context = pinned_context(folder / "tls-cert.pem")
        with join_command("phone", turn_server.env) as command, ThreadPoolExecutor(1) as pool:
            code = command.wait_for("join code: ").split(": ", 1)[1]
            pending = pool.submit(post_pair, bridge.port, json.dumps({"code": code}).encode(), context)
            command.wait_for("pair phone from ")
            started = time.monotonic()
            bridge.signal(signal.SIGTERM)
            assert pending.result(timeout=60)[0] == 410
            assert bridge.wait(timeout=60) == 0
            assert time.monotonic() - started < 60  # not the 120 s the confirmation may take
            command.answer("y\n")  # too late: the bridge is gone, nobody gets the token
            status, stderr = command.finish()
            assert status == 1, stderr
            assert "nothing was paired" in stderr
    assert run_devices(["list"], turn_server.env).stdout.splitlines()[1:] == []  # the device was taken out again
    assert not (folder / "control.sock").exists()
    assert json.loads((folder / "bridge.json").read_text())["pid"] is None
