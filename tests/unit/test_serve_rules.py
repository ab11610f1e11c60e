"""The bridge's policy: --bind parsing and the bind rule, and what each request gets, in order."""

from __future__ import annotations

import secrets

import click
import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.cli import main
from proxy.serve.auth import MAX_FAILURES, Token
from proxy.serve.rules import (
    UNAUTHORIZED_BODY,
    Gate,
    HttpRequest,
    Probe,
    Respond,
    Upgrade,
    admit,
    bind_refusal,
    is_loopback,
    parse_bind,
    url_host,
)

SECRET = secrets.token_urlsafe(32)
KEY = b"dGhlIHNhbXBsZSBub25jZQ=="


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1:9100", ("127.0.0.1", 9100)),
        ("[::1]:9100", ("::1", 9100)),
        ("localhost:0", ("localhost", 0)),
        ("0.0.0.0:65535", ("0.0.0.0", 65535)),
    ],
)
def test_parse_bind(value: str, expected: tuple[str, int]) -> None:
    assert parse_bind(value) == expected


@pytest.mark.parametrize("value", ["9100", ":9100", "::1:9100", "[zz]:1", "host:65536", "host:x", "host:"])
def test_parse_bind_refuses(value: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        parse_bind(value)


@given(st.ip_addresses(), st.integers(0, 65535))
def test_parse_bind_round_trips_urls(address: object, port: int) -> None:
    host = str(address)
    assert parse_bind(f"{url_host(host)}:{port}") == (host, port)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.3.2.1", True),
        ("::1", True),
        ("localhost", True),
        ("LOCALHOST", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.2", False),
        ("example.com", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_bind_policy() -> None:
    assert bind_refusal("127.0.0.1", False, False, False) is None
    refusal = bind_refusal("0.0.0.0", False, True, True)
    assert refusal is not None
    assert "--token-file" in refusal
    refusal = bind_refusal("0.0.0.0", True, False, False)
    assert refusal is not None
    assert "--tls-cert" in refusal
    assert "--allow-plain-ws" in refusal
    assert bind_refusal("0.0.0.0", True, True, False) is None
    assert bind_refusal("0.0.0.0", True, False, True) is None


def upgrade_request(*extra: tuple[bytes, bytes], target: bytes = b"/ws", method: bytes = b"GET") -> HttpRequest:
    headers = (
        (b"host", b"127.0.0.1:9100"),
        (b"upgrade", b"websocket"),
        (b"connection", b"Upgrade"),
        (b"sec-websocket-key", KEY),
        (b"sec-websocket-version", b"13"),
        *extra,
    )
    return HttpRequest(method, target, headers)


def gate(**kwargs: object) -> Gate:
    return Gate(Token(SECRET.encode()), **kwargs)  # type: ignore[arg-type]


BEARER = (b"authorization", f"Bearer {SECRET}".encode())


def test_upgrade_with_the_token_in_the_header() -> None:
    assert admit(upgrade_request(BEARER), gate(), "a", 0.0, 0) == Upgrade(None, KEY)


@pytest.mark.parametrize("target", [b"/", b"/ws", b"/anything?x=1"])
def test_any_path_upgrades(target: bytes) -> None:
    assert isinstance(admit(upgrade_request(BEARER, target=target), gate(), "a", 0.0, 0), Upgrade)


def test_the_subprotocol_token_is_never_selected() -> None:
    offer = (b"sec-websocket-protocol", f"codex-appserver.bearer.{SECRET}, codex-appserver.v1".encode())
    assert admit(upgrade_request(offer), gate(), "a", 0.0, 0) == Upgrade("codex-appserver.v1", KEY)
    offer = (b"sec-websocket-protocol", f"codex-appserver.bearer.{SECRET}".encode())
    assert admit(upgrade_request(offer), gate(), "a", 0.0, 0) == Upgrade(None, KEY)


def test_missing_and_wrong_tokens_get_the_same_401() -> None:
    missing = admit(upgrade_request(), gate(), "a", 0.0, 0)
    wrong = admit(upgrade_request((b"authorization", b"Bearer " + b"x" * 43)), gate(), "b", 0.0, 0)
    assert isinstance(missing, Respond)
    assert isinstance(wrong, Respond)
    assert missing == wrong
    assert (missing.status, missing.body, missing.failed_auth) == (401, UNAUTHORIZED_BODY, True)


def test_no_token_configured_lets_everyone_in() -> None:
    assert isinstance(admit(upgrade_request(), Gate(None), "a", 0.0, 0), Upgrade)


def test_429_after_ten_failures_then_allowed_after_the_minute() -> None:
    g = gate()
    for i in range(MAX_FAILURES):
        answer = admit(upgrade_request(), g, "10.1.1.1", float(i), 0)
        assert isinstance(answer, Respond)
        assert answer.status == 401
    limited = admit(upgrade_request(BEARER), g, "10.1.1.1", 20.0, 0)  # even with the right token
    assert isinstance(limited, Respond)
    assert limited.status == 429
    assert ("Retry-After", "40") in limited.headers
    assert isinstance(admit(upgrade_request(BEARER), g, "10.1.1.2", 20.0, 0), Upgrade)
    assert isinstance(admit(upgrade_request(BEARER), g, "10.1.1.1", 60.0, 0), Upgrade)


def test_origin_needs_to_be_allowed_exactly() -> None:
    origin = (b"origin", b"https://app.example")
    answer = admit(upgrade_request(BEARER, origin), gate(), "a", 0.0, 0)
    assert isinstance(answer, Respond)
    assert answer.status == 403
    allowed = gate(allowed_origins=frozenset({"https://app.example"}))
    assert isinstance(admit(upgrade_request(BEARER, origin), allowed, "a", 0.0, 0), Upgrade)
    other = admit(upgrade_request(BEARER, (b"origin", b"https://app.example:8443")), allowed, "a", 0.0, 0)
    assert isinstance(other, Respond)
    assert other.status == 403
    twice = admit(upgrade_request(BEARER, origin, origin), allowed, "a", 0.0, 0)
    assert isinstance(twice, Respond)
    assert twice.status == 403


def test_origin_is_checked_before_the_token_so_it_never_counts_as_a_failure() -> None:
    g = gate()
    for _ in range(MAX_FAILURES + 5):
        answer = admit(upgrade_request((b"origin", b"https://evil.example")), g, "a", 0.0, 0)
        assert isinstance(answer, Respond)
        assert answer.status == 403
    assert isinstance(admit(upgrade_request(BEARER), g, "a", 0.0, 0), Upgrade)


def test_max_clients() -> None:
    answer = admit(upgrade_request(BEARER), gate(max_clients=2), "a", 0.0, 2)
    assert isinstance(answer, Respond)
    assert answer.status == 503
    assert isinstance(admit(upgrade_request(BEARER), gate(max_clients=2), "a", 0.0, 1), Upgrade)


@pytest.mark.parametrize(
    ("request_", "status"),
    [
        (HttpRequest(b"GET", b"/healthz", ()), 200),
        (HttpRequest(b"HEAD", b"/healthz", ()), 200),
        (HttpRequest(b"GET", b"/ws", ()), 426),
        (HttpRequest(b"GET", b"/", ()), 426),
        (HttpRequest(b"GET", b"/favicon.ico", ()), 404),
        (HttpRequest(b"POST", b"/healthz", ()), 404),
        (upgrade_request(BEARER, method=b"POST"), 400),
        (HttpRequest(b"GET", b"/ws", ((b"upgrade", b"websocket"),)), 400),
        (
            HttpRequest(
                b"GET",
                b"/ws",
                (
                    (b"upgrade", b"websocket"),
                    (b"connection", b"upgrade"),
                    (b"sec-websocket-version", b"8"),
                    (b"sec-websocket-key", KEY),
                ),
            ),
            426,
        ),
        (
            HttpRequest(
                b"GET",
                b"/ws",
                ((b"upgrade", b"websocket"), (b"connection", b"upgrade"), (b"sec-websocket-version", b"13")),
            ),
            400,
        ),
    ],
)
def test_plain_and_malformed_requests(request_: HttpRequest, status: int) -> None:
    answer = admit(request_, gate(), "a", 0.0, 0)
    assert isinstance(answer, Respond)
    assert answer.status == status
    assert answer.body.endswith(b"\n")
    assert answer.body.count(b"\n") == 1


def test_readyz_is_a_probe() -> None:
    assert admit(HttpRequest(b"GET", b"/readyz", ()), gate(), "a", 0.0, 0) == Probe()


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e999"])
@pytest.mark.parametrize("option", ["--ping-interval", "--ping-timeout", "--wait"])
def test_serve_refuses_non_finite_seconds(option: str, value: str) -> None:
    with pytest.raises(click.BadParameter) as caught:
        main.all_commands()["serve"].make_context("serve", [option, value])
    assert caught.value.exit_code == 2
