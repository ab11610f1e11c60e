"""ServerHandshake.receive_body (proxy/serve/http.py): the body of ``POST /pair``, bounded, fed in any pieces."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.serve.http import MAX_BODY_BYTES, BadRequest, ServerHandshake
from proxy.serve.rules import Respond

BODY = b'{"code": "7QK2-M9XD"}'


def post(body: bytes, length: int | None = None) -> bytes:
    size = len(body) if length is None else length
    return (
        f"POST /pair HTTP/1.1\r\nHost: bridge\r\nContent-Type: application/json\r\nContent-Length: {size}\r\n\r\n"
    ).encode() + body


@settings(deadline=None)  # a shared, loaded CPU: hypothesis's 200 ms deadline would flake
@given(cuts=st.lists(st.integers(min_value=0, max_value=len(post(BODY))), max_size=6))
def test_the_body_arrives_whole_however_it_is_cut(cuts: list[int]) -> None:
    data = post(BODY)
    points = sorted({0, len(data), *cuts})
    pieces = [data[a:b] for a, b in itertools.pairwise(points)]
    handshake = ServerHandshake()
    request = None
    body = None
    for piece in pieces:
        if request is None:
            request = handshake.receive_data(piece)
            if request is not None:
                body = handshake.receive_body()
        elif body is None:
            body = handshake.receive_body(piece)
    assert request is not None
    assert request.method == b"POST"
    assert request.path == "/pair"
    assert body == BODY


def test_a_body_over_the_limit_is_413() -> None:
    handshake = ServerHandshake()
    big = b"x" * (MAX_BODY_BYTES + 1)
    assert handshake.receive_data(post(big)[:200]) is not None
    with pytest.raises(BadRequest) as refused:
        handshake.receive_body(post(big)[200:])
    assert refused.value.status == 413


def test_eof_before_the_end_of_the_body_is_400() -> None:
    handshake = ServerHandshake()
    assert handshake.receive_data(post(BODY[:5], length=len(BODY))) is not None
    assert handshake.receive_body() is None
    with pytest.raises(BadRequest) as refused:
        handshake.receive_body(b"")
    assert refused.value.status == 400


def test_a_json_answer_has_its_content_type() -> None:
    handshake = ServerHandshake()
    assert handshake.receive_data(post(BODY)) is not None
    assert handshake.receive_body() == BODY
    answer = handshake.respond(Respond(200, b"{}\n", content_type="application/json; charset=utf-8"))
    head = answer.split(b"\r\n\r\n", 1)[0].lower()
    assert b"content-type: application/json; charset=utf-8" in head
    assert head.count(b"content-type") == 1
