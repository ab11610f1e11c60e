"""Hostile opening-handshake answers against the sans-I/O :class:`~proxy.handshake.ClientHandshake` (issue 9).

Whatever a server answers, in whatever pieces: the handshake returns a response, waits for more, or raises a
:class:`~proxy.errors.ProxyError` with the status the status line decides; never another exception, and never
a text holding the token once redacted the way everything leaving the process is (:mod:`proxy.redact`).
"""

from __future__ import annotations

import itertools

import h11
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wsproto.utilities import generate_accept_token

from proxy.errors import ExitStatus, ProxyError
from proxy.handshake import MAX_UNFRAGMENTED_HEADER, ClientHandshake, HandshakeResponse
from proxy.redact import REDACTED, Redactor

TOKEN = "Zq9-SECRET.tok_en~42"
#: Header-value bytes h11 accepts: HTAB, visible ASCII and space, obs-text (RFC 9110 §5.5).
FIELD_BYTES = st.sampled_from([0x09, *range(0x20, 0x7F), *range(0x80, 0x100)])


def fresh() -> tuple[ClientHandshake, Redactor, bytes]:
    """A handshake that sends the token, its redactor, and the matching Sec-WebSocket-Accept."""
    redactor = Redactor()
    redactor.add(TOKEN)
    handshake = ClientHandshake(extra_headers=[("Authorization", f"Bearer {TOKEN}")], redact=redactor)
    server = h11.Connection(h11.SERVER)
    server.receive_data(handshake.request_bytes())
    request = server.next_event()
    assert isinstance(request, h11.Request)
    return handshake, redactor, generate_accept_token(dict(request.headers)[b"sec-websocket-key"])


def switching(accept: bytes, *headers: bytes) -> bytes:
    lines = [b"HTTP/1.1 101 Switching Protocols", b"Upgrade: websocket", b"Connection: Upgrade"]
    return b"\r\n".join([*lines, b"Sec-WebSocket-Accept: " + accept, *headers]) + b"\r\n\r\n"


# -- #6: the frame-limit header ------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(value=st.lists(FIELD_BYTES, max_size=40).map(bytes))
def test_frame_limit_header_counts_ascii_digits_only(value: bytes) -> None:
    """issue 9 #6: ``²`` (0xB2) made int() fail; any value is either 1-20 ASCII digits or means the default."""
    handshake, _, accept = fresh()
    response = handshake.receive_data(switching(accept, MAX_UNFRAGMENTED_HEADER.encode() + b": " + value))
    assert isinstance(response, HandshakeResponse)
    limit = response.max_unfragmented_message_bytes
    stripped = value.strip(b" \t")
    if stripped and len(stripped) <= 20 and all(0x30 <= byte <= 0x39 for byte in stripped):
        assert limit == int(stripped)
    else:
        assert limit is None


@pytest.mark.parametrize("value", [b"\xb2", b"1\xb2", b"\xd9\xa3", b"9" * 5000, b"-1", b"+5", b"0x10", b"1 2"])
def test_frame_limit_header_malformed_means_default(value: bytes) -> None:
    handshake, _, accept = fresh()
    response = handshake.receive_data(switching(accept, MAX_UNFRAGMENTED_HEADER.encode() + b": " + value))
    assert isinstance(response, HandshakeResponse)
    assert response.max_unfragmented_message_bytes is None


# -- any answer: a documented outcome, the status line decides, no token --------------------------------------

STATUS = st.one_of(st.sampled_from([101, 200, 301, 400, 401, 403, 404, 426, 500, 503]), st.integers(100, 999))
ECHO = st.sampled_from([TOKEN, f"Bearer {TOKEN}", f"Authorization: Bearer {TOKEN}", f'"{TOKEN}"', ""])
TEXT = st.text(st.characters(codec="latin-1", exclude_characters="\r\n\x00"), max_size=30)


