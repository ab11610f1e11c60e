"""``codex-appserver serve`` as a real subprocess, with `websockets` clients and a `websockets` server standing in
for the app-server on a Unix socket (:mod:`tests.integration.websockets_peer`): startup rules and failures, the
plain HTTP answers, authentication, the Origin rule, limits, the relay both ways, close codes, signals.

The real app-server runs in :mod:`tests.integration.test_serve_codex`.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shlex
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from .bridge_process import (
    UPGRADE_HEADERS,
    BridgeProcess,
    http_request,
    run_bridge_cli,
    running_bridge,
    wait_until,
)
from .proxy_process import proxy_argv, proxy_env
from .websockets_peer import MAX_UNFRAGMENTED_HEADER, PeerLog, PeerPool, echo

TOKEN = secrets.token_urlsafe(32)
WRONG = secrets.token_urlsafe(32)
BEARER = ("Authorization", f"Bearer {TOKEN}")


@pytest.fixture
def peers() -> Iterator[PeerPool]:
    pool = PeerPool()
    try:
        yield pool
    finally:
        assert pool.close() == []


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    path.chmod(0o600)
    return path


def client(bridge: BridgeProcess, path: str = "/ws", **kwargs: Any) -> ClientConnection:
    """A `websockets` client of the bridge with the token in the header (unless *kwargs* say otherwise)."""
    kwargs.setdefault("additional_headers", [BEARER])
    kwargs.setdefault("open_timeout", 30)
    kwargs.setdefault("close_timeout", 10)
    kwargs.setdefault("max_size", None)
    connection: ClientConnection = connect(bridge.ws_url(path), **kwargs)
    return connection


def close_code_of(ws: ClientConnection, timeout: float = 30) -> tuple[int | None, str | None]:
    """Read until the bridge closes; the close frame it sent (code, reason)."""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ws.recv(timeout=max(0.01, deadline - time.monotonic()))
    except ConnectionClosed:
        pass
    received = ws.protocol.close_rcvd
    return (None, None) if received is None else (int(received.code), received.reason)


def one_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


# -- startup -----------------------------------------------------------------------------------------------


def test_new_token_is_256_bits_base64url_mode_0600_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "bridge.token"
    status, stderr = run_bridge_cli(["--new-token", str(path)])
    assert (status, stderr) == (0, "")
    token = path.read_text()
    assert token.endswith("\n")
    assert len(token.strip()) == 43  # 32 bytes, base64url without padding
    assert set(token.strip()) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    status, stderr = run_bridge_cli(["--new-token", str(path)])
    assert status == 74
    assert "exists; not overwritten" in one_line(stderr)
    assert path.read_text() == token


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ([], "--token-file or --token-env"),
        (["--token-env", "T"], "--tls-cert and --tls-key, or --allow-plain-ws"),
    ],
)
def test_a_non_loopback_bind_needs_a_token_and_tls(extra: list[str], needle: str) -> None:
    status, stderr = run_bridge_cli(["--bind", "0.0.0.0:0", *extra], env={"T": TOKEN})
    assert status == 2
    assert needle in one_line(stderr)


def test_a_non_loopback_bind_with_a_token_and_allow_plain_ws_listens() -> None:
    with running_bridge(["--bind", "0.0.0.0:0", "--token-env", "T", "--allow-plain-ws"], env={"T": TOKEN}) as bridge:
        assert bridge.url.startswith("ws://0.0.0.0:")
        status, _, body = http_request(bridge.port, "/healthz")
        assert (status, body) == (200, b"ok\n")


def test_port_in_use_exits_69() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        status, stderr = run_bridge_cli(["--bind", f"127.0.0.1:{port}"])
    assert status == 69
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in one_line(stderr)


def test_bad_certificate_or_key_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "cert.pem"
    bad.write_text("not a certificate\n")
    status, stderr = run_bridge_cli(["--tls-cert", str(bad), "--tls-key", str(bad)])
    assert status == 2
    assert f"cannot load the TLS certificate and key from {bad} and {bad}" in one_line(stderr)


def test_token_file_problems(tmp_path: Path) -> None:
    status, stderr = run_bridge_cli(["--token-file", str(tmp_path / "missing")])
    assert status == 74
    assert "cannot read the token file" in one_line(stderr)
    short = tmp_path / "short"
    short.write_text("too-short\n")
    short.chmod(0o600)
    status, stderr = run_bridge_cli(["--token-file", str(short)])
    assert status == 2
    assert "is 9 bytes; it must be at least 32" in one_line(stderr)
    assert "too-short" not in stderr


def test_the_listening_line_comes_once_even_with_quiet(token_file: Path) -> None:
    with running_bridge(["-q", "--token-file", str(token_file)]) as bridge:
        assert http_request(bridge.port, "/healthz")[0] == 200
        bridge.signal(signal.SIGTERM)
        assert bridge.wait() == 0
        assert bridge.stderr_lines == [f"codex-appserver: listening on ws://127.0.0.1:{bridge.port}/ws"]


def test_ipv6_loopback(peers: PeerPool) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no ::1 here")
    peer = peers.start(echo)
    with running_bridge(["--bind", "[::1]:0", "--sock", peer.path]) as bridge:
        assert bridge.url == f"ws://[::1]:{bridge.port}/ws"
        with connect(f"ws://[::1]:{bridge.port}/ws", open_timeout=30) as ws:
            ws.send('{"method":"hello"}')
            assert ws.recv(timeout=30) == '{"method":"hello"}'


# -- plain HTTP ----------------------------------------------------------------------------------------------


def test_healthz_readyz_426_and_404(peers: PeerPool, tmp_path: Path) -> None:
    peer = peers.start(echo)
    with running_bridge(["--sock", peer.path]) as bridge:
        assert http_request(bridge.port, "/healthz")[::2] == (200, b"ok\n")
        assert http_request(bridge.port, "/readyz")[::2] == (200, b"ready\n")
        status, headers, _ = http_request(bridge.port, "/ws")
        assert (status, headers["upgrade"]) == (426, "websocket")
        assert http_request(bridge.port, "/")[0] == 426
        assert http_request(bridge.port, "/metrics")[0] == 404
        assert peer.log.connections == 0  # /readyz connects without a WebSocket handshake
    with running_bridge(["--sock", str(tmp_path / "none.sock")]) as bridge:
        assert http_request(bridge.port, "/healthz")[0] == 200
        status, _, body = http_request(bridge.port, "/readyz")
        assert status == 503
        assert body.count(b"\n") == 1


# -- authentication --------------------------------------------------------------------------------------------


def test_missing_and_wrong_tokens_get_the_same_401_and_nothing_is_relayed(peers: PeerPool, token_file: Path) -> None:
    peer = peers.start(echo)
    with running_bridge(["--sock", peer.path, "--token-file", str(token_file), "-vv"]) as bridge:
        missing = http_request(bridge.port, "/ws", UPGRADE_HEADERS)
        wrong = http_request(bridge.port, "/ws", [*UPGRADE_HEADERS, ("Authorization", f"Bearer {WRONG}")])
        assert missing[0] == wrong[0] == 401
        assert missing[2] == wrong[2]
        assert missing[2].count(b"\n") == 1
        assert missing[1]["www-authenticate"] == "Bearer"
        with pytest.raises(InvalidStatus) as refused:
            client(bridge, additional_headers=[("Authorization", f"Bearer {WRONG}")])
        assert refused.value.response.status_code == 401
        assert peer.log.connections == 0
        with client(bridge) as ws:
            ws.send('{"method":"ping"}')
            assert ws.recv(timeout=30) == '{"method":"ping"}'
        assert TOKEN not in bridge.stderr_text
        assert WRONG not in bridge.stderr_text
        assert bridge.count_lines(r"-> 401$") == 3


def test_the_subprotocol_token_works_and_is_never_echoed(peers: PeerPool, token_file: Path) -> None:
    peer = peers.start(echo)
    bearer = f"codex-appserver.bearer.{TOKEN}"
    with running_bridge(["--sock", peer.path, "--token-file", str(token_file)]) as bridge:
        with client(bridge, additional_headers=[], subprotocols=[bearer, "codex-appserver.v1"]) as ws:
            assert ws.subprotocol == "codex-appserver.v1"
            assert ws.response is not None
            assert ws.response.headers.get_all("Sec-WebSocket-Protocol") == ["codex-appserver.v1"]
            ws.send('{"method":"x"}')
            assert ws.recv(timeout=30) == '{"method":"x"}'
        status, headers, _ = http_request(bridge.port, "/ws", [*UPGRADE_HEADERS, ("Sec-WebSocket-Protocol", bearer)])
        assert status == 101
        assert "sec-websocket-protocol" not in headers
        with pytest.raises(InvalidStatus) as refused:
            client(
                bridge, additional_headers=[], subprotocols=[f"codex-appserver.bearer.{WRONG}", "codex-appserver.v1"]
            )
        assert refused.value.response.status_code == 401
        assert TOKEN not in bridge.stderr_text


def test_the_eleventh_bad_attempt_within_a_minute_gets_429(peers: PeerPool, token_file: Path) -> None:
    peer = peers.start(echo)
    with running_bridge(["--sock", peer.path, "--token-file", str(token_file)]) as bridge:
        wrong = [*UPGRADE_HEADERS, ("Authorization", f"Bearer {WRONG}")]
        statuses = [http_request(bridge.port, "/ws", wrong)[0] for _ in range(11)]
        assert statuses == [401] * 10 + [429]
        status, headers, _ = http_request(bridge.port, "/ws", [*UPGRADE_HEADERS, BEARER])
        assert status == 429  # for the rest of that minute, even with the right token
        assert 0 < int(headers["retry-after"]) <= 60
        assert http_request(bridge.port, "/healthz")[0] == 200
        assert peer.log.connections == 0


def test_origin_gets_403_unless_allowed(peers: PeerPool) -> None:
    peer = peers.start(echo)
    with running_bridge(["--sock", peer.path, "--allow-origin", "https://app.example"]) as bridge:
        with pytest.raises(InvalidStatus) as refused:
            client(bridge, origin="https://evil.example")
        assert refused.value.response.status_code == 403
        with client(bridge, origin="https://app.example") as ws:
            ws.send('{"method":"x"}')
            assert ws.recv(timeout=30) == '{"method":"x"}'
        assert peer.log.connections == 1


# -- limits --------------------------------------------------------------------------------------------------


def test_one_client_over_max_clients_gets_503(peers: PeerPool) -> None:
    peer = peers.start(echo)
    with running_bridge(["--sock", peer.path, "--max-clients", "1"]) as bridge, client(bridge) as first:
        with pytest.raises(InvalidStatus) as refused:
            client(bridge)
        assert refused.value.response.status_code == 503
        first.send('{"method":"still"}')
        assert first.recv(timeout=30) == '{"method":"still"}'
    assert peer.log.connections == 1


def test_a_slowloris_client_is_dropped_after_10_s_while_another_works(peers: PeerPool) -> None:
    peer = peers.start(echo)
    with running_bridge(["--sock", peer.path]) as bridge:
        with socket.create_connection(("127.0.0.1", bridge.port), timeout=60) as slow:
            slow.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\n")
            started = time.monotonic()
            with client(bridge) as ws:
                for i in range(5):
                    ws.send(json.dumps({"method": "m", "params": {"i": i}}))
                    assert json.loads(ws.recv(timeout=30))["params"]["i"] == i
                    slow.sendall(b"X-Slow: 1\r\n")  # a header line now and then does not buy more time
                    time.sleep(0.5)
            assert slow.recv(1024) == b""  # dropped without an answer
            elapsed = time.monotonic() - started
        assert 9.5 <= elapsed < 30
        bridge.wait_for_line(r"dropped: no whole request within 10 s")


def test_a_head_over_16_kib_gets_431() -> None:
    with running_bridge([]) as bridge:
        status, _, _ = http_request(bridge.port, "/ws", [("X-Big", "a" * 17000)])
        assert status == 431


# -- the relay -------------------------------------------------------------------------------------------


async def recording_echo(connection: ServerConnection, log: PeerLog) -> None:
    """Record the request headers the bridge sent, then echo."""
    log.event(json.dumps({k.lower(): v for k, v in connection.request.headers.raw_items()}))  # type: ignore[union-attr]
    await echo(connection, log)


def test_messages_pass_unchanged_in_order_and_no_client_header_goes_upstream(peers: PeerPool) -> None:
    peer = peers.start(recording_echo, max_size=None, headers=[(MAX_UNFRAGMENTED_HEADER, "1024")])
    texts = [
        json.dumps({"method": "m", "params": {"i": i, "s": "caf\u00e9 \u2028 " + "x" * (i * 100)}}) for i in range(30)
    ]
    with (
        running_bridge(["--sock", peer.path, "--allow-origin", "https://app.example"]) as bridge,
        client(bridge, "/", origin="https://app.example", additional_headers=[("Cookie", "session=secret")]) as ws,
    ):
        for text in texts:
            ws.send(text)
        ws.send([text for text in ('{"method":', '"frag"}')])  # one message in two fragments
        assert [ws.recv(timeout=30) for _ in texts] == texts
        assert ws.recv(timeout=30) == '{"method":"frag"}'
    (headers,) = [json.loads(event) for event in peer.log.events]
    assert "origin" not in headers
    assert "authorization" not in headers
    assert "cookie" not in headers
    assert peer.log.messages == [*texts, '{"method":"frag"}']
    # The peer allows 1024-byte frames: longer messages reached it in fragments.
    assert any(not frame.fin for frame in peer.log.frames_in)
    assert max(frame.size for frame in peer.log.frames_in) <= 1024


def test_binary_messages_are_dropped_with_a_log_line(peers: PeerPool) -> None:
    peer = peers.start(echo)
    with running_bridge(["--sock", peer.path]) as bridge, client(bridge) as ws:
        ws.send(b"\x00\x01binary")
        ws.send('{"method":"after"}')
        assert ws.recv(timeout=30) == '{"method":"after"}'
        bridge.wait_for_line(r"sent a binary message \(8 bytes\); dropped")
    assert peer.log.messages == ['{"method":"after"}']


def test_a_client_message_over_64_mib_closes_that_client_with_1009(peers: PeerPool) -> None:
    peer = peers.start(echo)
    with running_bridge(["--sock", peer.path]) as bridge, client(bridge) as ws:
        ws.send('"' + "x" * (64 * 1024 * 1024) + '"')
        assert close_code_of(ws)[0] == 1009
        wait_until(lambda: peer.log.finished_connections == 1, "the upstream connection to end")
    assert peer.log.close_codes == [1001]
    assert peer.log.messages == []


def test_a_client_that_leaves_gets_its_upstream_closed_with_1001_and_nothing_else_is_disturbed(
    peers: PeerPool,
) -> None:
    peer = peers.start(echo)
    with running_bridge(["--sock", peer.path]) as bridge, client(bridge) as staying:
        with client(bridge) as leaving:
            leaving.send('{"method":"bye"}')
            assert leaving.recv(timeout=30) == '{"method":"bye"}'
        wait_until(lambda: peer.log.finished_connections == 1, "the leaving client's upstream to end")
        assert peer.log.close_codes == [1001]
        staying.send('{"method":"still here"}')
        assert staying.recv(timeout=30) == '{"method":"still here"}'
        bridge.wait_for_line(r": closed 1000 after [\d.]+ s, 1 message from the client, 1 to it$")


async def close_after_first(connection: ServerConnection, log: PeerLog) -> None:
    """Answer the first message, then drop the connection without a close frame (a daemon that died)."""
    log.received(str(await connection.recv()))
    await connection.send('{"method":"last words"}')
    connection.transport.abort()
    await asyncio.sleep(0)


def test_upstream_gone_closes_the_client_with_1012(peers: PeerPool) -> None:
    peer = peers.start(close_after_first)
    with running_bridge(["--sock", peer.path]) as bridge, client(bridge) as ws:
        ws.send('{"method":"go"}')
        assert ws.recv(timeout=30) == '{"method":"last words"}'
        code, reason = close_code_of(ws)
        assert code == 1012
        assert reason == "the app-server connection was lost"
        bridge.wait_for_line(r"lost the connection to the app-server")


def test_pings_both_ways(peers: PeerPool) -> None:
    peer = peers.start(echo)
    with running_bridge(["--sock", peer.path, "--ping-interval", "0.3", "--ping-timeout", "5"]) as bridge:
        with client(bridge, ping_interval=None) as ws:
            assert ws.ping(b"client ping").wait(timeout=30)  # the bridge answers the client's ping
            time.sleep(1.5)  # idle: the bridge pings, websockets answers, nothing closes
            ws.send('{"method":"alive"}')
            assert ws.recv(timeout=30) == '{"method":"alive"}'
        # A client that completes the handshake and then never reads nor answers is closed by the keepalive.
        with socket.create_connection(("127.0.0.1", bridge.port), timeout=60) as mute:
            request = "".join(f"{k}: {v}\r\n" for k, v in UPGRADE_HEADERS)
            mute.sendall(f"GET /ws HTTP/1.1\r\nHost: x\r\n{request}\r\n".encode())
            bridge.wait_for_line(r"stopped answering: no pong within 5 s of a ping", timeout=60)


async def flood_on_request(connection: ServerConnection, log: PeerLog) -> None:
    """On ``{"method":"flood","params":{"n":N}}``, send N 10 KiB notifications as fast as possible."""
    async for message in connection:
        request = json.loads(message)
        if request["method"] == "flood":
            pad = "y" * 10240
            for i in range(request["params"]["n"]):
                await connection.send(json.dumps({"method": "flood/item", "params": {"i": i, "pad": pad}}))
            log.event("flooded")
        else:
            await connection.send(message)


def vm_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))


def test_a_client_that_stops_reading_is_closed_as_a_slow_consumer_and_others_are_not_slowed(
    peers: PeerPool,
) -> None:
    peer = peers.start(flood_on_request)
    queue = 2 * 1024 * 1024
    with running_bridge(["--sock", peer.path, "--client-queue-bytes", str(queue), "-v"]) as bridge:
        with client(bridge, max_queue=1) as stalled, client(bridge) as lively:
            # ~100 MiB for a client that reads nothing: the bridge must not buffer it.
            stalled.send(json.dumps({"method": "flood", "params": {"n": 10000}}))
            bridge.wait_for_line(r"is a slow consumer: \d+ bytes would wait for it", timeout=60)
            started = time.monotonic()
            for i in range(20):
                lively.send(json.dumps({"method": "echo", "params": {"i": i}}))
                assert json.loads(lively.recv(timeout=30))["params"]["i"] == i
            assert time.monotonic() - started < 10
            code, reason = close_code_of(stalled, timeout=60)
            assert (code, reason) == (1008, "slow consumer")
            wait_until(lambda: 1001 in peer.log.close_codes, "the stalled client's upstream to close with 1001")
        peak = vm_rss_kib(bridge.process.pid)
    assert peak < 120 * 1024, f"bridge peak RSS {peak} KiB"


def test_sigterm_closes_every_client_with_1001_and_exits_0(peers: PeerPool) -> None:
    peer = peers.start(echo)
    with running_bridge(["--sock", peer.path]) as bridge, client(bridge) as one, client(bridge) as two:
        one.send('{"method":"a"}')
        assert one.recv(timeout=30) == '{"method":"a"}'
        bridge.signal(signal.SIGTERM)
        assert close_code_of(one) == (1001, "the bridge is shutting down")
        assert close_code_of(two)[0] == 1001
        assert bridge.wait() == 0
        wait_until(lambda: peer.log.finished_connections == 2, "both upstream connections to end")
        assert peer.log.close_codes == [1001, 1001]
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", bridge.port), timeout=5).close()


def test_a_second_signal_ends_at_once(peers: PeerPool) -> None:
    peer = peers.start(echo)
    with (
        running_bridge(["--sock", peer.path]) as bridge,
        socket.create_connection(("127.0.0.1", bridge.port), timeout=60) as mute,
    ):
        request = "".join(f"{k}: {v}\r\n" for k, v in UPGRADE_HEADERS)
        mute.sendall(f"GET /ws HTTP/1.1\r\nHost: x\r\n{request}\r\n".encode())
        wait_until(lambda: peer.log.connections == 1, "the client's upstream connection")
        bridge.signal(signal.SIGTERM)
        time.sleep(0.5)  # the bridge waits (3 s at most) for the mute client's answer to its close frame
        assert bridge.process.poll() is None
        started = time.monotonic()
        bridge.signal(signal.SIGTERM)
        assert bridge.wait(timeout=30) == 143
        assert time.monotonic() - started < 5


def test_start_without_codex_gives_503_and_the_reason(tmp_path: Path) -> None:
    env = {"CODEX_HOME": str(tmp_path)}
    args = ["--start", "--wait", "1", "--codex-bin", str(tmp_path / "no-codex")]
    with running_bridge(args, env=env) as bridge:
        status, _, body = http_request(bridge.port, "/ws", UPGRADE_HEADERS)
        assert (status, body) == (503, b"the app-server is not running; try again later\n")
        bridge.wait_for_line(r"cannot start the app-server: '.*no-codex' was not found")


def test_remote_and_sock_cannot_be_combined() -> None:
    status, stderr = run_bridge_cli(["--remote", "ws://127.0.0.1:1", "--sock", "/x"])
    assert status == 2
    assert "--remote cannot be combined with --sock" in stderr


# -- the README's recipes, as written ------------------------------------------------------------------------

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_blocks(heading: str) -> list[str]:
    """The ```sh blocks of the README section under *heading*, in order."""
    section = README.read_text().split(heading + "\n", 1)[1].split("\n#", 1)[0]
    return [block.split("\n```", 1)[0] for block in section.split("```sh\n")[1:]]


def test_the_readme_phone_recipe_runs_as_written(peers: PeerPool, tmp_path: Path, token_file: Path) -> None:
    make_certificate, start_bridge = readme_blocks("### A phone on the LAN, over TLS")
    assert "IP=192.168.1.20" in make_certificate
    subprocess.run(
        ["bash", "-euo", "pipefail", "-c", make_certificate.replace("IP=192.168.1.20", "IP=127.0.0.1")],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        timeout=60,
    )
    argv = shlex.split(start_bridge.replace("\\\n", " "))
    assert argv[:2] == ["codex-appserver", "serve"]
    argv = [
        str(token_file) if arg == "~/.codex/bridge.token" else "0.0.0.0:0" if arg == "0.0.0.0:9100" else arg
        for arg in argv[2:]
    ]
    argv = [str(tmp_path / arg) if arg.endswith((".pem", ".key")) else arg for arg in argv]
    peer = peers.start(echo)
    with running_bridge([*argv, "--sock", peer.path]) as bridge:
        assert bridge.url == f"wss://0.0.0.0:{bridge.port}/ws"
        request = b'{"method":"initialize","id":1,"params":{"clientInfo":{"name":"phone","version":"1"}}}\n'
        done = subprocess.run(
            proxy_argv(
                "--remote",
                f"wss://127.0.0.1:{bridge.port}/ws",
                "--cacert",
                str(tmp_path / "ca.pem"),
                "--remote-auth-token-env",
                "CODEX_BRIDGE_TOKEN",
            ),
            input=request,
            capture_output=True,
            env=proxy_env({"CODEX_BRIDGE_TOKEN": TOKEN}),
            timeout=60,
            check=False,
        )
        assert (done.returncode, done.stdout) == (0, b'{"id":1,"result":{}}\n'), done.stderr


def test_a_local_bridge_in_front_of_a_remote_one(peers: PeerPool, token_file: Path) -> None:
    """``serve --remote``: the upstream is another bridge, reached with its own token; the client's own
    credentials stop at the first bridge."""
    peer = peers.start(recording_echo)
    with running_bridge(["--sock", peer.path, "--token-file", str(token_file)]) as remote:
        local_args = ["--remote", remote.ws_url(), "--remote-auth-token-env", "REMOTE_TOKEN", "--token-env", "LOCAL"]
        local_token = secrets.token_urlsafe(32)
        with (
            running_bridge(local_args, env={"REMOTE_TOKEN": TOKEN, "LOCAL": local_token}) as local,
            client(local, additional_headers=[("Authorization", f"Bearer {local_token}")]) as ws,
        ):
            ws.send('{"method":"through two bridges"}')
            assert ws.recv(timeout=30) == '{"method":"through two bridges"}'
        remote.wait_for_line(r": GET /ws -> 101, open")
    (headers,) = [json.loads(event) for event in peer.log.events]
    assert "authorization" not in headers


def test_one_message_larger_than_the_client_queue_still_reaches_a_client_that_keeps_up(peers: PeerPool) -> None:
    peer = peers.start(echo, max_size=None)
    big = json.dumps({"method": "big", "params": {"pad": "p" * 100_000}})
    with running_bridge(["--sock", peer.path, "--client-queue-bytes", "10000"]) as bridge, client(bridge) as ws:
        for _ in range(3):
            ws.send(big)
            assert ws.recv(timeout=30) == big


def test_sigterm_ends_within_seconds_even_with_a_client_that_never_answers(peers: PeerPool) -> None:
    peer = peers.start(echo)
    with (
        running_bridge(["--sock", peer.path]) as bridge,
        socket.create_connection(("127.0.0.1", bridge.port), timeout=60) as mute,
    ):
        request = "".join(f"{k}: {v}\r\n" for k, v in UPGRADE_HEADERS)
        mute.sendall(f"GET /ws HTTP/1.1\r\nHost: x\r\n{request}\r\n".encode())
        wait_until(lambda: peer.log.connections == 1, "the client's upstream connection")
        started = time.monotonic()
        bridge.signal(signal.SIGTERM)
        assert bridge.wait(timeout=30) == 0
        assert time.monotonic() - started < 10  # 3 s for the mute client's closing handshake, plus start-up slack
        wait_until(lambda: peer.log.close_codes == [1001], "the upstream connection to close with 1001")
