"""The client opening handshake on h11 (proxy.handshake), checked against RFC 6455 §4.1 and §4.2.2."""

from __future__ import annotations

import base64

import h11
import pytest
from wsproto.utilities import generate_accept_token

from proxy import __version__
from proxy.errors import ExitStatus, HandshakeFailed, PermissionDenied, ProxyError
from proxy.handshake import ClientHandshake


def parse_request(data: bytes) -> h11.Request:
    server = h11.Connection(h11.SERVER)
    server.receive_data(data)
    event = server.next_event()
    assert isinstance(event, h11.Request)
    return event


def switching(handshake: ClientHandshake, *extra: bytes, accept: bytes | None = None) -> bytes:
    request = parse_request(handshake.request_bytes())
    key = dict(request.headers)[b"sec-websocket-key"]
    token = accept if accept is not None else generate_accept_token(key)
    lines = [b"HTTP/1.1 101 Switching Protocols", b"Upgrade: websocket", b"Connection: Upgrade"]
    lines += [b"Sec-WebSocket-Accept: " + token, *extra]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def test_request_has_exactly_the_rfc_6455_headers_and_no_origin() -> None:
    request = parse_request(ClientHandshake().request_bytes())
    assert request.method == b"GET" and request.target == b"/"
    names = [name for name, _ in request.headers]
    assert names == [
        b"host",
        b"upgrade",
        b"connection",
        b"sec-websocket-key",
        b"sec-websocket-version",
        b"user-agent",
    ]
    headers = dict(request.headers)
    assert headers[b"host"] == b"localhost"
    assert headers[b"sec-websocket-version"] == b"13"
    assert headers[b"user-agent"] == f"codex-appserver-proxy/{__version__}".encode()
    assert len(base64.b64decode(headers[b"sec-websocket-key"])) == 16


def test_each_handshake_has_a_fresh_key() -> None:
    keys = {dict(parse_request(ClientHandshake().request_bytes()).headers)[b"sec-websocket-key"] for _ in range(20)}
    assert len(keys) == 20


def test_101_with_trailing_frame_bytes_keeps_them() -> None:
    handshake = ClientHandshake()
    response = handshake.receive_data(switching(handshake) + b"\x81\x02hi")
    assert response is not None
    assert response.trailing_data == b"\x81\x02hi"


def test_response_split_byte_by_byte() -> None:
    handshake = ClientHandshake()
    data = switching(handshake, b"x-codex-websocket-max-unfragmented-message-bytes: 16777216")
    results = [handshake.receive_data(data[i : i + 1]) for i in range(len(data))]
    assert results[:-1] == [None] * (len(data) - 1)
    response = results[-1]
    assert response is not None
    assert response.max_unfragmented_message_bytes == 16 * 1024 * 1024
    assert response.header("X-Codex-WebSocket-Max-Unfragmented-Message-Bytes") == "16777216"


def test_missing_limit_header_is_none() -> None:
    handshake = ClientHandshake()
    response = handshake.receive_data(switching(handshake))
    assert response is not None and response.max_unfragmented_message_bytes is None


def test_wrong_accept_token_is_refused() -> None:
    handshake = ClientHandshake()
    with pytest.raises(HandshakeFailed, match="Sec-WebSocket-Accept does not match"):
        handshake.receive_data(switching(handshake, accept=b"AAAAAAAAAAAAAAAAAAAAAAAAAAA="))


def test_unrequested_extension_is_refused() -> None:
    handshake = ClientHandshake()
    with pytest.raises(HandshakeFailed, match="extension or subprotocol"):
        handshake.receive_data(switching(handshake, b"Sec-WebSocket-Extensions: permessage-deflate"))


def test_refusal_names_status_and_body_start() -> None:
    handshake = ClientHandshake()
    handshake.request_bytes()
    body = b"no  such\nthing " + b"x" * 300
    data = b"HTTP/1.1 400 Bad Request\r\ncontent-length: %d\r\n\r\n" % len(body) + body
    with pytest.raises(HandshakeFailed) as caught:
        handshake.receive_data(data)
    assert caught.value.status == ExitStatus.PROTOCOL
    assert caught.value.message.startswith(
        "the server refused the opening handshake with 400 Bad Request: no such thing x"
    )
    assert len(caught.value.message) < 300


@pytest.mark.parametrize("status", [401, 403])
def test_401_and_403_are_permission_errors(status: int) -> None:
    handshake = ClientHandshake()
    handshake.request_bytes()
    with pytest.raises(PermissionDenied) as caught:
        handshake.receive_data(b"HTTP/1.1 %d Nope\r\ncontent-length: 6\r\n\r\ndenied" % status)
    assert caught.value.status == ExitStatus.NOPERM
    assert caught.value.message.endswith(f"{status} Nope: denied")


def test_refusal_without_length_ends_at_eof() -> None:
    handshake = ClientHandshake()
    handshake.request_bytes()
    assert handshake.receive_data(b"HTTP/1.1 503 Busy\r\nconnection: close\r\n\r\nlater") is None
    with pytest.raises(HandshakeFailed, match="503 Busy: later"):
        handshake.receive_data(b"")


def test_not_http() -> None:
    handshake = ClientHandshake()
    handshake.request_bytes()
    with pytest.raises(HandshakeFailed, match="did not answer with HTTP"):
        handshake.receive_data(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")


def test_eof_before_any_response() -> None:
    handshake = ClientHandshake()
    handshake.request_bytes()
    with pytest.raises(ProxyError, match="closed the connection during the opening handshake"):
        handshake.receive_data(b"")


def test_extra_headers_are_sent() -> None:
    handshake = ClientHandshake(host="example.test:8080", target="/ws", extra_headers=[("Authorization", "Bearer t")])
    request = parse_request(handshake.request_bytes())
    assert request.target == b"/ws"
    assert dict(request.headers)[b"host"] == b"example.test:8080"
    assert dict(request.headers)[b"authorization"] == b"Bearer t"
