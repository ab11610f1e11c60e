"""The server side of the opening handshake on h11: request heads in, 101 or a fixed refusal out."""

from __future__ import annotations

import h11
import pytest
from hypothesis import given
from hypothesis import strategies as st
from wsproto.utilities import generate_accept_token

from proxy.serve.http import MAX_HEADER_BYTES, BadRequest, ServerHandshake
from proxy.serve.rules import Respond

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
UPGRADE = (
    b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:9100\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: " + KEY + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def parse_response(data: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
    """A real HTTP client's view of *data*: status, headers, body."""
    client = h11.Connection(h11.CLIENT)
    upgrade = [("Host", "x"), ("Upgrade", "websocket"), ("Connection", "Upgrade")]
    client.send(h11.Request(method="GET", target="/", headers=upgrade))
    client.send(h11.EndOfMessage())
    client.receive_data(data)
    status = 0
    headers: dict[bytes, bytes] = {}
    body = b""
    while True:
        event = client.next_event()
        if isinstance(event, (h11.Response, h11.InformationalResponse)):
            status = event.status_code
            headers = dict(event.headers)
            if status == 101:
                return status, headers, body
        elif isinstance(event, h11.Data):
            body += event.data
        else:
            return status, headers, body


@given(st.integers(1, len(UPGRADE)))
def test_a_request_in_any_pieces_gives_the_101_and_keeps_the_bytes_after_it(cut: int) -> None:
    handshake = ServerHandshake()
    frame = b"\x81\x02hi"
    first = handshake.receive_data(UPGRADE[:cut])
    request = first or handshake.receive_data(UPGRADE[cut:] + frame)
    assert request is not None
    assert request.target == b"/ws"
    assert request.values(b"sec-websocket-key") == [KEY]
    if first is not None:  # the whole head came in the first piece
        return
    response = handshake.accept(KEY, "codex-appserver.v1")
    assert response is not None
    status, headers, _ = parse_response(response)
    assert status == 101
    assert headers[b"sec-websocket-accept"] == generate_accept_token(KEY)
    assert headers[b"sec-websocket-protocol"] == b"codex-appserver.v1"
    assert handshake.trailing_data == frame


def test_no_subprotocol_header_when_none_is_selected() -> None:
    handshake = ServerHandshake()
    assert handshake.receive_data(UPGRADE) is not None
    response = handshake.accept(KEY, None)
    assert response is not None
    assert b"sec-websocket-protocol" not in response.lower()


def test_a_refusal_is_one_line_and_closes() -> None:
    handshake = ServerHandshake()
    assert handshake.receive_data(b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n") is not None
    status, headers, body = parse_response(handshake.respond(Respond(404, b"not found\n")))
    assert (status, body) == (404, b"not found\n")
    assert headers[b"connection"] == b"close"
    assert headers[b"content-length"] == b"10"


def test_head_gets_no_body() -> None:
    handshake = ServerHandshake()
    assert handshake.receive_data(b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n") is not None
    data = handshake.respond(Respond(200, b"ok\n"))
    assert data.endswith(b"\r\n\r\n")
    assert b"Content-Length: 3" in data


def test_a_head_over_16_kib_gets_431() -> None:
    handshake = ServerHandshake()
    with pytest.raises(BadRequest) as raised:
        handshake.receive_data(b"GET / HTTP/1.1\r\nX: " + b"a" * MAX_HEADER_BYTES + b"\r\n")
    assert raised.value.status == 431
    assert parse_response(raised.value.response)[0] == 431


def test_not_http_gets_400() -> None:
    with pytest.raises(BadRequest) as raised:
        ServerHandshake().receive_data(b"\x16\x03\x01 hello TLS?\r\n\r\n")
    assert raised.value.status == 400


def test_eof_before_a_whole_head_answers_nothing() -> None:
    handshake = ServerHandshake()
    assert handshake.receive_data(b"GET / HT") is None
    with pytest.raises(BadRequest) as raised:
        handshake.receive_data(b"")
    assert raised.value.response == b""


def test_an_upgrade_with_a_body_is_not_switched() -> None:
    handshake = ServerHandshake()
    request = UPGRADE.replace(b"\r\n\r\n", b"\r\nContent-Length: 5\r\n\r\n")
    assert handshake.receive_data(request) is not None
    assert handshake.accept(KEY, None) is None


@given(st.lists(st.binary(max_size=600), max_size=40))
def test_any_bytes_give_a_request_none_or_bad_request_never_another_error(chunks: list[bytes]) -> None:
    handshake = ServerHandshake()
    refused: BadRequest | None = None
    try:
        for chunk in [*chunks, b""]:
            if handshake.receive_data(chunk) is not None:
                break
    except BadRequest as exc:
        refused = exc
    if refused is not None:
        assert refused.status in (400, 431)
        assert refused.response == b"" or refused.response.startswith(b"HTTP/1.1 4")


@given(st.binary(min_size=1, max_size=2000))
def test_a_request_followed_by_any_bytes_keeps_them_for_the_websocket(rest: bytes) -> None:
    handshake = ServerHandshake()
    assert handshake.receive_data(UPGRADE + rest) is not None
    assert handshake.accept(KEY, None) is not None
    assert handshake.trailing_data == rest