@st.composite
def answers(draw: st.DrawFn) -> tuple[int, bytes, bool]:
    """(status, the answer's bytes, whether its body is complete)."""
    status = draw(STATUS)
    reason = (draw(TEXT) + draw(ECHO) + draw(TEXT)).encode("latin-1")
    lines = [b"HTTP/1.1 %d " % status + reason]
    for _ in range(draw(st.integers(0, 4))):
        lines.append(
            draw(st.sampled_from([b"X-Echo", b"WWW-Authenticate", MAX_UNFRAGMENTED_HEADER.encode()]))
            + b": "
            + (draw(TEXT) + draw(ECHO)).strip().encode("latin-1")
        )
    if draw(st.booleans()):  # a line h11 refuses, quoting it in its error text
        lines.append(f"Authorization Bearer {TOKEN}".encode())
    body = (draw(st.text(max_size=300)) + draw(ECHO) + draw(st.text(max_size=300))).encode()
    complete = draw(st.booleans())
    lines.append(b"Content-Length: %d" % (len(body) + (0 if complete else 1000)))
    return status, b"\r\n".join(lines) + b"\r\n\r\n" + body, complete


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(answer=answers(), cuts=st.lists(st.integers(0, 2000), max_size=6))
def test_any_answer_ends_in_its_status_and_never_shows_the_token(
    answer: tuple[int, bytes, bool], cuts: list[int]
) -> None:
    """issue 9 #17 and #18, sans-I/O: fed in any pieces, a refusal is decided by its status line, whether or not
    its body ever ends (the caller gives up on the body with :meth:`refuse`), and no error text, once redacted,
    holds the token or a piece of it."""
    status, data, _ = answer
    handshake, redactor, _ = fresh()
    bounds = sorted({min(cut, len(data)) for cut in cuts} | {0, len(data)})

    def feed() -> None:
        for start, end in itertools.pairwise(bounds):
            assert handshake.receive_data(data[start:end]) is None  # never a 101: the accept token is wrong
        if handshake.refusal_pending:
            handshake.refuse()  # what connect.handshake does once the body has had its short while
        handshake.receive_data(b"")  # EOF

    with pytest.raises(ProxyError) as caught:
        feed()
    message = redactor(caught.value.message)
    assert TOKEN not in message and TOKEN[:8] not in message, message
    if handshake.refusal_pending:  # the status line was read: it decides
        expected = ExitStatus.NOPERM if status in (401, 403) else ExitStatus.PROTOCOL
    else:
        expected = ExitStatus.PROTOCOL
    assert caught.value.status == expected, caught.value.message


def test_refusal_decided_by_the_status_line_while_the_body_never_ends() -> None:
    """issue 9 #17: a 401 whose body never finishes is a 77 as soon as the caller stops waiting for it."""
    for status, expected in ((401, ExitStatus.NOPERM), (403, ExitStatus.NOPERM), (500, ExitStatus.PROTOCOL)):
        handshake, _, _ = fresh()
        assert handshake.receive_data(b"HTTP/1.1 %d No\r\nContent-Length: 100000\r\n\r\npartial" % status) is None
        assert handshake.refusal_pending
        with pytest.raises(ProxyError) as caught:
            handshake.refuse()
        assert caught.value.status == expected
        assert caught.value.message.endswith(f"{status} No: partial")


def test_token_cut_at_the_read_bound_leaves_no_prefix() -> None:
    """A body of spaces puts a token across the read bound; whitespace is collapsed afterwards, so without care
    its first half would land in the 200 characters shown."""
    handshake, redactor, _ = fresh()
    body = b" " * (4096 - 8) + TOKEN.encode()
    with pytest.raises(ProxyError) as caught:
        handshake.receive_data(b"HTTP/1.1 401 No\r\nContent-Length: %d\r\n\r\n" % (len(body) + 10) + body)
    assert TOKEN[:8] not in redactor(caught.value.message)


@pytest.mark.parametrize("form", [TOKEN, repr(TOKEN)[1:-1], '"x\\\\' + TOKEN + '"'])
def test_redactor_replaces_every_form(form: str) -> None:
    redactor = Redactor()
    redactor.add(TOKEN)
    redactor.add("a\\b")
    assert TOKEN not in redactor(f"before {form} after")
    assert REDACTED in redactor(f"before {form} after")
    assert redactor('{"t":"a\\\\b"}') == '{"t":"' + REDACTED + '"}'
